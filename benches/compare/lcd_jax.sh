#!/usr/bin/env bash
# LCD stage-2 step + sampler: candle (this crate) vs JAX CPU, same shapes, same
# run; plus numpy/OpenBLAS sgemm peak. Installs jax[cpu] into a private venv.
#   benches/compare/lcd_jax.sh [D H BATCH CHAINS REPS]   (default 1000 1024 8192 1000 5)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
ARGS=("${@:-1000 1024 8192 1000 5}"); ARGS=(${ARGS[@]})
VENV="${LCD_JAX_VENV:-$ROOT/target/lcd-jax-venv}"
[[ -x "$VENV/bin/python" ]] || { python3 -m venv "$VENV"; "$VENV/bin/pip" install -q "jax[cpu]" numpy; }
cargo build --release -q -p lcd --example lcd_step_bench --manifest-path "$ROOT/Cargo.toml"
# OpenBLAS's kernel family follows OPENBLAS_CORETYPE when set (these machines
# set Haswell = AVX2 although the CPU has AVX-512); numpy (peak) and the candle
# side (CPU products through the system OpenBLAS) both inherit it. JAX/XLA
# does not use OpenBLAS and always runs AVX-512 code on such a CPU, so the
# like-for-like comparison is `env -u OPENBLAS_CORETYPE bash lcd_jax.sh`
# (OpenBLAS then picks Cooperlake/SkylakeX kernels: ~2x the sgemm peak).
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset>}; $(uptime)"
PEAK=$("$VENV/bin/python" -c "
import numpy as np, time
a=np.random.rand(4096,4096).astype(np.float32); a@a; t=time.perf_counter(); [a@a for _ in range(3)]; print(2*4096**3*3/(time.perf_counter()-t)/1e9)")
for i in 1 2 3; do
  "$ROOT/target/release/examples/lcd_step_bench" "${ARGS[@]}"
  "$VENV/bin/python" "$ROOT/benches/compare/lcd_jax.py" "${ARGS[@]}"
done | tee /tmp/lcd_jax_bench.jsonl
"$VENV/bin/python" - "$PEAK" <<'PY'
import json, sys, statistics as st
peak = float(sys.argv[1]); rows = [json.loads(l) for l in open("/tmp/lcd_jax_bench.jsonl")]
med = lambda impl, k: st.median(r[k] for r in rows if r["impl"] == impl)
for k in ["samples_per_s", "chain_steps_per_s", "gflops"]:
    print(f"{k}: candle {med('candle', k):.1f}  jax {med('jax', k):.1f}  ratio {med('candle', k) / med('jax', k):.2f}")
print(f"sgemm peak {peak:.1f} GFLOP/s; candle step at {100 * med('candle', 'gflops') / peak:.0f}% of peak")
PY
uptime
