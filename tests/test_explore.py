"""Phase 1 (method="hybrid"): the fixed sample, the candidates polished by LM on it, the choice, and
the guarantee that the default method is never worse than Gauss–Newton from the same start.
References: scipy's least_squares from the true parameters, and method="gn" itself."""
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import least_squares

import hpcfit
from hpcfit.data.sampling import stratified_points
from hpcfit.phases.explore import DROP_MARGIN, Candidate, choose, halton, hopeless, multistart_points
from test_warmup import GAUSS_HARD, GAUSS_TRUTH, _gauss_data, gauss3


def exp_model(x, a, k, c):
    return a * jnp.exp(-k * x) + c


def box_bod(x, b1, b2):
    return b1 * (1.0 - jnp.exp(-b2 * x))


def mgh09(x, b1, b2, b3, b4):
    return b1 * (x * x + x * b2) / (x * x + x * b3 + b4)


def eckerle(x, b1, b2, b3):
    return b1 / b2 * jnp.exp(-0.5 * ((x - b3) / b2) ** 2)


def gauss2(x, a1, m1, s1, a2, m2, s2):
    return a1 * jnp.exp(-0.5 * ((x - m1) / s1) ** 2) + a2 * jnp.exp(-0.5 * ((x - m2) / s2) ** 2)


# -- pure pieces --------------------------------------------------------------------------------------

@pytest.mark.parametrize("size, n", [(10, 1000), (1000, 1003), (7, 7), (50, 20), (4096, 10 ** 9)])
def test_stratified_sample_has_one_distinct_point_per_stratum(size, n):
    idx = stratified_points(3, size, n)
    if size >= n:
        assert idx.tolist() == list(range(n))
        return
    edges = (np.arange(size + 1) * (n / size)).astype(np.int64)
    edges[-1] = n
    assert idx.size == size and np.all(np.diff(idx) > 0)           # sorted, no point twice
    assert np.all((idx >= edges[:-1]) & (idx < edges[1:]))          # one in each stratum
    assert idx.tobytes() == stratified_points(3, size, n).tobytes() and \
        idx.tobytes() != stratified_points(4, size, n).tobytes()


def test_halton_points_are_the_radical_inverses():
    h = halton(4, 2)
    np.testing.assert_allclose(h[:, 0], [1 / 2, 1 / 4, 3 / 4, 1 / 8])
    np.testing.assert_allclose(h[:, 1], [1 / 3, 2 / 3, 1 / 9, 4 / 9])


def test_multistart_points_fill_the_box_and_scale_unbounded_parameters():
    u0 = np.array([0.5, 1.0])
    starts = multistart_points(64, u0, np.array([0.0, -np.inf]), np.array([1.0, np.inf]), np.zeros(2))
    first = np.array([s[0] for s in starts])
    second = np.array([s[1] for s in starts])
    assert 0.0 <= first.min() < 0.05 and 0.95 < first.max() <= 1.0          # the box, covered
    assert 0.1 <= second.min() < 0.15 and 7.0 < second.max() <= 10.0        # p0·10^(±1), log scale


def _cand(origin, cost, on_bound=False, deficient=False):
    return Candidate(origin, np.zeros(1), cost, "FTOL", 3, on_bound, deficient)


def test_choice_is_the_lowest_cost_and_degenerate_candidates_lose_ties():
    assert choose([_cand("p0", 2.0), _cand("adam", 1.0)]).origin == "adam"
    # within 1e-4 relative: the candidate on a bound or rank deficient loses
    assert choose([_cand("p0", 1.00005), _cand("adam", 1.0, on_bound=True)]).origin == "p0"
    assert choose([_cand("p0", 1.00005, deficient=True), _cand("adam", 1.0)]).origin == "adam"
    # a clear gain beats soundness; a full tie goes to p0's basin
    assert choose([_cand("p0", 2.0), _cand("adam", 1.0, on_bound=True)]).origin == "adam"
    assert choose([_cand("p0", 1.0), _cand("adam", 1.0)]).origin == "p0"


# -- never worse than Gauss–Newton ----------------------------------------------------------------------

