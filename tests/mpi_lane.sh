# Sourced by run_all.sh and run_phdf5.sh. mpi_lane MPIEXEC N SECONDS LABEL PYTEST_ARGS...: run the
# MPI-marked tests under MPIEXEC -n N with a timeout (a hang fails instead of stalling), each rank's
# output in its own log; show rank 0's summary, or every rank's tail and exit if any rank failed.
mpi_lane() {
  local launcher=$1 n=$2 limit=$3 label=$4 logs status=0
  shift 4
  echo "== $label, mpiexec -n $n"
  logs=$(mktemp -d)
  timeout -k 30 "$limit" "$launcher" -n "$n" sh -c \
    "exec python -m pytest --with-mpi -m mpi -q -p no:cacheprovider $* > $logs/rank\${PMI_RANK:-\${OMPI_COMM_WORLD_RANK:-0}}.log 2>&1" \
    || status=$?
  if [ "$status" -ne 0 ]; then
    for f in "$logs"/rank*.log; do echo "-- $f"; tail -n 60 "$f"; done
    echo "$label with $n ranks failed (exit $status; 124 means the timeout was hit)"
    exit "$status"
  fi
  grep -v -E '^(MPI|MPICH|mpi4py)' "$logs/rank0.log" | sed '/^\s*$/d' | tail -n 5
  rm -rf "$logs"
}

# use_private_tmp: point TMPDIR (pytest's tmp_path, tempfile, the lane's logs) at a new folder that is
# removed when the calling script exits, so that a lane leaves nothing in /tmp.
# MPICH's mpiexec writes its hwloc topology to /tmp/hydra_hwloc_xmlfile_* whatever TMPDIR says, and
# leaves it there when a job is killed (tests kill jobs on purpose): those made during the lane go too.
use_private_tmp() {
  HPCFIT_TMP=$(mktemp -d "${TMPDIR:-/tmp}/hpcfit-tests.XXXXXX")
  touch "$HPCFIT_TMP/.started"
  trap 'find /tmp -maxdepth 1 -name "hydra_hwloc_xmlfile_*" -user "$(id -u)" -newer "$HPCFIT_TMP/.started" -delete
        rm -rf "$HPCFIT_TMP"' EXIT
  export TMPDIR=$HPCFIT_TMP
}
