#!/usr/bin/env bash
# Execute every notebook in notebooks/ headless through the evcxr Rust kernel
# and fail on any error. Idempotent:
#   1. installs evcxr_jupyter (pinned; one build of 8-20 min on 2 cores) with cargo;
#   2. installs nbconvert/jupyter_client (scripts/requirements-notebooks.txt)
#      into the project venv .venv (created by scripts/setup.sh);
#   3. registers the kernel inside the venv (.venv/share/jupyter/kernels/rust);
#   4. runs `jupyter nbconvert --execute` on each notebook into a temp dir and
#      checks the executed notebooks: no error output, nothing on stderr
#      (evcxr reports a failed `?` or a panic there, with an "ok" status), at
#      least one inline image.
# The notebooks share one evcxr build directory ($CELLMOL_EVCXR_DIR, default
# /tmp/cellmol-evcxr-UID), seeded with the workspace Cargo.lock so the
# dependency versions are the tested ones; the workspace is compiled for the
# first notebook only (and again only when the sources change).
#
# Usage: bash scripts/notebooks.sh [notebooks/NAME.ipynb ...]
# Env:   KEEP_EXECUTED=DIR  keep the executed notebooks in DIR
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
EVCXR_VERSION="0.22.0"
start=$(date +%s)
log() { echo "[notebooks $(( $(date +%s) - start )) s] $*"; }

if [ ! -x .venv/bin/python ]; then
  log "no .venv: running scripts/setup.sh"
  bash scripts/setup.sh
fi

# 1. evcxr_jupyter (cargo puts it in ~/.cargo/bin)
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$CARGO_BIN:$PATH"
# (evcxr_jupyter has no --version: ask cargo what it installed)
if ! command -v evcxr_jupyter >/dev/null ||
   ! cargo install --list | grep -qx "evcxr_jupyter v$EVCXR_VERSION:"; then
  log "installing evcxr_jupyter $EVCXR_VERSION (cargo install --locked; several minutes)"
  cargo install --locked --force evcxr_jupyter --version "$EVCXR_VERSION"
fi
log "evcxr_jupyter $EVCXR_VERSION: $(command -v evcxr_jupyter)"

# 2. Jupyter tooling in the project venv
REQ="scripts/requirements-notebooks.txt"
STAMP=".venv/.notebooks-installed"
if [ ! -f "$STAMP" ] || ! cmp -s "$REQ" "$STAMP"; then
  log "installing nbconvert into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -r "$REQ"
  cp "$REQ" "$STAMP"
fi
export PATH="$ROOT/.venv/bin:$PATH"

# 3. the kernel, registered inside the venv (found through sys.prefix)
KDIR="$ROOT/.venv/share/jupyter"
KSTAMP="$KDIR/kernels/rust/.cellmol-evcxr"
if [ "$(cat "$KSTAMP" 2>/dev/null)" != "$EVCXR_VERSION $(command -v evcxr_jupyter)" ]; then
  JUPYTER_PATH="$KDIR" evcxr_jupyter --install >/dev/null
  echo "$EVCXR_VERSION $(command -v evcxr_jupyter)" > "$KSTAMP"
fi
jupyter kernelspec list | grep -q '^ *rust ' || { echo "error: the rust kernel is not registered" >&2; exit 1; }

# 4. one shared evcxr build directory, one notebook at a time. It must not
# share a parent directory with the Rust toolchain (~/.rustup) other than /:
# the relative rpath cargo writes into evcxr's code libraries is one level
# short there, and loading them fails ("dlopen failed"); the toolchain's
# library directory on LD_LIBRARY_PATH covers any location.
export EVCXR_TMPDIR="${CELLMOL_EVCXR_DIR:-${TMPDIR:-/tmp}/cellmol-evcxr-$(id -u)}"
mkdir -p "$EVCXR_TMPDIR"
export LD_LIBRARY_PATH="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec 9>"$EVCXR_TMPDIR.lock"
flock 9
cp Cargo.lock "$EVCXR_TMPDIR/Cargo.lock"

if (($#)); then notebooks=("$@"); else notebooks=(notebooks/*.ipynb); fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
failed=0
for nb in "${notebooks[@]}"; do
  t0=$(date +%s)
  name="$(basename "$nb")"
  log "executing $nb"
  # --allow-errors: keep going so the check below can print every error in full
  if ! (cd "$(dirname "$nb")" && jupyter nbconvert --to notebook --execute --allow-errors \
        --ExecutePreprocessor.timeout=1800 --ExecutePreprocessor.kernel_name=rust \
        --output-dir "$out" --output "$name" "$name") >"$out/$name.log" 2>&1; then
    tail -n 60 "$out/$name.log" >&2
    echo "error: $nb failed to execute" >&2
    failed=1
    continue
  fi
  if ! .venv/bin/python - "$out/$name" <<'PY'
import json, re, sys
path = sys.argv[1]
ansi = re.compile(r"\x1b\[[0-9;]*m")
nb = json.load(open(path))
problems, images = [], 0
for i, cell in enumerate(nb["cells"]):
    if cell["cell_type"] != "code":
        continue
    if cell.get("execution_count") is None:
        problems.append(f"cell {i}: not executed")
    for o in cell.get("outputs", []):
        if o["output_type"] == "error":
            tb = ansi.sub("", "\n".join(o.get("traceback", [])))
            problems.append(f"cell {i}: {o.get('ename')}: {ansi.sub('', o.get('evalue', ''))}\n{tb}")
        elif o["output_type"] == "stream" and o.get("name") == "stderr":
            problems.append(f"cell {i}: stderr: {''.join(o['text']).strip()[:2000]}")
        elif "image/png" in o.get("data", {}) or "image/svg+xml" in o.get("data", {}):
            images += 1
if images == 0:
    problems.append("no inline image was produced")
for p in problems:
    print(f"{path}: {p}", file=sys.stderr)
print(f"{path}: {sum(c['cell_type'] == 'code' for c in nb['cells'])} code cells, {images} images")
sys.exit(1 if problems else 0)
PY
  then
    echo "error: $nb reported errors" >&2
    failed=1
  fi
  log "$nb done in $(( $(date +%s) - t0 )) s"
  if [ -n "${KEEP_EXECUTED:-}" ]; then
    mkdir -p "$KEEP_EXECUTED" && cp "$out/$name" "$KEEP_EXECUTED/"
  fi
done
if ((failed)); then
  echo "error: some notebooks failed" >&2
  exit 1
fi
log "all ${#notebooks[@]} notebooks ran without errors"
