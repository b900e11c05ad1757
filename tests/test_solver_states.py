"""Solvers keep everything in their states: one solver object can drive several fits at once, and
what each returns is what it returns alone. The reference is scipy's least_squares on the same
small problem (LM) and the problem's closed-form minimum (Adam's best point only improves)."""
from types import SimpleNamespace

import numpy as np
from scipy.optimize import least_squares

from hpcfit.options import make_options
from hpcfit.phases.normalize import make_normalization
from hpcfit.solvers.adam import AdamWarmup
from hpcfit.solvers.levenberg_marquardt import TRIAL, LevenbergMarquardt

X = np.linspace(0.0, 4.0, 60)
Y = 2.0 * np.exp(-1.3 * X) + 0.5


def residuals(u):
    return u[0] * np.exp(-u[1] * X) + u[2] - Y


def jacobian(u):
    e = np.exp(-u[1] * X)
    return np.stack([e, -u[0] * X * e, np.ones_like(X)], axis=1)


def lm_pass(cmd):
    """What the pass evaluator reduces, in numpy (cost ½Σr²)."""
    r = residuals(cmd.u)
    if cmd.kind == "cost":
        return SimpleNamespace(cost=0.5 * r @ r, n_bad=0)
    j = jacobian(cmd.u)
    return SimpleNamespace(cost=0.5 * r @ r, jtj=j.T @ j, jtr=j.T @ r, n_bad=0)


def run_together(solver, starts):
    """Drive one solver over several fits, one evaluation of each in turn."""
    live = {}
    for k, u0 in enumerate(starts):
        state, cmd = solver.start(u0)
        live[k] = solver.step(state, cmd, lm_pass(cmd))
    done = {}
    while live:
        for k in list(live):
            state, cmd = live[k]
            if cmd.kind == "stop":
                done[k] = cmd.payload
                del live[k]
            else:
                live[k] = solver.step(state, cmd, lm_pass(cmd))
    return [done[k] for k in range(len(starts))]


def lm_solver():
    p0 = np.array([1.0, 0.5, 0.0])
    norm = make_normalization("none", p0, np.full(3, -np.inf), np.full(3, np.inf))
    opts = make_options(ftol=1e-12, xtol=1e-12, gtol=1e-12)
    return LevenbergMarquardt(opts, norm, np.full(3, -np.inf), np.full(3, np.inf))


def test_lm_fits_interleaved_on_one_solver_equal_fits_alone():
    starts = [np.array([1.0, 0.5, 0.0]), np.array([4.0, 3.0, -1.0]), np.array([0.5, 0.1, 1.0])]
    together = run_together(lm_solver(), starts)
    alone = [run_together(lm_solver(), [u0])[0] for u0 in starts]
    for a, b, u0 in zip(together, alone, starts):
        assert a.u.tobytes() == b.u.tobytes() and a.cost == b.cost and a.n_iterations == b.n_iterations
        assert a.solvers == b.solvers and sum(a.solvers.values()) >= a.n_iterations
        ref = least_squares(residuals, u0, jac=jacobian, method="lm", xtol=1e-12, ftol=1e-12, gtol=1e-12)
        np.testing.assert_allclose(a.u, ref.x, rtol=1e-8)
        times = [rec.seconds for rec in a.history]     # each fit's own clock, from its start
        assert times == sorted(times) and times[0] >= 0.0


def test_lm_counters_and_clock_survive_a_checkpoint_round_trip():
    solver = lm_solver()
    state, cmd = solver.start(np.array([4.0, 3.0, -1.0]))
    state, cmd = solver.step(state, cmd, lm_pass(cmd))
    # a trial point's pass: a cost pass, or its Jacobian pass at once after a very successful step
    while not (cmd.kind == "cost" or cmd.payload == TRIAL) or state.iteration < 3:
        state, cmd = solver.step(state, cmd, lm_pass(cmd))
    arrays, values, rows, _ = solver.snapshot(state)
    assert values["solvers"] == dict(state.solvers) and sum(values["solvers"].values()) >= 3
    restored, cmd2 = lm_solver().restore(arrays, values, rows)     # a fresh solver: nothing kept on it
    assert dict(restored.solvers) == values["solvers"] and cmd2.u.tobytes() == cmd.u.tobytes()
    assert (cmd2.kind, cmd2.payload) == (cmd.kind, cmd.payload)     # the same choice of pass
    assert 0.0 <= values["elapsed"] <= 60.0


def test_adam_best_point_and_clock_live_in_the_state():
    p0 = np.array([1.0, 0.5, 0.0])
    opts = make_options(warmup_max_steps=40, warmup_eval_every=5)
    lines = []
    table = SimpleNamespace(line=lines.append)
    r0 = residuals(p0)
    solver = AdamWarmup(opts, np.zeros(3), np.full(3, -np.inf), np.full(3, np.inf), 0.5 * np.mean(r0 ** 2),
                        float(np.var(Y)), X.size, table)
    state, cmd = solver.init(p0)
    while cmd.kind != "stop":
        r = residuals(cmd.u)
        if cmd.kind == "gradient":
            j = jacobian(cmd.u)
            res = SimpleNamespace(loss=0.5 * np.mean(r ** 2), grad=j.T @ r / X.size,
                                  curvature=np.mean(j ** 2, axis=0), n_bad=0)
        else:
            res = SimpleNamespace(loss=0.5 * np.mean(r ** 2), n_bad=0)
        state, cmd = solver.step(state, cmd, res)
    outcome = cmd.payload
    assert outcome.report.loss_end < outcome.report.loss_start
    assert 0.0 <= outcome.report.seconds <= 60.0
    assert not hasattr(solver, "t0")
