#!/usr/bin/env bash
# Run on the lent GPU machine (device tool), from the repository root, with the
# bundle scripts/gpu-bundle.sh made:
#   run(command="bash scripts/gpu-run.sh", carry=["out/gpu.tar.xz"])
# Checks and timings, written to $OUT (which comes back):
#   devices.txt        CPU vs CUDA losses of the LCD and Morph training steps
#   lcd_step.jsonl     LCD stage-2 step + sampler, d=1000 H=1024 batch 8192, cpu and cuda:0
#   egnn_step.jsonl    Morph EGNN step (9 x 256, batch 64), cpu and cuda:0
#   lcd_fit.txt        `lcd fit --preset quick --device cuda:0` on a simulated screen
#   lcd_eval.json      its held-out evaluation
#   morph_fit.txt      `morph fit --preset quick --device cuda:0`, 300 steps
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUNDLE="${1:-$ROOT/out/gpu.tar.xz}"
R="${OUT:-/tmp/cellmol-gpu-results}"
W=/tmp/cellmol-gpu
rm -rf "$W"; mkdir -p "$W" "$R"
tar -C "$W" -xJf "$BUNDLE"
G="$W/gpu"
SP=$(python3 -c 'import sysconfig;print(sysconfig.get_paths()["purelib"])')
export LD_LIBRARY_PATH="$SP/nvidia/cu13/lib:$G/lib:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$R/gpu.txt"
for f in "$G"/bin/*; do
  if ldd "$f" | grep 'not found'; then echo "gpu-run: $f misses libraries" >&2; exit 1; fi
done
cd "$ROOT"   # the devices test finds morph/tests/data/qm9_64.sdf from here

echo "== per-device training steps"
"$G/bin/devices" --nocapture 2>&1 | tee "$R/devices.txt"

echo "== LCD stage-2 step and sampler"
for dev in cuda:0 cpu; do
  CELLMOL_DEVICE=$dev "$G/bin/lcd_step_bench" 1000 1024 8192 1000 10 | tee -a "$R/lcd_step.jsonl"
done

echo "== Morph EGNN step"
for dev in cuda:0 cpu; do
  "$G/bin/egnn_step_bench" --data "$G/qm9_64.sdf" --device "$dev" | tee -a "$R/egnn_step.jsonl"
done

echo "== LCD quick fit on cuda:0"
"$G/bin/cellmol" -q simulate screen --kind nonlinear --genes 50 --perturbed 50 --doubles 30 \
  --cells-per-condition 200 --counts --seed 2 -o "$W/screen.h5ad"
{ time "$G/bin/cellmol" lcd fit "$W/screen.h5ad" -o "$W/lcd" --preset quick --device cuda:0 \
    --folds 5 --fold 0 --seed 0; } 2>&1 | tail -n 20 | tee "$R/lcd_fit.txt"
"$G/bin/cellmol" lcd evaluate "$W/lcd" "$W/screen.h5ad" --json > "$R/lcd_eval.json"
python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['summary']; print({m: round(s[m]['energy_distance'], 4) for m in s})" "$R/lcd_eval.json"

echo "== Morph quick fit on cuda:0"
{ time "$G/bin/cellmol" morph fit "$G/qm9_64.sdf" -o "$W/morph" --preset quick --device cuda:0 \
    --steps 300 --max-minutes 8; } 2>&1 | tail -n 20 | tee "$R/morph_fit.txt"
echo "gpu-run: results in $R"