def _never_worse_cases(n=5000):
    u = np.linspace(0.0, 1.0, n)
    rng = np.random.default_rng(0)

    def case(model, truth, p0, x, noise, **kw):
        return model, p0, x, np.asarray(model(x, *truth)) + noise * rng.standard_normal(n), kw

    return {
        "exp-rate-100x-high": case(exp_model, [2.5, 1.3, 0.5], [2.5, 130.0, 0.5], 5 * u, 0.05),
        "gauss3-centres-off": case(gauss3, GAUSS_TRUTH, GAUSS_HARD, 10 * u, 0.02),
        "eckerle-start-1": case(eckerle, [1.554, 4.089, 451.5], [1.0, 10.0, 500.0], 400 + 100 * u, 0.003),
        "mgh09-start-1": case(mgh09, [0.1928, 0.1913, 0.1231, 0.1361], [25.0, 39.0, 41.5, 39.0],
                              0.0625 + 3.9375 * u, 0.003),
        "boxbod-start-1": case(box_bod, [213.8, 0.5472], [1.0, 1.0], 1 + 9 * u, 10.0),
        "exp-well-started": case(exp_model, [2.5, 1.3, 0.5], [2.4, 1.25, 0.52], 5 * u, 0.05),
    }


@pytest.mark.parametrize("name", list(_never_worse_cases(10)))
def test_default_method_is_never_worse_than_gauss_newton_from_the_same_start(name):
    model, p0, x, y, kw = _never_worse_cases()[name]
    with warnings.catch_warnings():          # wrong minima of gn can be degenerate: not what is tested here
        warnings.simplefilter("ignore", hpcfit.RankDeficientWarning)
        gn = hpcfit.curve_fit(model, x, y, p0=p0, method="gn", verbose=0, **kw)
        default = hpcfit.curve_fit(model, x, y, p0=p0, verbose=0, **kw)
    assert default.method == "hybrid" and default.explore.ran
    assert default.cost <= gn.cost * (1 + 1e-6)
    assert default.explore.candidates[0]["origin"] == "p0"      # p0's own basin is always a candidate


def test_hybrid_finds_the_better_basin_where_gauss_newton_loses_it():
    x, y = _gauss_data(20000)
    ref = least_squares(lambda p: np.asarray(gauss3(x, *p)) - y, GAUSS_TRUTH, xtol=1e-12, ftol=1e-12, gtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hpcfit.RankDeficientWarning)
        gn = hpcfit.curve_fit(gauss3, x, y, p0=GAUSS_HARD, method="gn", verbose=0)
    res = hpcfit.curve_fit(gauss3, x, y, p0=GAUSS_HARD, verbose=0, explore_sample_points=4000)
    assert gn.cost > 2 * ref.cost
    np.testing.assert_allclose(res.cost, ref.cost, rtol=1e-8)
    assert res.explore.chosen != "p0" and res.explore.sample_points == 4000 and res.trustworthy


def test_multistart_and_given_starts_are_candidates():
    model, p0, x, y, _ = _never_worse_cases()["boxbod-start-1"]
    truth_start = [[200.0, 0.5]]
    res = hpcfit.curve_fit(model, x, y, p0=p0, verbose=0, bounds=([0.0, 0.0], [1000.0, 10.0]), multistart=4,
                           explore_starts=truth_start)
    origins = [c["origin"] for c in res.explore.candidates]
    assert origins[0] == "p0" and origins[-5:] == ["multistart 1", "multistart 2", "multistart 3", "multistart 4",
                                                   "start 1"]
    ref = least_squares(lambda p: np.asarray(model(x, *p)) - y, [213.8, 0.5472], xtol=1e-12, ftol=1e-12)
    np.testing.assert_allclose(res.popt, ref.x, rtol=1e-6)
    with pytest.raises(hpcfit.InputError, match=r"`explore_starts`: every start must have 2 values"):
        hpcfit.curve_fit(model, x, y, p0=p0, verbose=0, explore_starts=[[1.0, 2.0, 3.0]])


def test_a_sample_smaller_than_the_data_compiles_nothing_extra_and_gn_skips_phase_1():
    x, y = _gauss_data(20000)
    res = hpcfit.curve_fit(gauss3, x, y, p0=GAUSS_TRUTH, verbose=0, explore_sample_points=3000, chunk_size=4096)
    assert res.explore.ran and res.explore.sample_points == 3000
    assert res.compile_counts["jacobian"] <= 1 and res.compile_counts["cost"] <= 1   # the sample shares them
    gn = hpcfit.curve_fit(gauss3, x, y, p0=GAUSS_TRUTH, verbose=0, method="gn")
    assert not gn.explore.ran and gn.explore.reason == "method"


