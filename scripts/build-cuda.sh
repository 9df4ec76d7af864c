#!/usr/bin/env bash
# Build cellmol with the `cuda` feature without a system CUDA toolkit, using
# NVIDIA's CUDA 13.0 wheels from PyPI (nvcc, headers, runtime, cuBLAS, cuRAND)
# in .cuda-build/. Recipe checked on these machines: ../shared/GPU.md.
#
#   bash scripts/build-cuda.sh [cargo build args...]
#     default args: --release --bin cellmol --features cuda
# The build goes to target/cuda (CARGO_TARGET_DIR overrides), so it never
# replaces the CPU binary in target/release. Then, on the GPU machine (driver +
# CUDA 13 libraries present):
#   LD_LIBRARY_PATH=<site-packages>/nvidia/cu13/lib ./target/cuda/release/cellmol lcd fit ... --device cuda:0
# Locally (no GPU) the binary starts with LD_LIBRARY_PATH=.cuda-build/root/lib:.cuda-build/stub
# and `--device cuda:0` fails with a clear error; CPU runs work.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
W="$ROOT/.cuda-build"
mkdir -p "$W"
[ -x "$W/venv/bin/pip" ] || python3 -m venv "$W/venv"
"$W/venv/bin/pip" install -q --disable-pip-version-check \
  nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88 \
  nvidia-cublas==13.1.0.3 nvidia-curand==10.4.0.35
NV=$("$W/venv/bin/python" -c 'import sysconfig;print(sysconfig.get_paths()["purelib"])')/nvidia/cu13
R="$W/root"; mkdir -p "$R/lib"
ln -sfn "$NV/bin" "$R/bin"; ln -sfn "$NV/include" "$R/include"; ln -sfn "$NV/nvvm" "$R/nvvm"
for l in cudart cublas cublasLt nvrtc; do ln -sf "$NV/lib/lib$l.so.13" "$R/lib/lib$l.so"; done
ln -sf "$NV/lib/libcurand.so.10" "$R/lib/libcurand.so"

# A link-only libcuda stub: every driver entry point cudarc binds returns
# CUDA_ERROR_STUB_LIBRARY (34). Never put it on the GPU machine's library path.
cargo fetch --quiet
C=$(ls -d ~/.cargo/registry/src/*/cudarc-0.19.* 2>/dev/null | sort -V | tail -1)
[ -n "$C" ] || { echo "cudarc 0.19 sources not found after cargo fetch" >&2; exit 1; }
mkdir -p "$W/stub"
grep -oE 'pub unsafe fn cu[A-Za-z0-9_]+\(' "$C/src/driver/sys/mod.rs" | sed 's/pub unsafe fn //;s/(//' | sort -u \
  | awk '{print "int " $1 "(void){return 34;}"}' > "$W/stub/libcuda_stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$W/stub/libcuda.so.1" "$W/stub/libcuda_stub.c"
ln -sf "$W/stub/libcuda.so.1" "$R/lib/libcuda.so"

export CUDA_HOME="$R" NVCC="$R/bin/nvcc" CUDARC_CUDA_VERSION=13000 CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export LIBRARY_PATH="$R/lib:${LIBRARY_PATH:-}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target/cuda}"
if [ $# -eq 0 ]; then set -- --release --bin cellmol --features cuda; fi
cargo build "$@"
echo "built; run locally with LD_LIBRARY_PATH=$NV/lib:$W/stub"
