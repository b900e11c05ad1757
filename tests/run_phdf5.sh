#!/usr/bin/env bash
# The parallel-HDF5 lane: checkpoint tests with h5py's "mpio" driver under mpiexec -n 2 and -n 3.
# h5py must link the same MPI as the parallel HDF5 library, so this lane uses Debian's MPICH and
# libhdf5-mpich, and builds mpi4py and h5py from source against them (../shared/INSTALL-NOTES.md).
# The built wheels are kept in HPCFIT_WHEEL_CACHE (default ~/.cache/hpcfit-phdf5-wheels), so a
# rerun installs them in seconds instead of compiling for minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${HPCFIT_PHDF5_VENV:-.venv-phdf5}
wheels=${HPCFIT_WHEEL_CACHE:-$HOME/.cache/hpcfit-phdf5-wheels}
mpicc=/usr/bin/mpicc
mpiexec=/usr/bin/mpiexec.mpich

if ! [ -x "$mpiexec" ] || ! pkg-config --exists hdf5-mpich 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing libhdf5-mpich-dev (Debian)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libhdf5-mpich-dev pkg-config >/dev/null
  else
    echo "the parallel-HDF5 lane needs Debian's libhdf5-mpich-dev and pkg-config (run as root or install them)"
    exit 2
  fi
fi

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$PWD/$venv/bin/python"
"$py" -m pip install -q --upgrade pip setuptools wheel numpy Cython pkgconfig

mkdir -p "$wheels"
if ! ls "$wheels"/mpi4py-*.whl >/dev/null 2>&1; then
  echo "== building mpi4py against Debian's MPICH (cached in $wheels)"
  MPICC=$mpicc CFLAGS=-O2 "$py" -m pip wheel -q --no-deps --no-binary=mpi4py -w "$wheels" mpi4py
fi
"$py" -m pip install -q --no-index --find-links "$wheels" mpi4py
if ! ls "$wheels"/h5py-*.whl >/dev/null 2>&1; then
  # Never under build isolation: that compiles a pinned mpi4py at -O3 (past 21 GB of memory).
  echo "== building h5py against parallel HDF5 (cached in $wheels)"
  H5PY_SETUP_REQUIRES=0 HDF5_MPI=ON HDF5_PKGCONFIG_NAME=hdf5-mpich CC=$mpicc \
    "$py" -m pip wheel -q --no-deps --no-build-isolation --no-binary=h5py -w "$wheels" h5py
fi
"$py" -m pip install -q --no-index --find-links "$wheels" h5py
"$py" -m pip install -q -e '.[test]'
"$py" -c "import h5py, sys; sys.exit(0 if h5py.get_config().mpi else 'h5py in $venv has no parallel HDF5')"

export PATH="$PWD/$venv/bin:$PATH" HPCFIT_EXPECT_MPIO=1
source tests/mpi_lane.sh
use_private_tmp
for n in 2 3; do
  mpi_lane "$mpiexec" "$n" 900 "checkpoint and per-point output tests with parallel HDF5" tests/test_mpi_checkpoint.py tests/test_mpi_per_point.py
done
