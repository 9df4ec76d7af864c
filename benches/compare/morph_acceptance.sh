#!/usr/bin/env bash
# Morph CPU acceptance (issue 6): quick preset on 2 000 random QM9 molecules,
# 1 000 samples, RDKit re-read, evaluation under both protocols.
# Usage: benches/compare/morph_acceptance.sh [WORKDIR] [SAMPLE_STEPS]
# On a shared machine CANDLE_NUM_THREADS=1 avoids candle's spinning thread
# barriers; the glibc tunables keep freed tensor memory instead of re-faulting it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
W="${1:-/tmp/morph_acceptance}"
STEPS="${2:-100}"
BIN="$ROOT/target/release/cellmol"
[ -x "$BIN" ] || BIN="$ROOT/target/debug/cellmol"
PY="$ROOT/.venv/bin/python"
mkdir -p "$W"
QM9=$(ls -d "$ROOT"/.venv/lib/python*/site-packages/qm9pack | head -1)
"$BIN" -q mol import-qm9 --from "$QM9" -o "$W/qm9_all.sdf"
"$PY" - "$W" <<'PYEOF'
import random, sys
w = sys.argv[1]
recs = [r for r in open(f"{w}/qm9_all.sdf").read().split("$$$$\n") if r.strip()]
random.seed(0)
sel = random.sample(recs, 2000)
open(f"{w}/qm9_2k.sdf", "w").write("".join(r + "$$$$\n" for r in sel))
PYEOF
export CANDLE_NUM_THREADS=${CANDLE_NUM_THREADS:-1}
export GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967295
/usr/bin/time -v "$BIN" morph fit "$W/qm9_2k.sdf" -o "$W/model" --preset quick 2> "$W/fit.log"
tail -n 30 "$W/fit.log"
"$BIN" morph sample "$W/model" -n 1000 -o "$W/samples.sdf" --steps "$STEPS" --seed 0
"$PY" - "$W/samples.sdf" <<'PYEOF'
import sys
from rdkit import Chem
ms = list(Chem.SDMolSupplier(sys.argv[1], sanitize=False, removeHs=False))
print(f"RDKit re-read: {sum(m is not None for m in ms)}/{len(ms)} records")
ok = 0
for m in ms:
    try:
        Chem.SanitizeMol(m); ok += 1
    except Exception:
        pass
print(f"RDKit sanitises (model bonds): {ok}/{len(ms)}")
PYEOF
"$BIN" morph evaluate "$W/samples.sdf" --train "$W/qm9_2k.sdf" | tee "$W/eval.txt"
"$BIN" morph evaluate "$W/samples.sdf" --train "$W/qm9_2k.sdf" --json > "$W/eval.json"
