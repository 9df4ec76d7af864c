#!/usr/bin/env bash
# Build everything the lent GPU machine runs and pack it as out/gpu.tar.xz
# (the `device` tool carries it; the machine has the NVIDIA driver and the
# CUDA 13 libraries in its PyTorch wheels, but no Rust toolchain and none of
# our Debian libraries). Contents, all built with the `cuda` feature by
# scripts/build-cuda.sh and stripped:
#   bin/cellmol            the CLI without RDKit (--no-default-features)
#   bin/devices            tests/devices.rs: CPU vs CUDA training-step losses
#   bin/lcd_step_bench     LCD stage-2 step + sampler throughput
#   bin/egnn_step_bench    Morph EGNN training-step throughput
#   lib/                   the shared libraries ldd names that are not part of a
#                          plain glibc/libstdc++ system or CUDA (HDF5, OpenBLAS, ...)
#   run.sh                 what to run there (scripts/gpu-run.sh)
# Usage: bash scripts/gpu-bundle.sh        then, with the device tool:
#   run(command="bash scripts/gpu-run.sh", carry=["out/gpu.tar.xz"])
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
T="${CARGO_TARGET_DIR:-$ROOT/target/cuda}"
export CARGO_TARGET_DIR="$T"
B=$(mktemp -d)
trap 'rm -rf "$B"' EXIT
mkdir -p "$B/gpu/bin" "$B/gpu/lib" out

# One cargo invocation for every target: one feature resolution, so candle's
# CUDA kernels (most of the build time) compile once. Separate `-p lcd` /
# `-p morph` builds resolve features differently and rebuild the kernels.
MSG="$B/cargo-messages.json"
bash scripts/build-cuda.sh --release --no-default-features \
  -p cellmol -p lcd -p morph --features cellmol/cuda,lcd/cuda,morph/cuda \
  --bin cellmol --test devices --example lcd_step_bench --example egnn_step_bench \
  --message-format=json-render-diagnostics > "$MSG"
DEV_TEST=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    try: m = json.loads(l)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "devices" and m.get("executable"):
        print(m["executable"])' "$MSG" | tail -1)
[ -x "$DEV_TEST" ] || { echo "gpu-bundle: the devices test binary was not built" >&2; exit 1; }

cp "$T/release/cellmol" "$B/gpu/bin/cellmol"
cp "$DEV_TEST" "$B/gpu/bin/devices"
cp "$T/release/examples/lcd_step_bench" "$T/release/examples/egnn_step_bench" "$B/gpu/bin/"
strip "$B"/gpu/bin/*

# Shared libraries: everything ldd resolves except the C/C++ runtime and CUDA
# (the stub libcuda must never travel; the GPU machine has the real driver).
NV=$("$ROOT/.cuda-build/venv/bin/python" -c 'import sysconfig;print(sysconfig.get_paths()["purelib"])')/nvidia/cu13
export LD_LIBRARY_PATH="$NV/lib:$ROOT/.cuda-build/stub"
for f in "$B"/gpu/bin/*; do
  if ldd "$f" | grep -q 'not found'; then
    echo "gpu-bundle: $f has unresolved libraries here:" >&2; ldd "$f" | grep 'not found' >&2; exit 1
  fi
  ldd "$f" | awk '$3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  case "$name" in
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libresolv.so*|libutil.so*|libanl.so*|libnss_*|ld-linux*|libstdc++.so*|libgcc_s.so*) ;;
    libcuda.so*|libcudart.so*|libcublas*|libcurand.so*|libnvrtc*) ;;
    *) cp -L "$path" "$B/gpu/lib/$name" ;;
  esac
done
cp scripts/gpu-run.sh "$B/gpu/run.sh"
cp morph/tests/data/qm9_64.sdf "$B/gpu/"
tar -C "$B" -cJf out/gpu.tar.xz.tmp gpu
mv out/gpu.tar.xz.tmp out/gpu.tar.xz
du -h out/gpu.tar.xz
echo "gpu-bundle: out/gpu.tar.xz holds: $(cd "$B/gpu" && ls bin lib | tr '\n' ' ')"
