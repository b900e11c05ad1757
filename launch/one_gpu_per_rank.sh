#!/usr/bin/env bash
# Per rank: CUDA_VISIBLE_DEVICES = local rank mod HPCFIT_GPUS (the number of GPUs on the node), then
# run the command. The local rank comes from the launcher: MPICH (MPI_LOCALRANKID), Open MPI
# (OMPI_COMM_WORLD_LOCAL_RANK) or SLURM (SLURM_LOCALID).
set -euo pipefail
local_rank=${MPI_LOCALRANKID:-${OMPI_COMM_WORLD_LOCAL_RANK:-${SLURM_LOCALID:-0}}}
export CUDA_VISIBLE_DEVICES=$(( local_rank % ${HPCFIT_GPUS:-1} ))
exec "$@"
