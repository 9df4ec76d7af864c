#!/usr/bin/env bash
# h5ad full read and partial read: cellmol vs anndata.read_h5ad (see
# ../../../shared/BENCHMARKS.md rows "h5ad read" / "h5ad partial read").
# usage: benches/compare/h5ad_read.sh [WORKDIR] [REPS]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="${1:-${TMPDIR:-/tmp}/cellmol_h5ad_bench}"
REPS="${2:-5}"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || { echo "missing $PY: run scripts/setup.sh first" >&2; exit 1; }
cd "$ROOT"
cargo build --release -p datasets --example h5ad_bench
BIN="$ROOT/target/release/examples/h5ad_bench"
"$PY" "$ROOT/benches/compare/h5ad_read.py" "$BIN" "$WORK" "$REPS"
