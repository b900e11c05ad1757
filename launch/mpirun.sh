#!/usr/bin/env bash
# Usage: launch/mpirun.sh N [python arguments...]
# Runs `python -m mpi4py ARGS` on N ranks (abort-on-error), each with cores/N threads for BLAS and OpenMP.
set -euo pipefail
n=${1:?usage: launch/mpirun.sh N [python arguments...]}
shift
cores=$(nproc)
threads=$(( cores / n > 0 ? cores / n : 1 ))
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
python=${PYTHON:-python}
mpiexec=${MPIEXEC:-$(dirname "$(command -v "$python")")/mpiexec}
[ -x "$mpiexec" ] || mpiexec=mpiexec
exec "$mpiexec" -n "$n" "$python" -m mpi4py "$@"
