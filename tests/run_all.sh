#!/usr/bin/env bash
# Set up (a venv in .venv unless HPCFIT_VENV names another) and run every test:
# the serial suite, then the MPI lane under mpiexec -n 2 and -n 3, each under a timeout so that a
# hang fails instead of stalling. Only rank 0's pytest output is shown unless a rank fails.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${HPCFIT_VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip setuptools wheel
"$venv/bin/python" -m pip install -q -e '.[mpich,test]'
export PATH="$PWD/$venv/bin:$PATH"

echo "== serial tests"
timeout -k 30 1800 python -m pytest -q -m "not mpi" tests/

for n in 2 3; do
  echo "== MPI tests, mpiexec -n $n"
  logs=$(mktemp -d)
  status=0
  timeout -k 30 1200 mpiexec -n "$n" sh -c \
    "exec python -m pytest --with-mpi -m mpi -q -p no:cacheprovider tests/ > $logs/rank\${PMI_RANK:-\${OMPI_COMM_WORLD_RANK:-0}}.log 2>&1" \
    || status=$?
  if [ "$status" -ne 0 ]; then
    for f in "$logs"/rank*.log; do echo "-- $f"; tail -n 60 "$f"; done
    echo "MPI tests with $n ranks failed (exit $status; 124 means the timeout was hit)"
    exit "$status"
  fi
  grep -v -E '^(MPI|MPICH|mpi4py)' "$logs/rank0.log" | sed '/^\s*$/d' | tail -n 5
done
