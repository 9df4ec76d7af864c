#!/usr/bin/env bash
# Integration test on a real single-node SLURM cluster (slurmctld + slurmd on
# localhost, Debian's slurm-wlm 22.05 + munge):
#  1. a 2-task job array (`cellmol slurm lcd`, quick preset, folds 0 × seeds 0,1)
#     trains two LCD models; both model directories must be finished;
#  2. a longer run is preempted with `scontrol requeue` once it has written a
#     checkpoint; it must resume from that checkpoint (not from step 0) and finish.
# The cluster is stopped at the end (by pid files), whatever happened.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

if ! command -v slurmctld >/dev/null 2>&1 && [ ! -x /usr/sbin/slurmctld ]; then
  echo "[slurm-test] installing slurm-wlm munge"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi
cargo build --quiet --bin cellmol
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
CELLMOL="$TARGET_DIR/debug/cellmol"

D=$(mktemp -d /tmp/cellmol-slurm.XXXXXX); H=$(hostname -s)
mkdir -p "$D/state" "$D/spool" "$D/log"
cat > "$D/slurm.conf" <<CONF
ClusterName=local
SlurmctldHost=$H
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
NodeName=$H CPUs=$(nproc) RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP
CONF
$SUDO mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge
[ -f /etc/munge/munge.key ] || $SUDO dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
$SUDO chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge; $SUDO chmod 400 /etc/munge/munge.key
MUNGE_STARTED=0
if ! pgrep -x munged >/dev/null; then $SUDO runuser -u munge -- /usr/sbin/munged; MUNGE_STARTED=1; fi
export SLURM_CONF=$D/slurm.conf

cleanup() {
  local rc=$?
  for f in "$D/slurmd.pid" "$D/slurmctld.pid"; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  if [ "$MUNGE_STARTED" = 1 ] && [ -f /run/munge/munged.pid ]; then kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true; fi
  if [ $rc -ne 0 ]; then
    echo "[slurm-test] FAILED; logs:"; tail -n 30 "$D"/log/*.log "$D"/work/*/logs/* 2>/dev/null || true
  fi
  exit $rc
}
trap cleanup EXIT
/usr/sbin/slurmctld -f "$SLURM_CONF"; /usr/sbin/slurmd -f "$SLURM_CONF"
for _ in $(seq 30); do sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mixed' && break; sleep 1; done
sinfo

W="$D/work"; mkdir -p "$W"
"$CELLMOL" --quiet simulate screen --kind linear --genes 12 --perturbed 6 --doubles 6 \
  --cells-per-condition 60 --counts --seed 3 -o "$W/screen.h5ad"

wait_job() { # job id, timeout s
  local id=$1 t=${2:-900}
  for _ in $(seq "$t"); do
    [ -z "$(squeue -h -j "$id" 2>/dev/null)" ] && return 0
    sleep 1
  done
  echo "[slurm-test] job $id did not finish in ${t}s"; squeue; return 1
}

echo "== 1. job array: 2 LCD fits"
# quick preset with a shorter stage 2: this checks the batch mechanics, not the model
printf '[stage1]\nsteps = 600\n[stage2]\nsteps = 2000\n' > "$W/short.toml"
JOB=$("$CELLMOL" slurm lcd "$W/screen.h5ad" -o "$W/runs" --folds 0 --seeds 0,1 --preset quick \
  --config "$W/short.toml" --n-folds 3 --fit-args "--min-cells 20" \
  --cpus-per-task 1 --mem 2G --time 00:30:00 --submit)
echo "submitted array job $JOB"
wait_job "$JOB" 1500
for m in fold0_seed0 fold0_seed1; do
  [ -f "$W/runs/$m/COMPLETE" ] || { echo "[slurm-test] $m not finished"; ls -la "$W/runs/$m" || true; exit 1; }
done
echo "both array tasks finished"

echo "== 2. preemption and resume"
cat > "$W/long.toml" <<'TOML'
# quick preset, longer, with frequent checkpoints so the requeue lands mid-run
[stage1]
steps = 600
[stage2]
steps = 4000
checkpoint_every = 100
TOML
JOB=$("$CELLMOL" slurm lcd "$W/screen.h5ad" -o "$W/long" --folds 0 --seeds 5 --preset quick --n-folds 3 --fit-args "--min-cells 20" \
  --config "$W/long.toml" --cpus-per-task 1 --mem 2G --time 00:30:00 --job-name cellmol-long --submit)
echo "submitted $JOB"
MODEL="$W/long/fold0_seed5"
for _ in $(seq 900); do [ -f "$MODEL/checkpoint/state.json" ] && break; sleep 1; done
[ -f "$MODEL/checkpoint/state.json" ] || { echo "[slurm-test] no checkpoint appeared"; exit 1; }
sleep 2
echo "checkpoint present; requeueing ${JOB}_0"
scontrol requeue "${JOB}_0"
sleep 5
scontrol update jobid="${JOB}_0" StartTime=now || true
wait_job "$JOB" 1500
LOG=$(ls "$W/long/logs/"*.out | head -1)
cat "$LOG"
grep -q "resum" "$LOG" || { echo "[slurm-test] the requeued task did not resume from its checkpoint"; exit 1; }
[ -f "$MODEL/COMPLETE" ] || { echo "[slurm-test] preempted run did not finish"; exit 1; }
echo "slurm: 2 passed, 0 failed"
