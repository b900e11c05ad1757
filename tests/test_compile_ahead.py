"""Phase 2's kernels compile on a background thread while phase 1 runs (PassEvaluator.compile_ahead):
the passes afterwards reuse them (no trace) and give the bits of an evaluator that did not."""
import h5py
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import curve_fit

import hpcfit
from hpcfit.comm import Communicator
from hpcfit import RegularGrid
from hpcfit.data import ArraySource, HDF5Source
from hpcfit.kernels.chunk import TRACE_COUNTS
from hpcfit.kernels.evaluator import PassEvaluator


def _decay(x, a, k, c):
    return a * jnp.exp(-k * x) + c


def _data(n=5000):
    x = np.linspace(0.0, 5.0, n)
    y = 2.0 * np.exp(-1.3 * x) + 0.5 + 0.01 * np.random.default_rng(0).standard_normal(n)
    return x, y


def _passes(source, ahead: bool, u):
    def model(x, a, k, c):            # a new function: kernels of its own, compiled here
        return _decay(x, a, k, c)

    with Communicator(None) as hc:
        local = source.open(hc, 1024)
        ev = PassEvaluator(hc, local, model, "linear", 1.0, np.zeros(3), np.ones(3))
        if ahead:
            ev.compile_ahead(np.zeros(3))
            ev._wait_ahead()
        traced = dict(TRACE_COUNTS)
        jac, cost = ev.jacobian_pass(u), ev.cost_pass(u)
        new_traces = {k: TRACE_COUNTS[k] - traced.get(k, 0) for k in ("jacobian", "cost")}
        ev.close()
    return jac, cost, new_traces


@pytest.mark.parametrize("kind", ["arrays", "hdf5"])
def test_kernels_compiled_ahead_are_reused_and_give_the_same_bits(tmp_path, kind):
    x, y = _data()
    if kind == "hdf5":                # streaming: chunk 0 is read once more by the compile thread
        path = tmp_path / "d.h5"
        with h5py.File(path, "w") as f:
            f["x"], f["y"] = x, y
        make = lambda: HDF5Source(str(path), y="y", x="x")      # noqa: E731
    else:
        make = lambda: ArraySource(x, y)                          # noqa: E731
    u = np.array([1.9, 1.2, 0.4])
    plain_jac, plain_cost, plain_traces = _passes(make(), False, u)
    jac, cost, traces = _passes(make(), True, u)
    assert plain_traces == {"jacobian": 1, "cost": 1}          # the reference compiled in its passes
    assert traces == {"jacobian": 0, "cost": 0}                # these were compiled ahead
    assert jac.cost == plain_jac.cost and np.array_equal(jac.jtj, plain_jac.jtj)
    assert np.array_equal(jac.jtr, plain_jac.jtr) and cost.cost == plain_cost.cost
    # and against numpy: the pass is the cost and normal equations of the data
    r = 1.9 * np.exp(-1.2 * x) + 0.4 - y
    assert cost.cost == pytest.approx(0.5 * np.sum(r * r), rel=1e-12)


@pytest.mark.parametrize("n, compiles", [(70000, 2), (60000, 1)])
def test_a_default_fit_on_a_grid_compiles_each_kernel_once_and_matches_gn(n, compiles):
    """Implicit coordinates. Beyond twice phase 1's sample size (32768) the sample has kernels of its
    own, and phase 2's compile ahead: each pair once. Within it phase 1 works on all the points with
    phase 2's own kernels: one pair, and phase 2 starts at a converged point."""
    t = np.linspace(0.0, 5.0, n)
    _, y = _data(t.size)

    def model(x, a, k, c):
        return _decay(x, a, k, c)

    def run(method):
        return hpcfit.fit(model, ArraySource(None, y, grid=RegularGrid(t)), [1.0, 1.0, 0.0], method=method)

    default, gn = run("hybrid"), run("gn")
    assert default.explore.ran
    assert default.explore.sample_points == (32768 if compiles == 2 else n)
    assert default.compile_counts["jacobian"] == compiles and default.compile_counts["cost"] == compiles
    if compiles == 1:
        assert default.n_iterations <= 2           # phase 1 converged on these very points
    assert default.cost <= gn.cost * (1 + 1e-12)
    np.testing.assert_allclose(default.popt, gn.popt, rtol=1e-7)
    ref, _ = curve_fit(lambda x, a, k, c: a * np.exp(-k * x) + c, t, y, p0=[1.0, 1.0, 0.0])
    np.testing.assert_allclose(default.popt, ref, rtol=1e-6)
