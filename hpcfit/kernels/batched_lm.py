"""Levenberg–Marquardt over many small independent problems at once: one compiled kernel, vmapped
over the problems of a batch (issue 21: every q bin of every multitau file).

The maths is :mod:`hpcfit.solvers.lm_step`'s — Moré scaling, Nielsen damping, a box by projection
with parameters held where the step points out of it, scipy's ftol/xtol/gtol tests, status codes of
:class:`hpcfit.Status` — written for a few parameters per problem and a fixed number of points per
problem (padding and points without data have weight 0). Every problem runs its own iterations; the
batch's loop ends when all have stopped, and a stopped problem's state is left as it is. Each
problem's arithmetic does not depend on the others in its batch, and batches have a fixed size, so
a problem's result has the same bits whatever the rank that computes it.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from ..result import Status

MAX_DAMPING = 1e32
MIN_DAMPING = 1e-20


class Batch(NamedTuple):
    """Problems of ``n`` points and ``p`` parameters each, stacked: x, y, w (B, n); p0, lower,
    upper (B, p); free (B, p) bool (False: the parameter is held at p0)."""

    x: jax.Array
    y: jax.Array
    w: jax.Array
    p0: jax.Array
    lower: jax.Array
    upper: jax.Array
    free: jax.Array


class BatchFit(NamedTuple):
    """Per problem: the parameters, cost ½Σ(w·(f − y))², JᵀWJ at them, iterations, status
    (:class:`hpcfit.Status` codes) and residual evaluations."""

    popt: jax.Array
    cost: jax.Array
    jtj: jax.Array
    iterations: jax.Array
    status: jax.Array
    nfev: jax.Array


class _State(NamedTuple):
    u: jax.Array
    cost: jax.Array
    jtj: jax.Array
    g: jax.Array
    d2: jax.Array
    damping: jax.Array
    growth: jax.Array
    iteration: jax.Array
    nfev: jax.Array
    status: jax.Array         # -1 while running


def _linearize(model, x, y, w, free, u):
    """cost, JᵀWJ and JᵀWr at u (columns of held parameters 0)."""
    def residual(v):
        return w * (model(x, v) - y)

    r = residual(u)
    jac = jax.jacfwd(residual)(u) * free[None, :]
    r = jnp.where(w > 0, r, 0.0)
    jac = jnp.where((w > 0)[:, None], jac, 0.0)
    return 0.5 * r @ r, jac.T @ jac, jac.T @ r


def _solve(a, g, d2, damping, free):
    """(A + λD²) δ = −g on ``free`` (δ = 0 elsewhere)."""
    m = a + jnp.diag(damping * d2)
    both = free[:, None] & free[None, :]
    m = jnp.where(both, m, jnp.eye(a.shape[0]))
    return jnp.where(free, jnp.linalg.solve(m, jnp.where(free, -g, 0.0)), 0.0)


def _propose(s: _State, lower, upper, free):
    """The projected damped step from s.u: (step, trial, predicted decrease)."""
    held = ((s.u <= lower) & (s.g > 0)) | ((s.u >= upper) & (s.g < 0))
    mask = free & ~held

    def reduce(_, carry):
        mask, _ = carry
        delta = _solve(s.jtj, s.g, s.d2, s.damping, mask)
        blocked = mask & (((s.u <= lower) & (delta < 0)) | ((s.u >= upper) & (delta > 0)))
        return mask & ~blocked, delta

    # p reductions of the mask, and in a last turn the step on the final mask (one solve to trace)
    _, delta = jax.lax.fori_loop(0, s.u.shape[0] + 1, reduce, (mask, jnp.zeros_like(s.u)))
    trial = jnp.clip(s.u + delta, lower, upper)
    step = trial - s.u
    return step, trial, -(s.g @ step + 0.5 * step @ s.jtj @ step)


def _gradient_cosine(u, g, a, cost, lower, upper):
    held = ((u <= lower) & (g > 0)) | ((u >= upper) & (g < 0))
    g = jnp.where(held, 0.0, g)
    denom = jnp.sqrt(jnp.maximum(jnp.diag(a), 0.0)) * jnp.sqrt(jnp.maximum(2.0 * cost, 0.0))
    ratio = jnp.where(g != 0, jnp.abs(g) / jnp.where(denom > 0, denom, 1.0), 0.0)
    ratio = jnp.where((g != 0) & (denom <= 0), jnp.inf, ratio)
    return jnp.max(ratio)


def batched_lm(model: Callable, *, max_iterations: int = 200, ftol: float = 1e-10, xtol: float = 1e-10,
               gtol: float = 1e-10) -> Callable[[Batch], BatchFit]:
    """A compiled function Batch → BatchFit: LM on every problem of the batch. ``model(x, params)``
    gives the predictions of one problem (x (n,), params (p,))."""

    def start(x, y, w, p0, lower, upper, free) -> _State:
        cost, a, g = _linearize(model, x, y, w, free, p0)
        diag = jnp.diag(a)
        status = jnp.where(jnp.isfinite(cost) & jnp.all(jnp.isfinite(a)), -1, int(Status.NO_PROGRESS))
        status = jnp.where((status < 0) & (_gradient_cosine(p0, g, a, cost, lower, upper) <= gtol),
                           int(Status.GTOL), status)
        return _State(p0, cost, a, g, jnp.where(diag > 0, diag, 1.0), jnp.asarray(1e-3), jnp.asarray(2.0),
                      jnp.asarray(0), jnp.asarray(1), status)

    def advance(s: _State, x, y, w, p0, lower, upper, free) -> _State:
        """One trial step of one problem (its state unchanged once it has stopped)."""
        step, trial, predicted = _propose(s, lower, upper, free)
        t_cost, t_a, t_g = _linearize(model, x, y, w, free, trial)
        usable = jnp.isfinite(t_cost) & jnp.all(jnp.isfinite(t_a)) & jnp.all(jnp.isfinite(t_g))
        actual = s.cost - t_cost
        accepted = (predicted > 0) & usable & (actual > 0)
        ratio = jnp.where(predicted > 0, actual / jnp.where(predicted > 0, predicted, 1.0), -1.0)
        damping = jnp.where(accepted, s.damping * jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * ratio - 1.0) ** 3),
                            s.damping * s.growth)
        growth = jnp.where(accepted, 2.0, s.growth * 2.0)
        damping = jnp.maximum(damping, MIN_DAMPING)
        x_small = jnp.linalg.norm(step) < xtol * (xtol + jnp.linalg.norm(s.u))
        f_small = accepted & (actual < ftol * s.cost) & (ratio > 0.25)
        u = jnp.where(accepted, trial, s.u)
        cost = jnp.where(accepted, t_cost, s.cost)
        a = jnp.where(accepted, t_a, s.jtj)
        g = jnp.where(accepted, t_g, s.g)
        diag = jnp.diag(a)
        d2 = jnp.where(accepted, jnp.maximum(s.d2, jnp.where(diag > 0, diag, 1.0)), s.d2)
        iteration = s.iteration + accepted.astype(s.iteration.dtype)
        g_small = accepted & (_gradient_cosine(u, g, a, cost, lower, upper) <= gtol)
        status = jnp.select(
            [g_small, f_small & x_small, f_small, x_small, damping > MAX_DAMPING, iteration >= max_iterations],
            [int(Status.GTOL), int(Status.FTOL_XTOL), int(Status.FTOL), int(Status.XTOL),
             int(Status.NO_PROGRESS), int(Status.MAX_ITERATIONS)], -1)
        new = _State(u, cost, a, g, d2, damping, growth, iteration, s.nfev + (predicted > 0).astype(s.nfev.dtype),
                     status)
        return jax.tree_util.tree_map(lambda old, nxt: jnp.where(s.status >= 0, old, nxt), s, new)

    starts, advances = jax.vmap(start), jax.vmap(advance)
    # rejected steps do not count as iterations: a bound on the loop however the problems go
    loop_limit = 8 * max_iterations + 64

    def run(batch: Batch) -> BatchFit:
        def unfinished(carry):
            s, turns = carry
            return jnp.any(s.status < 0) & (turns < loop_limit)

        def turn(carry):
            s, turns = carry
            return advances(s, *batch), turns + 1

        s, _ = jax.lax.while_loop(unfinished, turn, (starts(*batch), 0))
        status = jnp.where(s.status < 0, int(Status.MAX_ITERATIONS), s.status)
        return BatchFit(s.u, s.cost, s.jtj, s.iteration, status, s.nfev)

    return jax.jit(run, compiler_options=quick_compile_options())


#: XLA's loop emitters instead of its fusion emitters: the batched kernel compiles in ~0.7 s instead
#: of ~1.05 s and runs as fast (measured on jaxlib 0.10.2, single and stretched forms, 256 problems of
#: 61 delays: 5.3 and 9.8 ms a batch either way). A first call of fit_g2 is mostly compilation.
QUICK_COMPILE = {"xla_cpu_use_fusion_emitters": False}
_quick: list = []


def quick_compile_options() -> dict | None:
    """:data:`QUICK_COMPILE` where this jaxlib's CPU compiler takes it (tried once on a one-line
    function), else None: an option a later XLA drops must not fail a fit."""
    if not _quick:
        try:
            jax.jit(lambda v: v + 1, compiler_options=QUICK_COMPILE).lower(1.0).compile()
            _quick.append(dict(QUICK_COMPILE))
        except Exception:  # noqa: BLE001 - any refusal means: compile as usual
            _quick.append(None)
    return _quick[0]
