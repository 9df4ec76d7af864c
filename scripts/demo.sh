#!/usr/bin/env bash
# The main job on built-in (simulated) data, end to end:
#   simulate a perturbation screen with counts and a known causal truth
#   -> inspect it -> fit LCD (quick preset, fold 0 of the doubles held out)
#   -> evaluate LCD against the control/additive/pooled baselines
#   -> CLIPR effect matrix, graph and modules, scored against the truth
#   -> training-curve pictures.
# Outputs go to out/ (override with OUT=...). Set CELLMOL=path to use an
# existing binary instead of building a release one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-out}
if [ -z "${CELLMOL:-}" ]; then
  cargo build --release --quiet --bin cellmol
  CELLMOL=target/release/cellmol
fi
mkdir -p "$OUT"
echo "== simulate a nonlinear screen with counts (30 genes, all perturbed, 20 doubles)"
$CELLMOL simulate screen --kind nonlinear --genes 30 --perturbed 30 --doubles 20 \
  --cells-per-condition 200 --counts --graph er --seed 0 -o "$OUT/screen.h5ad"
echo "== inspect it"
$CELLMOL data inspect "$OUT/screen.h5ad"
echo "== fit LCD (quick preset; fold 0 of 5 holds out doubles)"
$CELLMOL lcd fit "$OUT/screen.h5ad" -o "$OUT/lcd" --preset quick --folds 5 --fold 0 --seed 0 --force
echo "== evaluate on the held-out doubles against the baselines"
$CELLMOL lcd evaluate "$OUT/lcd" "$OUT/screen.h5ad" --json > "$OUT/evaluate.json"
python3 - "$OUT/evaluate.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
keys = ["energy_distance", "mmd", "rmse", "pearson_delta", "w1"]
print(f"{'method':10s}" + "".join(f"{k:>16s}" for k in keys))
for m, v in s.items():
    print(f"{m:10s}" + "".join(f"{v.get(k, float('nan')):16.4f}" for k in keys))
PY
echo "== CLIPR: causal effects, graph and modules (scored against the simulator's truth)"
$CELLMOL clipr "$OUT/lcd" -o "$OUT/clipr" --estimator published,direction-aware \
  --truth "$OUT/screen.h5ad" --json --zero-threshold 0.03
echo "== pictures: training curves, predicted vs observed expression of a held-out double"
$CELLMOL plot curves "$OUT/lcd"
COND=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["conditions"][0]["condition"])' "$OUT/evaluate.json")
$CELLMOL plot expression "$OUT/lcd" "$OUT/screen.h5ad" --perturbation "$COND" -o "$OUT/expression.png"
echo "done: see $OUT/ (evaluate.json, clipr/*/heatmap.png, lcd/curves.png, expression.png)"
