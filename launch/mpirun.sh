#!/usr/bin/env bash
# Usage: [PYTHON=/path/to/venv/bin/python] launch/mpirun.sh N [python arguments...]
# Runs `python -m mpi4py ARGS` on N ranks (abort-on-error), each with cores/N threads for BLAS and
# OpenMP, and (when N <= cores) bound to its own cores/N cores: XLA sizes its thread pool by the
# cores a process may use, and two unbound ranks on two cores ran the XPCS Jacobian kernel ~25 %
# slower. HPCFIT_BIND_CORES=0 leaves ranks unbound. Binding does not change a fit's bits (the kernels'
# sums do not depend on XLA's thread count: hpcfit/kernels/sums.py). No activated venv needed:
# PYTHON (default: .venv/bin/python of this repository, else python3 on PATH) is used as given, and
# mpiexec is the one beside it (the mpich wheel's), else MPIEXEC, else mpiexec on PATH. With NVIDIA
# GPUs present, each rank sees one GPU: local rank k gets GPU k mod (number of GPUs) through
# CUDA_VISIBLE_DEVICES (launch/one_gpu_per_rank.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
n=${1:?usage: [PYTHON=...] launch/mpirun.sh N [python arguments...]}
shift
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$here/../.venv/bin/python" ]; then PYTHON=$here/../.venv/bin/python; else PYTHON=$(command -v python3); fi
fi
python=$(command -v "$PYTHON") || { echo "launch/mpirun.sh: python not found: $PYTHON" >&2; exit 1; }
mpiexec=${MPIEXEC:-$(dirname "$python")/mpiexec}
if [ ! -x "$mpiexec" ]; then
  mpiexec=$(command -v mpiexec) || { echo "launch/mpirun.sh: no mpiexec beside $python nor on PATH" \
    "(pip install 'hpcfit[mpich]' into that environment, or set MPIEXEC)" >&2; exit 1; }
fi
cores=$(nproc)
threads=$(( cores / n > 0 ? cores / n : 1 ))
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
bind=()
if [ "${HPCFIT_BIND_CORES:-1}" != 0 ] && [ "$n" -le "$cores" ]; then
  if "$mpiexec" --version 2>&1 | grep -qi hydra; then bind=(-bind-to "core:$threads")
  else bind=(--map-by "slot:PE=$threads" --bind-to core); fi          # Open MPI
fi
gpus=0
if command -v nvidia-smi >/dev/null 2>&1; then
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
fi
if [ "$gpus" -gt 0 ]; then
  export HPCFIT_GPUS=$gpus
  exec "$mpiexec" "${bind[@]}" -n "$n" "$here/one_gpu_per_rank.sh" "$python" -m mpi4py "$@"
fi
exec "$mpiexec" "${bind[@]}" -n "$n" "$python" -m mpi4py "$@"
