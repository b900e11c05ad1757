#!/usr/bin/env bash
# Set up (a venv in .venv unless HPCFIT_VENV names another) and run every test:
# the serial suite, then the MPI lane under mpiexec -n 2 and -n 3, each under a timeout so that a
# hang fails instead of stalling. Only rank 0's pytest output is shown unless a rank fails.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${HPCFIT_VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip setuptools wheel
"$venv/bin/python" -m pip install -q -e '.[mpich,test,plot]'
export PATH="$PWD/$venv/bin:$PATH"
source tests/mpi_lane.sh
use_private_tmp       # every temporary file of the lane in one folder, removed when the lane ends

echo "== serial tests"
timeout -k 30 1800 python -m pytest -q -m "not mpi" tests/

for n in 2 3; do
  mpi_lane mpiexec "$n" 1200 "MPI tests" tests/
done
