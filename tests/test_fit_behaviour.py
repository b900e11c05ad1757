"""Behaviour of a fit beyond agreement with scipy: termination, compilation, reporting."""
import importlib
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import hpcfit
from hpcfit import Status


def _data(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 4.0, n)
    return x, 2.5 * np.exp(-1.3 * x) + 0.5 + 0.05 * rng.standard_normal(n)


def test_second_fit_with_same_shapes_compiles_nothing():
    def fresh_model(x, a, b, c):          # a new function object: nothing cached for it yet
        return a * jnp.exp(-b * x) + c

    x, y = _data()
    first = hpcfit.curve_fit(fresh_model, x, y, p0=[1, 1, 0], chunk_size=512, verbose=0,
                             warm_start_detection=False)
    assert first.warmup.steps > 10                           # the warm-up ran many steps ...
    assert first.explore.candidates[0]["iterations"] >= 3    # ... LM on the sample too ...
    # ... and every kernel (chunk passes, which phase 1's sample shares, warm-up gradient and subset
    # loss) compiled once
    assert first.compile_counts == {"jacobian": 1, "cost": 1, "point_gradient": 1, "point_cost": 1}
    x2, y2 = _data(seed=1)
    second = hpcfit.curve_fit(fresh_model, x2, y2 + 1.0, p0=[2, 1, 1], chunk_size=512, verbose=0)
    assert second.compile_counts == {"jacobian": 0, "cost": 0, "point_gradient": 0, "point_cost": 0}
    assert second.success


def test_result_unpacks_and_reports_passes():
    x, y = _data()
    res = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1, 1, 0], verbose=0)
    popt, pcov = res
    assert popt is res.popt and pcov is res.pcov
    assert res.njev == res.n_iterations + 1                  # one Jacobian pass per accepted step + start
    # at most one cost pass per trial step (none where the Jacobian pass came at once)
    trials = res.n_iterations + sum(h.rejected for h in res.history)
    assert res.njev <= res.nfev <= res.njev + trials
    assert res.chi2 == pytest.approx(2 * res.cost) and res.dof == x.size - 3
    assert [h.iteration for h in res.history] == list(range(res.n_iterations + 1))
    assert all(b.cost < a.cost for a, b in zip(res.history, res.history[1:]))
    assert res.info["jacobian_points_per_second"] > 0
    assert res.names == ["a", "b", "c"] and " c = " in res.report() and res.as_dict()["b"] == res.popt[1]


@pytest.mark.parametrize("loss", ["linear", "cauchy"])
def test_after_a_very_successful_step_the_trial_gets_its_jacobian_pass_at_once(monkeypatch, loss):
    """Speculative Jacobian passes give plain LM's fit (a cost pass at every trial point) bit for
    bit — the Jacobian pass's cost is the cost pass's — with fewer passes; both agree with scipy."""
    from scipy.optimize import least_squares

    lm = importlib.import_module("hpcfit.solvers.levenberg_marquardt")
    x, y = _data()
    kw = dict(p0=[10.0, 3.0, -1.0], method="gn", loss=loss, verbose=0)     # far away: many steps
    fast = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, **kw)
    monkeypatch.setattr(lm, "SPECULATE_RATIO", np.inf)                      # never at once
    plain = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, **kw)
    assert fast.popt.tobytes() == plain.popt.tobytes() and fast.cost == plain.cost
    assert (fast.n_iterations, fast.status) == (plain.n_iterations, plain.status)
    assert [h.rejected for h in fast.history] == [h.rejected for h in plain.history]
    trials = plain.n_iterations + sum(h.rejected for h in plain.history)
    assert plain.nfev == plain.njev + trials                                # a cost pass per trial
    # a rejected trial that got a Jacobian pass at once spent it in vain; accepted ones saved a pass
    assert plain.njev <= fast.njev and fast.nfev < plain.nfev
    ref = least_squares(lambda p: p[0] * np.exp(-p[1] * x) + p[2] - y, kw["p0"], loss=loss, method="trf",
                        x_scale="jac", ftol=1e-12, xtol=1e-12, gtol=1e-12)
    np.testing.assert_allclose(fast.popt, ref.x, rtol=1e-6, atol=1e-9)


def test_the_api_is_quiet_by_default_and_prints_its_table_with_verbose_1(capsys):
    x, y = _data()
    hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1, 1, 0])        # like scipy: nothing
    assert capsys.readouterr().out == ""
    hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1, 1, 0], verbose=1)
    out = capsys.readouterr().out
    assert "iter" in out and "Δcost" in out and "termination condition" in out


