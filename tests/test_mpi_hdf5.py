"""MPI lane for HDF5 streaming: each rank reads only its chunks, and the bits equal the serial fit."""
import os

import numpy as np
import pytest

import hpcfit
from hpcfit import RegularGrid
from hpcfit.data import HDF5Source
from hpcfit.models import exponential_decay
from conftest import write_shared_h5

pytestmark = pytest.mark.mpi(min_size=2)
N = 30007


def _data():
    rng = np.random.default_rng(11)
    x = np.linspace(0.0, 5.0, N)
    sigma = 0.05 + 0.01 * rng.uniform(size=N)
    return x, 2.5 * np.exp(-1.3 * x) + 0.5 + sigma * rng.standard_normal(N), sigma


@pytest.mark.parametrize("coords", ["dataset", "grid"])
def test_streaming_gives_the_serial_bits(world, shared_dir, coords):
    x, y, sigma = _data()
    path = write_shared_h5(world, os.path.join(shared_dir, f"data-{coords}.h5"), x=x, y=y, sigma=sigma)
    kw = {"x": "x"} if coords == "dataset" else {"grid": RegularGrid(x)}
    serial = hpcfit.fit(exponential_decay, HDF5Source(path, sigma="sigma", **kw), p0=[1, 1, 0], chunk_size=997,
                        verbose=0)
    in_memory = hpcfit.curve_fit(exponential_decay, x, y, p0=[1, 1, 0], sigma=sigma, chunk_size=997, verbose=0)
    par = hpcfit.fit(exponential_decay, HDF5Source(path, sigma="sigma", **kw), p0=[1, 1, 0], chunk_size=997,
                     verbose=0, comm=world)
    assert par.popt.tobytes() == serial.popt.tobytes() == in_memory.popt.tobytes()
    assert par.pcov.tobytes() == serial.pcov.tobytes()
    assert par.info["n_ranks"] == world.size


def test_nan_in_the_last_ranks_chunks_is_raised_everywhere(world, shared_dir):
    x, y, sigma = _data()
    y = y.copy()
    y[N - 5] = np.inf                                     # in the last chunk, owned by the last rank
    path = write_shared_h5(world, os.path.join(shared_dir, "nan.h5"), x=x, y=y)
    with pytest.raises(hpcfit.InputError) as info:
        hpcfit.fit(exponential_decay, HDF5Source(path, x="x"), p0=[1, 1, 0], chunk_size=997, verbose=0, comm=world)
    messages = world.allgather(str(info.value))
    assert all(m == messages[0] for m in messages)
    assert f"first at global point index {N - 5}" in messages[0]
    assert f"found on rank {world.size - 1}" in messages[0]


def test_missing_dataset_is_raised_everywhere(world, shared_dir):
    x, y, _ = _data()
    path = write_shared_h5(world, os.path.join(shared_dir, "plain.h5"), x=x, y=y)
    with pytest.raises(hpcfit.InputError, match=r"dataset 'sigma' does not exist"):
        hpcfit.fit(exponential_decay, HDF5Source(path, x="x", sigma="sigma"), p0=[1, 1, 0], verbose=0, comm=world)
