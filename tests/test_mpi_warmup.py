"""MPI lane for phase 1: the warm-up draws its minibatches by global point index, so on 2 or 3 ranks
it takes the same steps and gives the same bits as the serial fit (computed in-process as the
reference), from arrays (global or local shards) and from a streamed HDF5 file."""
import os

import numpy as np
import pytest

import hpcfit
from hpcfit.data import HDF5Source
from conftest import write_shared_h5
from test_warmup import GAUSS_HARD, _gauss_data, gauss3

pytestmark = pytest.mark.mpi(min_size=2)


def _same(a, b, bitwise=True):
    """Same warm-up, bit for bit; the same fit bit for bit (or to 1e-12 where phase 2's chunks differ)."""
    if bitwise:
        assert a.popt.tobytes() == b.popt.tobytes()
        assert a.cost.hex() == b.cost.hex()
    else:
        np.testing.assert_allclose(a.popt, b.popt, rtol=1e-12, atol=0)
    assert (a.warmup.steps, a.warmup.reason, a.warmup.layer_counts) == (b.warmup.steps, b.warmup.reason,
                                                                        b.warmup.layer_counts)
    assert a.warmup.loss_end.hex() == b.warmup.loss_end.hex()


@pytest.mark.parametrize("distribute", ["global", "local"])
def test_hybrid_rescue_is_bitwise_the_serial_one(world, distribute):
    x, y = _gauss_data(20000)
    serial = hpcfit.curve_fit(gauss3, x, y, p0=GAUSS_HARD, verbose=0, chunk_size=1024)
    if distribute == "local":     # uneven shards, in rank order
        cuts = np.linspace(0, x.size, world.size + 1).astype(int)
        cuts[1] += 777
        x, y = x[cuts[world.rank]:cuts[world.rank + 1]], y[cuts[world.rank]:cuts[world.rank + 1]]
    par = hpcfit.curve_fit(gauss3, x, y, p0=GAUSS_HARD, verbose=0, chunk_size=1024, comm=world,
                           distribute=distribute)
    assert par.warmup.ran and par.warmup.steps > 10
    # local shards are chunked per rank, so phase 2 sums differ in the last bit; the warm-up does not
    _same(par, serial, bitwise=distribute == "global")


def test_float32_warmup_matches_serial(world):
    x, y = _gauss_data(20000)
    serial = hpcfit.curve_fit(gauss3, x, y, p0=GAUSS_HARD, verbose=0, warmup_dtype="float32", warmup_batch_size=1000)
    par = hpcfit.curve_fit(gauss3, x, y, p0=GAUSS_HARD, verbose=0, warmup_dtype="float32", warmup_batch_size=1000,
                           comm=world)
    assert par.warmup.ran
    _same(par, serial)


def test_nan_met_by_one_ranks_minibatch_is_raised_everywhere(world, shared_dir):
    x, y = _gauss_data(20000)
    y[19000] = np.nan                 # on the last rank: phase 1 reads it (sample or minibatch) before any pass
    path = write_shared_h5(world, os.path.join(shared_dir, "warmup-nan.h5"), x=x, y=y)
    with pytest.raises(hpcfit.InputError, match=r"contains NaN or Inf; first at global point index 19000"):
        hpcfit.fit(gauss3, HDF5Source(path, x="x"), GAUSS_HARD, verbose=0, comm=world, warmup_eval_points=20000)