def test_auto_multistart_runs_only_when_p0_gives_no_sound_candidate():
    model, p0, x, y, _ = _never_worse_cases()["boxbod-start-1"]
    ref = least_squares(lambda p: np.asarray(model(x, *p)) - y, [213.8, 0.5472], xtol=1e-12, ftol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hpcfit.RankDeficientWarning)
        gn = hpcfit.curve_fit(model, x, y, p0=p0, method="gn", verbose=0)
        off = hpcfit.curve_fit(model, x, y, p0=p0, verbose=0, multistart=0)
    res = hpcfit.curve_fit(model, x, y, p0=p0, verbose=0)                  # multistart="auto"
    assert gn.cost > 2 * ref.cost and off.cost > 2 * ref.cost               # the flat region b2 → ∞
    origins = [c["origin"] for c in res.explore.candidates]
    assert "multistart 32" in origins and "multistart 33" not in origins
    np.testing.assert_allclose(res.popt, ref.x, rtol=1e-6)
    well = hpcfit.curve_fit(model, x, y, p0=[200.0, 0.5], verbose=0)
    assert not any(c["origin"].startswith("multistart") for c in well.explore.candidates)
    with pytest.raises(hpcfit.InputError, match=r"`multistart` must be 'auto' or an integer >= 0"):
        hpcfit.curve_fit(model, x, y, p0=p0, verbose=0, multistart=-1)


# -- phase 1 earns its time: gates, budget, early stop --------------------------------------------------

def test_a_candidate_is_hopeless_only_when_it_settles_clearly_above_the_bar():
    assert hopeless([10.0, 5.0, 4.9, 4.85], 1.0)                 # closed 0.15 of a 3.85 gap in 2 iterations
    assert not hopeless([10.0, 8.0, 6.0, 4.0], 1.0)              # still closing its gap fast
    assert not hopeless([10.0, 5.0, 4.9], 1.0)                   # too few iterations to judge
    assert not hopeless([2.0, 1.5, 1.005, 1.005], 1.0)           # within DROP_MARGIN of the bar: it may tie
    assert not hopeless([2.0, 1.5, 0.9, 0.9], 1.0)               # below the bar
    assert hopeless([2.0, 1.02, 1.02, 1.02], 1.0) and DROP_MARGIN < 0.02     # settled 2 % above it


def _noisy_exp(n=5000):
    x = np.linspace(0, 5, n)
    return x, 2.5 * np.exp(-1.3 * x) + 0.5 + 0.5 * np.random.default_rng(0).standard_normal(n)


def test_a_settled_p0_skips_adam_and_holds_the_automatic_candidates_to_the_budget():
    x, y = _noisy_exp()                  # LM from p0 converges, full rank, relative loss 0.43: settled, not warm
    scan = [[1.0, 5.0, 0.0], [3.0, 0.3, 1.0], [2.0, 2.0, 0.5]]
    kw = dict(p0=[2.0, 1.0, 0.4], verbose=0, explore_scan=scan)
    ref = least_squares(lambda p: np.asarray(exp_model(x, *p)) - y, [2.5, 1.3, 0.5], xtol=1e-12, ftol=1e-12)
    runs = {b: hpcfit.curve_fit(exp_model, x, y, explore_budget=b, **kw) for b in (0.0, 1.0, 3.0, np.inf)}
    for b, res in runs.items():
        assert res.explore.reason == "converged" and not res.warmup.ran and res.warmup.reason == "converged"
        assert res.explore.skipped[0].startswith("adam: LM from p0 settled")
        np.testing.assert_allclose(res.popt, ref.x, rtol=1e-7)
    # the sample is all 5000 points (n / m = 1): the budget allows floor(budget) of the 3 scan starts
    assert [[c["origin"] for c in r.explore.candidates] for r in runs.values()] == [
        ["p0"], ["p0", "scan 1"], ["p0", "scan 1", "scan 2", "scan 3"], ["p0", "scan 1", "scan 2", "scan 3"]]
    assert "scan 2, scan 3: beyond explore_budget" in runs[1.0].explore.skipped[1]
    # the caller's own starts are always polished, whatever the budget
    own = hpcfit.curve_fit(exp_model, x, y, explore_budget=0.0, explore_starts=scan, **kw)
    assert [c["origin"] for c in own.explore.candidates] == ["p0", "start 1", "start 2", "start 3"]


def test_a_p0_that_does_not_settle_runs_the_costly_candidates_whatever_the_budget():
    model, p0, x, y, _ = _never_worse_cases()["boxbod-start-1"]      # LM from p0: the flat region, relative loss 1
    ref = least_squares(lambda p: np.asarray(model(x, *p)) - y, [213.8, 0.5472], xtol=1e-12, ftol=1e-12)
    res = hpcfit.curve_fit(model, x, y, p0=p0, verbose=0, explore_budget=0.0, explore_scan=[[100.0, 1.0]])
    origins = [c["origin"] for c in res.explore.candidates]
    assert res.warmup.ran and res.explore.reason == "adam" and res.explore.skipped == ()
    assert origins[:3] == ["p0", "adam", "scan 1"] and origins[-1] == "multistart 32"
    np.testing.assert_allclose(res.popt, ref.x, rtol=1e-6)


