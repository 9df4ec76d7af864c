#!/usr/bin/env bash
# The main job on built-in (simulated) data: simulate a perturbation screen
# with a known causal truth and inspect it. Outputs go to out/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --quiet --bin cellmol
CELLMOL=target/release/cellmol
mkdir -p out
echo "== simulate a nonlinear screen with counts (50 genes, 20 perturbed, 30 doubles)"
$CELLMOL simulate screen --kind nonlinear --genes 50 --perturbed 20 --doubles 30 \
  --cells-per-condition 200 --counts --graph er --seed 0 -o out/screen.h5ad
echo "== inspect it"
$CELLMOL data inspect out/screen.h5ad
