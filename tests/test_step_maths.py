"""Rank 0's numerics (no MPI): damped solves, bounds, damping, tests, covariance, the Schur complement (one XPCS fit solved both ways)."""
import numpy as np
import pytest

from hpcfit.phases.covariance import covariance
from hpcfit.solvers.lm_step import (active_bounds, cost_converged, gradient_cosine, more_scaling, propose_step,
                                   solve_damped, step_small, update_damping)
from hpcfit.phases.normalize import make_normalization


def _spd(p, seed=0):
    a = np.random.default_rng(seed).standard_normal((3 * p, p))
    return a.T @ a


def test_damped_solve_matches_dense_solve():
    A, g = _spd(5), np.arange(1.0, 6.0)
    d2 = np.diag(A).copy()
    delta, solver = solve_damped(A, g, d2, 0.1, np.ones(5, bool))
    np.testing.assert_allclose(delta, np.linalg.solve(A + 0.1 * np.diag(d2), -g), rtol=1e-12)
    assert solver == "cholesky"


def test_singular_system_falls_back_to_minimum_norm_eigen_solve():
    A = np.array([[1.0, 1.0], [1.0, 1.0]])                  # rank 1
    delta, solver = solve_damped(A, np.array([1.0, 1.0]), np.ones(2), 0.0, np.ones(2, bool))
    assert solver == "eigen"
    np.testing.assert_allclose(delta, [-0.5, -0.5], rtol=1e-12)   # pinv(A) @ -g


def test_held_parameters_get_zero_step():
    A, g = _spd(4, 1), np.ones(4)
    free = np.array([True, False, True, True])
    delta, _ = solve_damped(A, g, np.diag(A), 0.0, free)
    assert delta[1] == 0.0
    idx = [0, 2, 3]
    np.testing.assert_allclose(delta[idx], np.linalg.solve(A[np.ix_(idx, idx)], -g[idx]), rtol=1e-12)


def test_active_bounds_and_projected_step_stay_feasible():
    lower, upper = np.zeros(3), np.ones(3)
    u = np.array([0.0, 0.5, 1.0])
    g = np.array([1.0, 1.0, -1.0])                          # pushes 0 below and 2 above their bounds
    assert list(active_bounds(u, g, lower, upper)) == [True, False, True]
    step = propose_step(u, np.eye(3), g, np.ones(3), 0.0, lower, upper)
    assert np.all(step.trial >= lower) and np.all(step.trial <= upper)
    assert step.step[0] == 0.0 and step.step[2] == 0.0 and step.predicted > 0


def test_nielsen_damping_update():
    assert update_damping(1.0, 2.0, 1.0, True) == (1.0 / 3.0, 2.0)
    assert update_damping(1.0, 2.0, 0.5, True) == (1.0, 2.0)
    assert update_damping(1.0, 2.0, -1.0, False) == (2.0, 4.0)
    assert update_damping(2.0, 4.0, -1.0, False) == (8.0, 8.0)


def test_more_scaling_is_monotone_and_positive():
    d = more_scaling(None, np.diag([4.0, 0.0]))
    assert list(d) == [4.0, 1.0]
    assert list(more_scaling(d, np.diag([1.0, 9.0]))) == [4.0, 9.0]


def test_termination_tests_follow_scipy():
    assert step_small(1e-9, 1.0, 1e-8) and not step_small(1e-7, 1.0, 1e-8)
    assert cost_converged(1e-10, 1.0, 0.5, 1e-8) and not cost_converged(1e-10, 1.0, 0.1, 1e-8)
    # cosine between the residual and the Jacobian columns: |gᵢ| / (‖Jᵢ‖ ‖r‖)
    J = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    r = np.array([0.0, 1.0, 1.0])
    cos = gradient_cosine(J.T @ r, J.T @ J, 0.5 * r @ r)
    assert cos == pytest.approx(1.0 / np.sqrt(2.0))
    assert gradient_cosine(np.zeros(2), J.T @ J, 0.0) == 0.0