def test_the_report_counts_the_rank_over_free_parameters():
    x, y = _data()
    res = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1, 1, 0.5],
                           bounds=([-np.inf, -np.inf, 0.5], [np.inf, np.inf, 0.5]))
    assert "JᵀWJ rank 2/2 free parameters (1 fixed)" in res.report()
    assert "JᵀWJ rank 3/3\n" in hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1, 1, 0]).report()


def test_max_iterations_stops_with_status_0():
    x, y = _data()
    res = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1, 1, 0], max_iterations=1, verbose=0)
    assert res.status == Status.MAX_ITERATIONS and res.status == 0 and not res.success
    assert res.n_iterations == 1 and "max_iterations" in res.message


def test_wall_time_limit():
    x, y = _data()
    res = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1, 1, 0], max_time=1e-9, verbose=0,
                           method="gn")
    assert res.status == Status.TIME_LIMIT and not res.success and "max_time" in res.message


def test_tolerances_select_the_status():
    x, y = _data()
    loose_f = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1, 1, 0], ftol=1e-3, xtol=0, gtol=0,
                               verbose=0)
    assert loose_f.status == Status.FTOL
    loose_g = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1, 1, 0], ftol=0, xtol=0, gtol=1e-2,
                               verbose=0)
    assert loose_g.status == Status.GTOL and loose_g.optimality < 1e-2


def test_rank_deficient_fit_is_reported_and_warned():
    def redundant(x, a, b, c):            # only the product a·b is determined
        return a * b * jnp.exp(-c * x)

    x, y = _data()
    with pytest.warns(hpcfit.RankDeficientWarning, match="rank 2 of 3"):
        res = hpcfit.curve_fit(redundant, x, y - 0.5, p0=[1.0, 2.0, 1.0], verbose=0)
    assert res.rank_deficient and res.rank == 2 and set(res.info["null_parameters"]) == {0, 1}
    assert "RANK DEFICIENT" in res.report()


def test_full_rank_fit_does_not_warn():
    x, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1, 1, 0], verbose=0)
    assert not res.rank_deficient and res.rank == 3


def test_non_finite_trial_points_are_rejected_not_fatal():
    """sqrt(b − x) is NaN for trial b below max(x): those trials must be rejected and the fit go on."""
    def model(x, a, b):
        return a * jnp.sqrt(b - x)

    x = np.linspace(0.0, 1.0, 2000)
    y = 2.0 * np.sqrt(1.05 - x)
    res = hpcfit.curve_fit(model, x, y, p0=[0.5, 3.0], bounds=([0, 1.0], [10, 10]), verbose=0,
                           xtol=1e-12, ftol=1e-12, gtol=1e-12)
    assert res.success
    np.testing.assert_allclose(res.popt, [2.0, 1.05], rtol=1e-8)


@pytest.mark.parametrize("mode", ["forward", "per_point_reverse"])
def test_jacobian_modes_agree(mode):
    x, y = _data()
    ref = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1, 1, 0], verbose=0)
    res = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1, 1, 0], verbose=0, jacobian_mode=mode)
    np.testing.assert_allclose(res.popt, ref.popt, rtol=1e-10)
    np.testing.assert_allclose(res.pcov, ref.pcov, rtol=1e-8)


@pytest.mark.parametrize("normalize", ["auto", "bounds", "p0", "none"])
def test_normalization_does_not_change_the_answer(normalize):
    x, y = _data()
    bounds = ([0.0, 0.0, -2.0], [10.0, 10.0, 2.0])
    ref = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1, 1, 0.1], bounds=bounds, verbose=0,
                           ftol=1e-14, xtol=1e-14, gtol=1e-12)
    res = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1, 1, 0.1], bounds=bounds, verbose=0,
                           normalize=normalize, ftol=1e-14, xtol=1e-14, gtol=1e-12)
    np.testing.assert_allclose(res.popt, ref.popt, rtol=1e-9)
    np.testing.assert_allclose(res.pcov, ref.pcov, rtol=1e-6)


def test_chunk_size_does_not_change_the_answer_beyond_rounding():
    x, y = _data(4001)
    a = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1, 1, 0], chunk_size=100, verbose=0)
    b = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1, 1, 0], chunk_size=4001, verbose=0)
    np.testing.assert_allclose(a.popt, b.popt, rtol=1e-10)


def test_user_arrays_are_not_modified():
    x, y = _data()
    sigma = np.full(x.size, 0.05)
    copies = [a.copy() for a in (x, y, sigma)]
    hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1, 1, 0], sigma=sigma, verbose=0)
    for a, b in zip((x, y, sigma), copies):
        assert np.array_equal(a, b)


