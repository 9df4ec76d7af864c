#!/usr/bin/env bash
# Morph EGNN training step (9 layers x 256, QM9 batch of 64, forward + backward
# + AdamW): candle (morph/examples/egnn_step_bench.rs) vs the same EGNN in
# PyTorch CPU (morph_egnn_torch.py), same batch, same thread count, runs
# interleaved, medians; plus the numpy/OpenBLAS sgemm peak of this machine.
#   benches/compare/morph_egnn_torch.sh [THREADS ROUNDS REPS DATA.sdf]
# (default: 2 threads, 3 rounds of 5 timed steps each, the 64-molecule QM9
# fixture morph/tests/data/qm9_64.sdf). Installs CPU torch into target/.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
THREADS="${1:-2}"; ROUNDS="${2:-3}"; REPS="${3:-5}"
DATA="${4:-$ROOT/morph/tests/data/qm9_64.sdf}"
VENV="${MORPH_TORCH_VENV:-$ROOT/target/morph-torch-venv}"
if ! "$VENV/bin/python" -c "import torch, numpy" 2>/dev/null; then
  python3 -m venv "$VENV"
  # the CPU wheel index when reachable, else PyPI's default wheel (runs on CPU too)
  "$VENV/bin/pip" install -q torch --index-url https://download.pytorch.org/whl/cpu \
    || "$VENV/bin/pip" install -q torch
  "$VENV/bin/pip" install -q numpy
fi
cargo build --release -q -p morph --example egnn_step_bench --manifest-path "$ROOT/Cargo.toml"
BIN="$ROOT/target/release/examples/egnn_step_bench"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
export RAYON_NUM_THREADS="$THREADS" CANDLE_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS"
PEAK=$("$VENV/bin/python" -c "
import numpy as np, time
a=np.random.rand(4096,4096).astype(np.float32); a@a; t=time.perf_counter(); [a@a for _ in range(3)]; print(2*4096**3*3/(time.perf_counter()-t)/1e9)")
echo "load before: $(uptime)"
for i in $(seq 1 "$ROUNDS"); do
  "$BIN" --data "$DATA" --batch 64 --hidden 256 --layers 9 --reps "$REPS" --dump "$OUT/batch.json"
  "$VENV/bin/python" "$ROOT/benches/compare/morph_egnn_torch.py" "$OUT/batch.json" "$REPS" "$THREADS"
done | tee "$OUT/rows.jsonl"
echo "load after: $(uptime)"
"$VENV/bin/python" - "$PEAK" "$OUT/rows.jsonl" <<'PY'
import json, sys, statistics as st
peak = float(sys.argv[1]); rows = [json.loads(l) for l in open(sys.argv[2])]
med = lambda impl: st.median(t for r in rows if r["impl"] == impl for t in r["times_ms"])
c, t = med("candle"), med("torch")
b = rows[0]["batch"]
print(f"EGNN step ({rows[0]['layers']} x {rows[0]['hidden']}, batch {b}, padded to {rows[0]['n_pad']} atoms, {rows[0]['threads']} threads)")
print(f"candle {c:.0f} ms/step = {1e3 * b / c:.1f} mol/s; torch {t:.0f} ms/step = {1e3 * b / t:.1f} mol/s; ratio (candle/torch throughput) {t / c:.2f} (target >= 0.8)")
print(f"numpy sgemm peak {peak:.1f} GFLOP/s")
PY