def test_covariance_is_the_linear_regression_closed_form():
    rng = np.random.default_rng(3)
    X = np.column_stack([np.ones(50), rng.uniform(0, 10, 50), rng.uniform(-1, 1, 50)])
    y = X @ [1.0, 2.0, -3.0] + 0.1 * rng.standard_normal(50)
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    r = X @ beta - y
    s2 = r @ r / (50 - 3)
    expected = s2 * np.linalg.inv(X.T @ X)
    scale = np.array([2.0, 0.5, 10.0])                      # θ = scale·u: J_u = X·diag(scale)
    Xu = X * scale
    cov = covariance(Xu.T @ Xu, scale, 0.5 * r @ r, 50, False, 1e-12)
    np.testing.assert_allclose(cov.pcov, expected, rtol=1e-10)
    assert cov.rank == 3 and cov.null_parameters == []
    cov_abs = covariance(Xu.T @ Xu, scale, 0.5 * r @ r, 50, True, 1e-12)
    np.testing.assert_allclose(cov_abs.pcov, np.linalg.inv(X.T @ X), rtol=1e-10)


def test_covariance_reports_rank_deficiency():
    X = np.column_stack([np.ones(20), np.arange(20.0), 2.0 * np.arange(20.0)])   # columns 1, 2 collinear
    cov = covariance(X.T @ X, np.ones(3), 1.0, 20, True, 1e-12)
    assert cov.rank == 2
    assert cov.null_parameters == [1, 2]
    A, G = X.T @ X, cov.pcov
    # undetermined parameters: variance inf, the rest of their rows and columns NaN (scipy's convention)
    assert np.all(np.isinf(np.diag(G)[1:])) and np.isnan(G[1, 2]) and np.isnan(G[2, 1])
    assert np.all(np.isnan(G[0, 1:])) and np.all(np.isnan(G[1:, 0]))
    # the determined one: the generalized inverse taken in the unit-diagonal (equilibrated) metric,
    # so it does not depend on parameter units
    d = 1.0 / np.sqrt(np.diag(A))
    reference = d[:, None] * np.linalg.pinv(d[:, None] * A * d, rcond=1e-12) * d
    np.testing.assert_allclose(A @ reference @ A, A, rtol=1e-8, atol=1e-8)
    assert G[0, 0] == pytest.approx(reference[0, 0], rel=1e-8)


def test_covariance_cutoff_does_not_grow_with_n():
    """A well-determined but ill-conditioned pair (cond ~1e9) keeps full rank at any n."""
    for n in (10**3, 10**6):
        t = np.linspace(0, 1, 1000)
        X = np.column_stack([np.ones_like(t), 1 + 1e-4 * t])
        jtj = X.T @ X * (n / 1000)
        assert covariance(jtj, np.ones(2), 1.0, n, True, 1e-12).rank == 2


@pytest.mark.parametrize("strategy", ["auto", "bounds", "p0", "none"])
def test_normalization_round_trip(strategy):
    p0 = np.array([2.0, -3.0, 0.0])
    lower, upper = np.array([0.0, -10.0, -1.0]), np.array([5.0, 10.0, 1.0])
    norm = make_normalization(strategy, p0, lower, upper)
    np.testing.assert_allclose(norm.to_theta(norm.to_u(p0)), p0, atol=1e-15)
    if strategy in ("auto", "bounds"):
        np.testing.assert_allclose(norm.to_u(lower), 0.0)
        np.testing.assert_allclose(norm.to_u(upper), 1.0)
    if strategy == "p0":
        assert list(norm.scale) == [2.0, 3.0, 1.0]


def test_auto_normalization_mixes_bounds_and_p0():
    norm = make_normalization("auto", np.array([4.0, 2.0]), np.array([0.0, -np.inf]), np.array([10.0, np.inf]))
    assert list(norm.scale) == [10.0, 2.0] and list(norm.offset) == [0.0, 0.0]
    with pytest.raises(ValueError, match="normalize='bounds'"):
        make_normalization("bounds", np.array([4.0, 2.0]), np.array([0.0, -np.inf]), np.array([10.0, np.inf]))


# ---- the Schur complement over per-group blocks (issue 20: many per-group parameters) ----------

def arrow_matrix(n_shared=7, n_groups=60, k=2, seed=0, layout="by_parameter"):
    """An SPD JᵀJ with the arrow structure of per-group parameters, built from a sparse J."""
    from hpcfit.groups import GroupLayout

    rng = np.random.default_rng(seed)
    groups = GroupLayout(n_shared, k, n_groups, layout, tuple(range(0, 20 * n_groups + 1, 20)), 1)
    p = groups.n_params
    j = np.zeros((20 * n_groups, p))
    for g in range(n_groups):
        rows = slice(20 * g, 20 * g + 20)
        j[rows, :n_shared] = rng.standard_normal((20, n_shared))
        j[rows, groups.own_index(g, np.arange(k))] = rng.standard_normal((20, k))
    return j.T @ j, rng.standard_normal(p), groups


