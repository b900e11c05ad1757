"""Per-point outputs on 2 and 3 ranks: the gathered writer (rank 0 writes what the ranks send) and,
in the parallel-HDF5 lane (tests/run_phdf5.sh), the collective "mpio" writer give the same file as
one process; the values match numpy's evaluation of the model."""
import os

import h5py
import numpy as np
import pytest

import hpcfit
from hpcfit.comm import Communicator
from hpcfit.data import ArraySource, HDF5Source
from hpcfit.output.per_point import DATASETS, write_per_point

pytestmark = pytest.mark.mpi(min_size=2)
X = np.linspace(0.0, 5.0, 50_001)
SIGMA = 0.01 + 0.002 * X
Y = 2.0 * np.exp(-1.3 * X) + 0.5 + SIGMA * np.sin(37.0 * X)


def read(path):
    with h5py.File(path) as f:
        return {k: f[k][()] for k in DATASETS}, f.attrs["writer"]


@pytest.mark.parametrize("parallel", [False, True])
def test_per_point_writers_give_the_serial_file(world, shared_dir, parallel):
    if parallel and not h5py.get_config().mpi:      # the parallel-HDF5 lane checks that it has it
        pytest.skip("h5py without parallel HDF5: the mpio writer runs in the parallel-HDF5 lane")
    result = hpcfit.curve_fit(hpcfit.models.exponential_decay, X, Y, sigma=SIGMA, p0=[1.0, 0.2, 0.0], method="gn",
                              chunk_size=4096, verbose=0, comm=world)
    data = os.path.join(shared_dir, f"data-{parallel}.h5")
    if world.rank == 0:
        with h5py.File(data, "w") as f:
            f["x"], f["y"], f["sigma"] = X, Y, SIGMA
        write_per_point(os.path.join(shared_dir, f"serial-{parallel}.h5"), result, ArraySource(X, Y, SIGMA),
                        Communicator(None), 4096)
    world.Barrier()
    out = os.path.join(shared_dir, f"ranks-{parallel}.h5")
    with Communicator(world) as hc:
        write_per_point(out, result, HDF5Source(data, x="x", sigma="sigma"), hc, 4096, parallel=parallel)
    ours, writer = read(out)
    serial, _ = read(os.path.join(shared_dir, f"serial-{parallel}.h5"))
    assert writer == ("mpio" if parallel else "gathered")
    assert all(ours[k].tobytes() == serial[k].tobytes() for k in DATASETS)
    a, b, c = result.popt
    np.testing.assert_allclose(ours["fitted"], a * np.exp(-b * X) + c, rtol=1e-14, atol=1e-15)
    assert not os.path.exists(out + ".tmp")
