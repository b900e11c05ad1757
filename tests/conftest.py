"""Strict settings for every test: float64 in JAX, implicit rank promotion an error (a kernel that
broadcasts (n,) against (n, 1) by accident fails instead of computing an n × n array), NumPy errors
raised, warnings are errors (pyproject)."""
import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True)
def _numpy_errors():
    with np.errstate(all="raise", under="ignore"):
        yield


@pytest.fixture(scope="module")
def world():
    """MPI.COMM_WORLD for the MPI lane (mpi4py imported only by tests that ask for it)."""
    from mpi4py import MPI
    return MPI.COMM_WORLD


@pytest.fixture(scope="module")
def shared_dir(world):
    """A temporary folder every rank sees (made by rank 0, removed after the module)."""
    import shutil
    import tempfile

    path = world.bcast(tempfile.mkdtemp(prefix="hpcfit-mpi-") if world.rank == 0 else None)
    yield path
    world.Barrier()
    if world.rank == 0:
        shutil.rmtree(path, ignore_errors=True)


def write_shared_h5(world, path, **datasets):
    """Rank 0 writes an HDF5 file of these datasets; every rank returns its path once it exists."""
    import h5py

    if world.rank == 0:
        with h5py.File(path, "w") as f:
            for name, data in datasets.items():
                f[name] = data
    world.Barrier()
    return path