@pytest.mark.parametrize("layout", ["by_parameter", "by_group"])
def test_the_schur_complement_solves_the_arrow_system(layout):
    from hpcfit.solvers.lm_step import arrow_blocks, schur_solve

    a, rhs, groups = arrow_matrix(layout=layout)
    blocks = arrow_blocks(groups)
    assert blocks.own.shape == (60, 2) and sorted(np.concatenate([blocks.shared, blocks.own.ravel()])) == \
        list(range(groups.n_params))
    np.testing.assert_allclose(schur_solve(a, rhs, blocks), np.linalg.solve(a, rhs), rtol=1e-9, atol=1e-12)
    bad = a.copy()
    bad[blocks.own[3, 0], blocks.own[3, 0]] = -1.0                 # a block that is not definite
    assert schur_solve(bad, rhs, blocks) is None


def test_a_damped_step_by_schur_is_the_dense_step_with_parameters_held(monkeypatch):
    from hpcfit.solvers import lm_step

    a, g, groups = arrow_matrix(n_groups=40)
    blocks = lm_step.arrow_blocks(groups)
    d2 = np.diag(a).copy()
    free = np.ones(g.size, dtype=bool)
    free[[2, int(blocks.own[5, 1]), int(blocks.own[7, 0])]] = False       # a shared and two own parameters held
    dense, kind = lm_step.solve_damped(a, g, d2, 1e-3, free, blocks)
    assert kind == "cholesky"                                       # 80 own parameters: below SCHUR_ABOVE
    monkeypatch.setattr(lm_step, "SCHUR_ABOVE", 10)
    schur, kind = lm_step.solve_damped(a, g, d2, 1e-3, free, blocks)
    assert kind == "schur" and np.all(schur[~free] == 0.0)
    np.testing.assert_allclose(schur, dense, rtol=1e-9, atol=1e-13)


def test_the_gauss_newton_decrease_by_schur_is_the_dense_one(monkeypatch):
    from hpcfit.solvers import lm_step

    a, g, groups = arrow_matrix(n_groups=30, seed=2)
    blocks = lm_step.arrow_blocks(groups)
    u = np.zeros(g.size)
    lower, upper = np.full(g.size, -1.0), np.full(g.size, 1.0)
    u[int(blocks.own[4, 0])] = 1.0                  # on its upper bound
    g[int(blocks.own[4, 0])] = -1.0                 # and pushed outside: held
    dense = lm_step.gauss_newton_decrease(u, a, g, lower, upper, blocks)
    monkeypatch.setattr(lm_step, "SCHUR_ABOVE", 10)
    schur = lm_step.gauss_newton_decrease(u, a, g, lower, upper, blocks)
    free = np.ones(g.size, dtype=bool)
    free[int(blocks.own[4, 0])] = False
    direct = 0.5 * g[free] @ np.linalg.solve(a[np.ix_(free, free)], g[free])      # A is definite here
    np.testing.assert_allclose([dense, schur], direct, rtol=1e-9)


def test_an_xpcs_fit_solved_by_schur_is_the_dense_fit(monkeypatch):
    from hpcfit.models.xpcs import two_time_c2
    from hpcfit.solvers import lm_step
    from hpcfit.xpcs.fit import fit
    from hpcfit.xpcs.load import TwoTimeData

    truth = [1500.0, -0.25, 20.0, 3e-4, 0.35, 1e-5, 5.0]
    phi = np.linspace(-150, 150, 9)
    c2 = np.asarray(two_time_c2(truth, phi=phi, n_t=40, dt=0.5, q=0.0054, L=2e6, contrast=0.25, offset=1.0))
    z = np.random.default_rng(1).standard_normal(c2.shape) * 0.002
    data = TwoTimeData(c2=c2 + (z + z.transpose(0, 2, 1)) / np.sqrt(2), phi=phi, q=0.0054, dt=0.5, frames=(1, 40),
                       path="<sim>", layout="sim", source_stamp=(0, 0))
    kw = dict(L=2e6, verbose=0, p0=truth, scan=False, method="gn")
    dense = fit(data, **kw)
    monkeypatch.setattr(lm_step, "SCHUR_ABOVE", 4)
    schur = fit(data, **kw)
    assert schur.info["linear_solves"]["schur"] > 0 and dense.info["linear_solves"]["schur"] == 0
    np.testing.assert_allclose(schur.popt, dense.popt, rtol=1e-8)
    assert abs(schur.cost - dense.cost) <= 1e-12 * dense.cost
