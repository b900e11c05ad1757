"""Every loop ends, and a result says when it should not be trusted: constructed pathological cases,
each run under an alarm so that a loop that does not end fails the test instead of hanging it."""
import signal
import warnings
from contextlib import contextmanager

import jax.numpy as jnp
import numpy as np
import pytest

import hpcfit
from hpcfit import Status


@contextmanager
def ends_within(seconds: int):
    def fail(*_):
        raise AssertionError(f"the fit did not end within {seconds} s")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def stretched(x, A, tau, beta):
    return A * jnp.exp(-(x / tau) ** beta)


def _stretched_data(n=20000):
    x = np.linspace(0.0, 10.0, n)             # x = 0: d/dβ of (x/τ)^β is 0·log 0 = NaN for every β
    return x, 2.0 * np.exp(-(x / 3.0) ** 0.7) + 0.01 * np.random.default_rng(0).standard_normal(n)


@pytest.mark.parametrize("method", ["gn", "hybrid"])
def test_steps_taken_back_for_non_finite_derivatives_end_and_are_reported(method):
    """A step that lowers the cost to a point whose derivatives are NaN is taken back; the damping must
    grow over such take-backs (it used to shrink by 3 on the accept and double on the take-back: forever)."""
    x, y = _stretched_data()
    with ends_within(120):
        res = hpcfit.curve_fit(stretched, x, y, p0=[1.5, 2.0, 1.2], method=method, verbose=0)
    assert res.nfev < 500
    assert not res.trustworthy and any("taken back" in issue for issue in res.trust_issues)


def test_max_nfev_bounds_the_passes_and_max_iterations_default_is_large():
    x, y = _stretched_data(2000)
    res = hpcfit.curve_fit(stretched, x, y, p0=[1.5, 2.0, 1.2], method="gn", verbose=0, max_nfev=7)
    assert res.status == Status.MAX_NFEV and res.nfev <= 7 and not res.success
    assert hpcfit.FitOptions().max_iterations >= 500           # NIST's Bennett5 needs ~300


def test_a_cost_that_is_noise_at_fine_scales_ends():
    """A model with noise finer than any step it predicts (steps are rejected or accepted at random)
    still ends: on a tolerance, no progress, or the iteration limit."""
    x = np.linspace(0.0, 1.0, 5000)
    y = 3.0 * x + 1.0

    def rough(x, a, b):
        return a * x + b + 1e-3 * jnp.sin(1e7 * a) * jnp.ones_like(x)

    with ends_within(120):
        res = hpcfit.curve_fit(rough, x, y, p0=[2.0, 1.5], method="gn", verbose=0, xtol=1e-15, ftol=1e-15,
                               gtol=1e-15)
    assert res.n_iterations <= hpcfit.FitOptions().max_iterations and res.nfev < 5000


def fit_with_an_unused_parameter(**kw):
    """An exponential fit whose 4th parameter the model ignores; returns the result and the
    RankDeficientWarnings this process caught (also used by the MPI lane)."""
    x = np.linspace(0.0, 4.0, 6000)
    y = 2.5 * np.exp(-1.3 * x) + 0.5 + 0.05 * np.random.default_rng(0).standard_normal(x.size)

    def model(x, a, k, c, unused):
        return a * jnp.exp(-k * x) + c + 0.0 * unused

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = hpcfit.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0, 3.0], verbose=0, **kw)
    return res, [w for w in caught if issubclass(w.category, hpcfit.RankDeficientWarning)]


def test_an_undetermined_parameter_gets_inf_perr_named_in_one_warning_and_the_report():
    res, deficient = fit_with_an_unused_parameter()
    assert len(deficient) == 1 and "unused" in str(deficient[0].message)
    assert res.rank == 3 and res.rank_deficient and np.isinf(res.perr[3])
    assert np.all(np.isnan(res.pcov[3, :3])) and np.all(np.isnan(res.pcov[:3, 3]))
    assert np.all(np.isfinite(res.perr[:3])) and np.all(res.perr[:3] > 0)
    assert not res.trustworthy and any("unused" in issue for issue in res.trust_issues)
    assert "NOT DETERMINED" in res.report() and "NOT TRUSTWORTHY" in res.report()


def test_a_parameter_on_its_bound_and_a_fit_ended_on_a_limit_are_not_trustworthy():
    x = np.linspace(0.0, 4.0, 3000)
    y = 2.5 * np.exp(-1.3 * x) + 0.5 + 0.05 * np.random.default_rng(0).standard_normal(x.size)
    model = hpcfit.models.exponential_decay
    held = hpcfit.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0], bounds=([0, 0, 0], [2.0, 5, 5]), verbose=0)
    assert held.success and held.active_mask.tolist() == [1, 0, 0]
    assert not held.trustworthy and held.trust_issues == ("a is on its upper bound",)
    cut = hpcfit.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0], max_iterations=1, verbose=0, method="gn")
    assert not cut.trustworthy and "MAX_ITERATIONS" in cut.trust_issues[0]
    fine = hpcfit.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0], verbose=0)
    assert fine.trustworthy and fine.trust_issues == ()


def test_a_non_finite_jacobian_names_the_phase_the_parameters_and_the_point():
    x = np.linspace(0.0, 1.0, 1000)
    y = np.sqrt(x) + 1.0

    def model(x, a, b):
        return a * jnp.sqrt(x - b) + 1.0

    with pytest.raises(hpcfit.InputError, match=r"at p0 = \[1\.0, 0\.0\] \(phase 2\).*first at global point "
                                                r"index 0|JᵀWJ is not finite at p0 = \[1\.0, 0\.0\] \(phase 2\)"):
        hpcfit.curve_fit(model, x, y, p0=[1.0, 0.0], verbose=0)
