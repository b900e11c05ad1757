#!/usr/bin/env bash
# The SLURM lane: a real single-node cluster (munge, slurmctld, slurmd from Debian's slurm-wlm; the
# recipe and its pitfalls are in ../shared/INSTALL-NOTES.md). It submits slurm/fit.sbatch with
# sbatch on 2 tasks, delivers SIGUSR1 to the batch shell mid-fit (scancel --signal=USR1 --batch),
# and checks that the job stops with its checkpoint, requeues itself, resumes, completes, and ends
# with the bits of an uninterrupted run; then the same for the shipped XPCS config (`init xpcs`), with
# SIGTERM and SIGUSR1. Every daemon it started is stopped on exit.
# Needs the venv of tests/run_all.sh (HPCFIT_VENV, default .venv) and root with apt-get, or SLURM
# and munge already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
venv=${HPCFIT_VENV:-$repo/.venv}
py="$venv/bin/python"
[ -x "$py" ] || { echo "the SLURM lane needs the venv of tests/run_all.sh at $venv"; exit 2; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing slurm-wlm and munge (Debian)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
  else
    echo "the SLURM lane needs slurm-wlm and munge (run as root on Debian, or install them)"
    exit 2
  fi
fi

work=$(mktemp -d /tmp/hpcfit-slurm.XXXXXX)
started_munge=0
cleanup() {
  for pidfile in "$work/slurmd.pid" "$work/slurmctld.pid"; do
    [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  if [ "$started_munge" = 1 ] && [ -s /run/munge/munged.pid ]; then
    kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
  fi
  sleep 1
  rm -rf "$work"
}
trap cleanup EXIT

echo "== starting munge, slurmctld and slurmd (single node) in $work"
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  [ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged
  started_munge=1
fi
host=$(hostname)
mem=$(( $(free -m | awk '/^Mem:/ {print $2}') - 1000 ))
mkdir -p "$work/state" "$work/spool"
cat > "$work/slurm.conf" <<CONF
ClusterName=hpcfit-ci
# job ids never seen on this machine before: MPICH names its /dev/shm files after job.step, and a
# killed step of an earlier run would otherwise break MPI_Init of a new job with the same id
FirstJobId=$(( $(date +%s) % 1000000 * 10 + 10 ))
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
MpiDefault=pmi2
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerParameters=sched_interval=5,bf_interval=5
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=300
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
NodeName=$host CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$work/slurm.conf"
/usr/sbin/slurmctld -i
/usr/sbin/slurmd
for _ in $(seq 120); do
  [ "$(sinfo -h -o %t 2>/dev/null)" = idle ] && break
  sleep 0.5
done
[ "$(sinfo -h -o %t)" = idle ] || { echo "slurmd did not come up"; tail -20 "$work"/*.log; exit 1; }

job="$work/job"
mkdir -p "$job" "$work/reference"
"$py" - "$job" <<'PY'
import sys
import h5py
import numpy as np
x = np.linspace(0.0, 5.0, 30_000)
sigma = 0.01 + 0.002 * x
y = 2.0 * np.exp(-1.3 * x) + 0.5 + sigma * np.sin(37.0 * x)
with h5py.File(f"{sys.argv[1]}/data.h5", "w") as f:
    f["x"], f["y"], f["sigma"] = x, y, sigma
PY
cat > "$job/run.toml" <<'TOML'
# A fit long enough to be stopped mid-way: a warm-up of 3000 Adam steps, checkpointed every 300.
[data]
file = "data.h5"
sigma = "sigma"
[model]
name = "exponential_decay"
[parameters]
a = 1.0
b = {value = 0.2, min = 0.0}
c = 0.0
[fit]
method = "hybrid"
warm_start_detection = false
warmup_max_steps = 3000
warmup_plateau_window = 100000
warmup_gtol = 0.0
chunk_size = 4096
[checkpoint]
path = "fit-checkpoint.h5"
[output]
directory = "out"
plots = false
TOML

echo "== the uninterrupted reference (one process)"
cp "$job/data.h5" "$job/run.toml" "$work/reference/"
(cd "$work/reference" && "$py" -m hpcfit fit run.toml --quiet >/dev/null)

wait_until_done() {    # JOB_ID SECONDS: sets state and restarts once the job has ended (or the time is up)
  local id=$1 info
  for _ in $(seq "$2"); do
    info=$(scontrol show job "$id" 2>/dev/null || true)
    state=$(sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' <<<"$info")
    restarts=$(sed -n 's/.*Restarts=\([0-9]*\).*/\1/p' <<<"$info")
    if [ "$state" = COMPLETED ] || [ "$state" = FAILED ] || [ "$state" = CANCELLED ]; then break; fi
    sleep 1
  done
}

requeue_case() {    # SIGNAL: delivered to the batch shell once the first checkpoint is written
  local sig=$1 dir="$work/job-$1" id state="" restarts info log
  mkdir -p "$dir"
  cp "$job/data.h5" "$job/run.toml" "$dir/"
  echo "== sbatch -n 2 slurm/fit.sbatch; SIG$sig to the batch shell mid-fit"
  id=$(sbatch --parsable -n 2 --chdir="$dir" --export="ALL,HPCFIT_VENV=$venv" "$repo/slurm/fit.sbatch" run.toml --quiet)
  for _ in $(seq 600); do
    [ -e "$dir/fit-checkpoint.h5" ] && break
    sleep 0.2
  done
  [ -e "$dir/fit-checkpoint.h5" ] || { echo "no checkpoint appeared"; cat "$dir"/hpcfit-*.out; exit 1; }
  scancel --signal="$sig" --batch "$id"
  wait_until_done "$id" 300
  log="$dir/hpcfit-$id.out"
  echo "-- job $id: $state after ${restarts:-?} restart(s); its log:"
  cat "$log"
  [ "$state" = COMPLETED ] || { echo "the job did not complete"; exit 1; }
  [ "${restarts:-0}" -ge 1 ] || { echo "the job was not requeued"; exit 1; }
  grep -q "SIG$sig: asking the fit to checkpoint" "$log" || { echo "the batch shell did not pass SIG$sig on"; exit 1; }
  grep -q "requeueing job $id" "$log" || { echo "no requeue in the log"; exit 1; }
  grep -q "restart count 1" "$log" || { echo "the requeued run did not start"; exit 1; }
  "$py" - "$dir/out/result.json" "$work/reference/out/result.json" <<'PY'
import sys
import hpcfit
job, ref = (hpcfit.load_result(p) for p in sys.argv[1:])
assert job.popt.tobytes() == ref.popt.tobytes() and job.pcov.tobytes() == ref.pcov.tobytes(), (job.popt, ref.popt)
assert job.cost == ref.cost and job.info["n_ranks"] == 2
print(f"the requeued 2-task job resumed to the bits of the uninterrupted fit: popt {job.popt}")
PY
}

requeue_case TERM       # preemption
requeue_case USR1       # the time limit's warning (--signal=B:USR1@120)

# The flagship config as shipped (`python -m hpcfit init xpcs`: simulated 8-angle two-time maps,
# phase 1, a checkpoint every iteration), stopped as soon as its fit has begun and requeued: the
# requeued run must resume (an option compared by type once refused it) to the uninterrupted bits.
echo "== the shipped XPCS config, uninterrupted (one process)"
mkdir -p "$work/xpcs-reference"
(cd "$work/xpcs-reference" && "$py" -m hpcfit init xpcs > run.toml && "$py" -m hpcfit fit run.toml --quiet >/dev/null)

xpcs_requeue_case() {    # SIGNAL: delivered to the batch shell once the fit has begun
  local sig=$1 dir="$work/xpcs-$1" id state="" restarts info log
  mkdir -p "$dir"
  (cd "$dir" && "$py" -m hpcfit init xpcs > run.toml)
  echo "== sbatch -n 2 slurm/fit.sbatch with the shipped XPCS config; SIG$sig to the batch shell mid-fit"
  id=$(sbatch --parsable -n 2 --chdir="$dir" --export="ALL,HPCFIT_VENV=$venv,PYTHONUNBUFFERED=1" \
       "$repo/slurm/fit.sbatch" run.toml)
  log="$dir/hpcfit-$id.out"
  for _ in $(seq 900); do
    grep -q "starting a new fit" "$log" 2>/dev/null && break
    sleep 0.2
  done
  grep -q "starting a new fit" "$log" || { echo "the fit did not start"; cat "$log"; exit 1; }
  scancel --signal="$sig" --batch "$id"
  wait_until_done "$id" 400
  echo "-- job $id: $state after ${restarts:-?} restart(s); the end of its log:"
  tail -n 12 "$log"
  [ "$state" = COMPLETED ] || { echo "the job did not complete"; cat "$log"; exit 1; }
  [ "${restarts:-0}" -ge 1 ] || { echo "the job was not requeued"; exit 1; }
  grep -q "stopped by SIGUSR1" "$log" || { echo "the fit did not stop on the signal"; exit 1; }
  grep -q "resuming from" "$log" || { echo "the requeued run did not resume"; exit 1; }
  if grep -q "resume refused" "$log"; then echo "the requeued run refused its checkpoint"; exit 1; fi
  "$py" - "$dir/hpcfit-results/result.json" "$work/xpcs-reference/hpcfit-results/result.json" <<'PY'
import sys
import hpcfit
job, ref = (hpcfit.load_result(p) for p in sys.argv[1:])
assert job.popt.tobytes() == ref.popt.tobytes() and job.pcov.tobytes() == ref.pcov.tobytes(), (job.popt, ref.popt)
assert job.info["n_ranks"] == 2
print(f"the requeued 2-task XPCS job resumed to the bits of the uninterrupted fit: D0 = {job.popt[0]!r}")
PY
}

xpcs_requeue_case TERM
xpcs_requeue_case USR1
echo "== SLURM lane passed"
