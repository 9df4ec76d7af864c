#!/usr/bin/env bash
# Idempotent set-up: system libraries (HDF5, OpenBLAS, RDKit, Boost) and a
# project-local Python venv (.venv) with the reference tools used only by
# interop tests and comparison scripts (anndata, h5py, scanpy, rdkit, qm9pack).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

APT_PKGS=(libhdf5-dev libopenblas-dev librdkit-dev libboost-dev libboost-serialization-dev
          pkg-config hdf5-tools rdkit-data fonts-dejavu-core)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[setup] installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
REQ="scripts/requirements-ref.txt"
STAMP=".venv/.ref-installed"
if [ ! -f "$STAMP" ] || ! cmp -s "$REQ" "$STAMP"; then
  echo "[setup] installing Python reference tools into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -r "$REQ"
  cp "$REQ" "$STAMP"
fi
echo "[setup] ok: $(.venv/bin/python -c 'import importlib.metadata as m; print(*(f"{p} {m.version(p)}" for p in ("anndata", "h5py", "scanpy", "rdkit")))')"
