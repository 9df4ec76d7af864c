#!/usr/bin/env bash
# Flow Expander on Morph conformers under one verifier, several settings ×
# several seeds, then one markdown table of before → after per run (issue 7:
# "validity within 2 points of the pre-trained model and higher diversity").
#
# Usage: benches/compare/expand_fe_sweep.sh MODEL_DIR GRAPHS.sdf OUT_DIR [SEED...]
#
#   MODEL_DIR   trained Morph model (`cellmol morph fit`)
#   GRAPHS.sdf  real molecules: FE expands the conformers of the first
#               n_graphs (6) of them that pass the selection, and it is the
#               reference of `novel valid` (--train)
#   OUT_DIR     created; holds NAME-sSEED/ (adapted model with
#               expand_report.json), NAME-sSEED.{json,log,seconds} and table.md
#   SEED...     default 0 1 2 3
#
# Environment: SETTINGS (space-separated names; default "default guard-pass
# guard-bond"): `default` runs with no --config (the CLI's defaults for the
# verifier), any other NAME reads benches/compare/fe_settings/NAME.toml, or
# a path to a TOML file (its file name without .toml names the run).
# VERIFIER (default validity), JOBS (runs at once, each on one core;
# default 2), CELLMOL (binary; default target/release/cellmol), PY (python3;
# default .venv/bin/python3).
#
# One run of the FE defaults (6 graphs × 48 conformers, K = 2) on a quick
# model takes 10–17 minutes on one core; guard settings (K = 3 plus the guard
# samples and retries) up to twice that.
set -euo pipefail
if [ $# -lt 3 ]; then
    sed -n '2,14p' "$0" >&2
    exit 2
fi
MODEL="$1"
GRAPHS="$2"
OUT="$3"
shift 3
SEEDS=("$@")
[ ${#SEEDS[@]} -gt 0 ] || SEEDS=(0 1 2 3)
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${CELLMOL:-$ROOT/target/release/cellmol}"
PY="${PY:-$ROOT/.venv/bin/python3}"
VERIFIER="${VERIFIER:-validity}"
JOBS="${JOBS:-2}"
read -r -a NAMES <<< "${SETTINGS:-default guard-pass guard-bond}"
[ -x "$BIN" ] || { echo "error: cellmol binary $BIN not found (build with cargo build --release -p cellmol or set CELLMOL)" >&2; exit 2; }
[ -f "$MODEL/config.json" ] || { echo "error: $MODEL is not a Morph model directory (no config.json)" >&2; exit 2; }
[ -f "$GRAPHS" ] || { echo "error: molecules $GRAPHS not found" >&2; exit 2; }
for s in "${SEEDS[@]}"; do
    case "$s" in '' | *[!0-9]*) echo "error: seeds must be non-negative integers, got '$s'" >&2; exit 2 ;; esac
done
case "$JOBS" in '' | 0 | *[!0-9]*) echo "error: JOBS must be a positive integer, got '$JOBS'" >&2; exit 2 ;; esac

# Resolve every settings name to (run name, TOML path or empty) before running.
declare -a RUN_NAMES RUN_TOMLS
for n in "${NAMES[@]}"; do
    if [ "$n" = default ]; then
        RUN_NAMES+=(default)
        RUN_TOMLS+=("")
    elif [ -f "$n" ]; then
        RUN_NAMES+=("$(basename "$n" .toml)")
        RUN_TOMLS+=("$n")
    elif [ -f "$ROOT/benches/compare/fe_settings/$n.toml" ]; then
        RUN_NAMES+=("$n")
        RUN_TOMLS+=("$ROOT/benches/compare/fe_settings/$n.toml")
    else
        echo "error: settings '$n' is neither 'default', a TOML file, nor benches/compare/fe_settings/$n.toml" >&2
        exit 2
    fi
done
mkdir -p "$OUT"

one() { # run name, toml (may be empty), seed
    local name="$1" toml="$2" seed="$3" tag="$1-s$3" t0 t1 cfg=()
    [ -z "$toml" ] || { cp "$toml" "$OUT/$tag.toml"; cfg=(--config "$OUT/$tag.toml"); }
    t0=$(date +%s)
    if CANDLE_NUM_THREADS=1 "$BIN" expand fe "$MODEL" -o "$OUT/$tag" "${cfg[@]}" --graphs "$GRAPHS" \
        --train "$GRAPHS" --verifier "$VERIFIER" --json --seed "$seed" --force -q \
        > "$OUT/$tag.json" 2> "$OUT/$tag.log"; then
        t1=$(date +%s)
        echo $((t1 - t0)) > "$OUT/$tag.seconds"
        echo "$tag: $((t1 - t0)) s" >&2
    else
        echo "error: $tag failed; see $OUT/$tag.log" >&2
        tail -n 5 "$OUT/$tag.log" >&2
        touch "$OUT/$tag.failed"
    fi
}

rm -f "$OUT"/*.failed
for seed in "${SEEDS[@]}"; do
    for i in "${!RUN_NAMES[@]}"; do
        while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do
            wait -n || true
        done
        one "${RUN_NAMES[$i]}" "${RUN_TOMLS[$i]}" "$seed" &
    done
done
wait
if compgen -G "$OUT/*.failed" > /dev/null; then
    echo "error: runs failed ($(cd "$OUT" && ls -- *.failed | sed 's/\.failed$//' | tr '\n' ' ')); no table written" >&2
    exit 1
fi

"$PY" - "$OUT" "$MODEL" "$VERIFIER" "${RUN_NAMES[*]}" "${SEEDS[*]}" <<'PYEOF' | tee "$OUT/table.md"
import json, sys
out, model, verifier, names, seeds = sys.argv[1:6]
arrow = lambda b, a, f: f"{f(b)} → {f(a)}"
pct = lambda v: f"{100 * v:.1f}"
f2 = lambda v: f"{v:.2f}"
f3 = lambda v: f"{v:.3f}"
print(f"FE on `{model}`, verifier {verifier}: before → after per run\n")
print("| settings | seed | validity % | Δ points | Vendi | Vendi (fp) | distinct valid SMILES "
      "| valid RMSD Å | all RMSD Å | bond recovery | distinct valid conformers | guard tries | time (s) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for name in names.split():
    for seed in seeds.split():
        tag = f"{name}-s{seed}"
        rep = json.load(open(f"{out}/{tag}/expand_report.json"))
        b, a, d = rep["before"], rep["after"], rep["details"]
        g = d.get("guard")
        tries = "–" if not g else f"{g['metric']} base {g['base_rate']:.3f}: " + ", ".join(
            f"it{t['iteration']} {t['expand_lr']:.2g}→{t['rate']:.3f}{'A' if t['accepted'] else 'r'}"
            for t in g["tries"])
        dv = d["distinct_valid_conformers"]
        print(f"| {name} | {seed} | {arrow(b['validity'], a['validity'], pct)} "
              f"| {100 * (a['validity'] - b['validity']):+.1f} | {arrow(b['vendi'], a['vendi'], f2)} "
              f"| {arrow(b['vendi_fp'], a['vendi_fp'], f2)} | {b['distinct_valid']} → {a['distinct_valid']} "
              f"| {arrow(d['rmsd_diversity']['before'], d['rmsd_diversity']['after'], f3)} "
              f"| {arrow(d['rmsd_diversity_all']['before'], d['rmsd_diversity_all']['after'], f3)} "
              f"| {arrow(d['bond_recovery']['before'], d['bond_recovery']['after'], f3)} "
              f"| {dv['before']} → {dv['after']} | {tries} | {open(f'{out}/{tag}.seconds').read().strip()} |")
print("\nAcceptance (issue 7): validity within 2 points of before and a higher Vendi.")
PYEOF