def test_early_stop_drops_hopeless_candidates_and_keeps_the_answer():
    x = np.linspace(0, 10, 5000)
    y = np.asarray(gauss2(x, 1.0, 3.0, 0.5, 0.7, 7.0, 0.6)) + 0.02 * np.random.default_rng(0).standard_normal(x.size)
    starts = [[1.0, 7.0, 0.5, 0.7, 3.0, 0.6], [0.5, 1.0, 2.0, 0.7, 9.0, 0.3], [1.0, 5.0, 3.0, 1.0, 5.0, 3.0]]
    kw = dict(p0=[1.0, 3.1, 0.5, 0.7, 6.9, 0.6], verbose=0, explore_starts=starts)
    on = hpcfit.curve_fit(gauss2, x, y, **kw)
    off = hpcfit.curve_fit(gauss2, x, y, explore_early_stop=False, **kw)
    bar = on.explore.candidates[0]["cost"]
    dropped = [c for c in on.explore.candidates if c["status"] == "DROPPED"]
    assert [c["origin"] for c in dropped] == ["start 2", "start 3"]
    assert not any(c["status"] == "DROPPED" for c in off.explore.candidates)
    for c in dropped:
        full = next(d for d in off.explore.candidates if d["origin"] == c["origin"])
        assert c["cost"] > bar * (1 + DROP_MARGIN) and full["cost"] > bar * (1 + DROP_MARGIN)   # worse basins
        assert c["iterations"] < full["iterations"]
    assert on.popt.tobytes() == off.popt.tobytes() and on.explore.chosen == off.explore.chosen
    ref = least_squares(lambda p: np.asarray(gauss2(x, *p)) - y, [1.0, 3.0, 0.5, 0.7, 7.0, 0.6], xtol=1e-12,
                        ftol=1e-12, gtol=1e-12)
    np.testing.assert_allclose(on.cost, ref.cost, rtol=1e-10)


@pytest.mark.parametrize("options, message", [
    ({"explore_budget": -1.0}, r"`explore_budget` must be a number >= 0 \(inf: no limit\)"),
    ({"explore_budget": "all"}, r"`explore_budget` must be a number >= 0"),
    ({"explore_early_stop": "yes"}, r"`explore_early_stop`"),
    ({"explore_scan": [[1.0, 2.0]]}, r"`explore_scan`: every start must have 3 values"),
    ({"explore_scan": [[1.0, np.nan, 2.0]]}, r"`explore_scan` must be a sequence of start vectors"),
    ({"explore_refine_points": -5}, r"`explore_refine_points` must be an integer >= 0 or 'auto'"),
    ({"explore_refine_points": "big"}, r"`explore_refine_points` must be an integer >= 0 or 'auto'"),
])
def test_bad_explore_options_are_named(options, message):
    x, y = _noisy_exp(100)
    with pytest.raises(hpcfit.InputError, match=message):
        hpcfit.curve_fit(exp_model, x, y, p0=[2.0, 1.0, 0.4], verbose=0, **options)


def test_refine_points_only_on_data_far_larger_than_the_refining_sample():
    from hpcfit.options import make_options
    from hpcfit.phases.explore import refine_points

    auto = make_options()
    assert refine_points(auto, 10**8) == 0                       # < 100 x 32 x 32768
    assert refine_points(auto, 10**9) == 32 * 32768
    given = make_options(explore_sample_points=1000, explore_refine_points=6000)
    assert refine_points(given, 20000) == 6000
    assert refine_points(given, 11000) == 0                      # more than half the data: phase 2's work
    assert refine_points(make_options(explore_refine_points=0), 10**10) == 0


def test_the_winner_polished_on_a_bigger_sample_starts_phase_2_nearer_and_ends_at_scipys_minimum(capsys):
    """Phase 1 on 1000 of 20000 points, then its winner polished on 6000: phase 2's first cost is
    below the one without the polish, and the fit ends at scipy's minimum either way."""
    x, y = _gauss_data(20000)
    ref = least_squares(lambda p: np.asarray(gauss3(x, *p)) - y, GAUSS_TRUTH, xtol=1e-12, ftol=1e-12, gtol=1e-12)
    runs = {}
    for refine in (0, 6000):
        runs[refine] = hpcfit.curve_fit(gauss3, x, y, p0=GAUSS_HARD, verbose=1, explore_sample_points=1000,
                                        explore_refine_points=refine)
        np.testing.assert_allclose(runs[refine].cost, ref.cost, rtol=1e-8)
    out = capsys.readouterr().out
    assert out.count("phase 1: polished on 6000 points") == 1
    first = [rec.cost for rec in (runs[0].history[0], runs[6000].history[0])]
    assert first[1] < first[0]
