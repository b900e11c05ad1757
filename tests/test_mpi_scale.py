"""MPI lane (``mpiexec -n 2`` and ``-n 3``): the scales of data of an extreme magnitude (the residual
scale, and the scale of a parameter that starts at 0) come from the whole data, the same on any
rank count — so with a first chunk of zeros, owned by rank 0 alone, the collective fit gives the
serial fit's bits, and both give scipy's fit of the order-1 data times the amplitude."""
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import curve_fit as scipy_curve_fit

import hpcfit

pytestmark = pytest.mark.mpi(min_size=2)

CS = 1024
X = np.linspace(10.0, 0.0, 12 * CS)                     # chunk 0 is the decay's tail
Y1 = np.exp(-0.7 * X) + 0.1 + 0.01 * np.random.default_rng(7).standard_normal(X.size)
Y1[:CS] = 0.0                                           # global chunk 0: zeros


def model(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def _fit(y, amp, comm, **kw):
    with np.errstate(all="ignore"):
        return hpcfit.curve_fit(model, X, y, p0=[2.0 * amp, 0.3, 0.0], chunk_size=CS, comm=comm, verbose=0, **kw)


@pytest.mark.parametrize("amp", [1e-300, 1e300])
@pytest.mark.parametrize("method", ["gn", "hybrid"])
def test_a_zero_first_chunk_of_extreme_data_gives_the_serial_bits(world, amp, method):
    serial = _fit(amp * Y1, amp, None, method=method)
    par = _fit(amp * Y1, amp, world, method=method)
    assert par.info["residual_scale"] == serial.info["residual_scale"] != 1.0
    assert par.popt.tobytes() == serial.popt.tobytes() and par.pcov.tobytes() == serial.pcov.tobytes()
    assert par.cost.hex() == serial.cost.hex() and (par.nfev, par.njev) == (serial.nfev, serial.njev)
    ref, _ = scipy_curve_fit(lambda x, a, b, c: a * np.exp(-b * x) + c, X, Y1, p0=[2.0, 0.3, 0.0])
    assert par.success and par.trustworthy, par.trust_issues
    np.testing.assert_allclose(par.popt / [amp, 1.0, amp], ref, rtol=1e-5)    # both stop at ftol 1e-8
    everyone = world.allgather(par.popt.tobytes())
    assert all(e == everyone[0] for e in everyone)


def test_local_shards_get_the_serial_scale(world):
    """distribute="local": each rank passes its own uneven shard; the scale is the union's."""
    amp = 1e-300
    cuts = np.concatenate([[0], np.cumsum(np.arange(1, world.size + 1)) * X.size // sum(range(1, world.size + 1))])
    lo, hi = cuts[world.rank], cuts[world.rank + 1]
    serial = _fit(amp * Y1, amp, None, method="gn")
    with np.errstate(all="ignore"):
        local = hpcfit.curve_fit(model, X[lo:hi], amp * Y1[lo:hi], p0=[2.0 * amp, 0.3, 0.0], chunk_size=CS,
                                 comm=world, distribute="local", method="gn", verbose=0)
    assert local.info["residual_scale"] == serial.info["residual_scale"]
    np.testing.assert_allclose(local.popt, serial.popt, rtol=1e-12, atol=0)