def test_p0_none_counts_parameters_from_the_signature():
    x, y = _data()
    res = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, verbose=0)
    assert res.popt.shape == (3,) and res.success


def test_zero_xtol_and_gtol_still_terminate():
    """With xtol = gtol = 0 a converged fit must still stop (no endless damping loop)."""
    x, y = _data()
    res = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1, 1, 0], xtol=0, ftol=0, gtol=1e-15,
                           verbose=0, max_iterations=500)
    assert res.status in (Status.NO_PROGRESS, Status.GTOL)
    exact = hpcfit.curve_fit(lambda x, a: a * x, x, 2 * x, p0=[2.0], xtol=0, gtol=0, verbose=0)
    assert exact.status == Status.GTOL and exact.popt[0] == 2.0


@pytest.mark.parametrize("width", [1e2, 1e4, 1e6])
def test_wide_bounds_do_not_loosen_xtol(width):
    """xtol is relative to the parameters (as scipy), not to the box width of the normalization."""
    from scipy.optimize import curve_fit as scipy_curve_fit
    x, y = _data()
    ref, ref_cov = scipy_curve_fit(lambda x, a, b, c: a * np.exp(-b * x) + c, x, y, p0=[1, 1, 0])
    res = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1, 1, 0], bounds=(-width, width), verbose=0)
    assert res.success
    assert np.all(np.abs(res.popt - ref) < 1e-4 * np.sqrt(np.diag(ref_cov)))


def test_last_small_step_is_taken_as_scipy_does():
    """Noise-free data: the final sub-xtol step is evaluated and kept, so popt is exact to ~1e-10."""
    x = np.linspace(0.0, 4.0, 4000)
    y = 2.5 * np.exp(-1.3 * x) + 0.5
    res = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1, 1, 0], verbose=0)
    np.testing.assert_allclose(res.popt, [2.5, 1.3, 0.5], rtol=1e-10)


def test_unhashable_callable_model_works():
    from dataclasses import dataclass

    @dataclass
    class Decay:
        offset: float

        def __call__(self, x, a, b):
            return a * jnp.exp(-b * x) + self.offset

    x, y = _data()
    res = hpcfit.curve_fit(Decay(0.5), x, y, p0=[1.0, 1.0], verbose=0)
    assert res.success and abs(res.popt[1] - 1.3) < 0.01


def test_numpy_scalars_are_accepted_as_options():
    x, y = _data()
    res = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1, 1, 0], verbose=0,
                           max_iterations=np.int64(50), chunk_size=np.int64(1000), f_scale=np.float32(1.0))
    assert res.success and res.info["chunk_size"] == 1000


def test_chunk_size_is_capped_by_the_data():
    x, y = _data(300)
    res = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1, 1, 0], chunk_size=1 << 40, verbose=0)
    assert res.info["chunk_size"] == 300 and res.success


def test_scipy_bounds_object_is_accepted():
    from scipy.optimize import Bounds
    x, y = _data()
    res = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1, 1, 0.1],
                           bounds=Bounds([0, 0, 0], [10, 10, 0.3]), verbose=0)
    assert res.popt[2] == 0.3 and res.active_mask[2] == 1


def test_robust_fit_does_not_freeze_when_points_leave_the_linear_zone():
    """Huber with many points first in the linear zone: diag(JᵀWJ) jumps by ~1e16 on the way; the
    fit must still reach scipy's minimum (it used to stop early with a 3x higher cost)."""
    from scipy.optimize import least_squares

    rng = np.random.default_rng(3)
    x = np.linspace(0, 4, 1003)
    sig = 0.05 + 0.02 * rng.uniform(size=x.size)
    y = 2.0 * np.exp(-1.3 * x) + 0.4 + sig * rng.standard_normal(x.size)
    y[::31] += rng.uniform(-2, 2, size=y[::31].size)
    ref = least_squares(lambda p: (p[0] * np.exp(-p[1] * x) + p[2] - y) / sig, [1, 1, 0], loss="huber", f_scale=0.5,
                        method="trf", ftol=1e-14, xtol=1e-14, gtol=1e-14)
    res = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1, 1, 0], sigma=sig, loss="huber",
                           f_scale=0.5, chunk_size=100, verbose=0, ftol=1e-14, xtol=1e-14, gtol=1e-12)
    assert res.success
    np.testing.assert_allclose(res.popt, ref.x, rtol=1e-8)
    np.testing.assert_allclose(res.cost, ref.cost, rtol=1e-12)
