"""The Adam warm-up as an explicit, immutable state: rank 0's solver over minibatch gradients and
evaluations of a fixed subset, with the four-layer defense of :mod:`hpcfit.phases.warmup`.

Commands: ``("gradient", u, step)`` — the mean gradient on step ``step``'s minibatch — and
``("loss", u)`` — the mean loss on the evaluation subset. Checkpoint boundaries are the evaluations
at the progress-line cadence (before the next gradient). No JAX, no MPI.
"""
from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from ..result import WarmupReport
from .driver import Command

PHASE = "warmup"

# Adam's constants (Kingma & Ba 2015).
BETA1, BETA2, EPSILON = 0.9, 0.999, 1e-8

#: (lower bound of ℓ_rel, band, learning rate), highest band first: far from the data the warm-up
#: explores with large steps; near it, it only refines, since Gauss–Newton will finish the job.
LEARNING_RATE_BANDS = ((1.0, "exploration", 0.05), (0.1, "careful", 0.02), (0.0, "refinement", 0.005))


def learning_rate_band(relative_loss: float) -> tuple[str, float]:
    """The band ℓ_rel falls in and its learning rate (a non-finite ℓ_rel counts as exploration)."""
    for lower, name, rate in LEARNING_RATE_BANDS:
        if not relative_loss < lower:
            return name, rate
    return LEARNING_RATE_BANDS[-1][1:]


def natural_scale(loss: float, curvature: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    """Per parameter, the change in u that alone would move the residuals by their RMS value,
    √(2·loss / mean J²ᵢ), capped at 1 (the normalized range).

    Adam's steps are about the learning rate in every coordinate whatever the gradient's size, so
    they need coordinates of a meaningful scale; a box far wider than a parameter's value (a shear
    rate in [1e-8, 10] starting at 1e-3) is not one. This Jacobi scale is, and it shrinks as the
    loss falls, which anneals the steps.
    """
    with np.errstate(divide="ignore"):
        scale = np.minimum(1.0, np.sqrt(2.0 * loss / curvature))
    return np.where(magnitude > 0, np.minimum(scale, magnitude), scale)


class WarmupOutcome(NamedTuple):
    u: np.ndarray            # the best evaluated point (p0 included)
    report: WarmupReport


class AdamState(NamedTuple):
    u: np.ndarray
    m: np.ndarray
    v: np.ndarray
    step: int
    rate: float
    g0: float                  # |m̂| at the first step (NaN before)
    small_gradient: bool       # the last step's |m̂| fell below warmup_gtol·g0
    best_u: np.ndarray
    best_loss: float
    best_history: tuple
    evaluations: int
    last_eval: int
    counts: tuple              # layer counts as (name, count) pairs
    finishing: str | None = None   # the switch reason, while the final evaluation runs
    m_norm: float = float("nan")   # |m̂| of the last step (for the progress line)
    started: float = 0.0           # the warm-up's clock: time.perf_counter() when it started (less
                                   # the elapsed time a checkpoint recorded, on resume)


class AdamWarmup:
    """Rank 0's Adam (Kingma & Ba 2015) in u with the natural scale, learning-rate bands, cost
    guard and step clipping; ends on the gradient, a plateau, the step limit, the guard or a
    non-finite value, always with the best evaluated point."""

    def __init__(self, opts, theta_offset: np.ndarray, lower_u, upper_u, loss0: float, variance: float,
                 eval_points: int, table):
        self.opts, self.theta_offset, self.lower, self.upper = opts, theta_offset, lower_u, upper_u
        self.loss0, self.variance, self.eval_points, self.table = loss0, variance, eval_points, table
        # about ten progress lines on rank 0, at evaluations
        self.print_every = opts.warmup_eval_every * max(1, opts.warmup_max_steps // (10 * opts.warmup_eval_every))

    def relative(self, loss: float) -> float:
        if self.variance > 0:
            return 2.0 * loss / self.variance
        return 0.0 if loss == 0 else np.inf

    def _rate(self, rel: float, current: float, counts: dict) -> float:
        if not self.opts.adaptive_learning_rate:
            return self.opts.learning_rate
        rate = learning_rate_band(rel)[1]
        counts["learning_rate"] += rate != current
        return rate

    def init(self, u0: np.ndarray) -> tuple[AdamState, Command]:
        counts = {"warm_start": 0, "learning_rate": 0, "cost_guard": 0, "step_clipping": 0}
        rate = self._rate(self.relative(self.loss0), np.nan, counts)
        zeros = np.zeros_like(u0)
        state = AdamState(u0.copy(), zeros, zeros, 0, rate, np.nan, False, u0, self.loss0, (self.loss0,), 0, 0,
                          tuple(counts.items()), started=time.perf_counter())
        return self._next(state)

    # -- the driver's protocol -------------------------------------------------------------------

    def step(self, state: AdamState, cmd: Command, res) -> tuple[AdamState, Command]:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if cmd.kind == "gradient":
                return self._after_gradient(state, res)
            return self._after_loss(state, res)

    def boundary(self, state: AdamState, cmd: Command):
        """After an evaluation, before the next gradient."""
        if cmd.kind == "gradient" and state.step > 0 and state.last_eval == state.step:
            return PHASE, state.step, self.print_every, False
        return None

    def snapshot(self, state: AdamState) -> tuple[dict, dict, np.ndarray, int]:
        arrays = {"u": state.u, "m": state.m, "v": state.v, "best_u": state.best_u,
                  "best_history": np.array(state.best_history)}
        values = {"step": state.step, "rate": state.rate, "g0": state.g0, "best_loss": state.best_loss,
                  "evaluations": state.evaluations, "last_eval": state.last_eval, "counts": dict(state.counts),
                  "elapsed": time.perf_counter() - state.started}
        return arrays, values, np.zeros((0, 9)), state.step

    def restore(self, arrays: dict, values: dict, rows=None) -> tuple[AdamState, Command]:
        """Inverse of :meth:`snapshot` (``rows``, the checkpoint's history, is LM's: unused here)."""
        state = AdamState(arrays["u"], arrays["m"], arrays["v"], values["step"], values["rate"], values["g0"], False,
                          arrays["best_u"], values["best_loss"], tuple(arrays["best_history"]), values["evaluations"],
                          values["last_eval"], tuple(values["counts"].items()),
                          started=time.perf_counter() - values["elapsed"])
        return self._next(state)

    # -- decisions ---------------------------------------------------------------------------------

    def _next(self, state: AdamState) -> tuple[AdamState, Command]:
        if state.step >= self.opts.warmup_max_steps:
            return self._finish(state, "max_steps")
        return state, Command("gradient", state.u, state.step)

    def _after_gradient(self, state: AdamState, res) -> tuple[AdamState, Command]:
        opts = self.opts
        if res.n_bad or not (np.all(np.isfinite(res.grad)) and np.all(np.isfinite(res.curvature))):
            return self._finish(state, "non_finite")
        step = state.step + 1
        m = BETA1 * state.m + (1.0 - BETA1) * res.grad
        v = BETA2 * state.v + (1.0 - BETA2) * res.grad * res.grad
        m_hat = m / (1.0 - BETA1 ** step)
        scale = natural_scale(res.loss, res.curvature, np.abs(state.u + self.theta_offset))
        delta = -state.rate * scale * m_hat / (np.sqrt(v / (1.0 - BETA2 ** step)) + EPSILON)
        counts = dict(state.counts)
        norm = float(np.linalg.norm(delta))
        if opts.step_clipping and norm > opts.max_step_norm:
            delta *= opts.max_step_norm / norm
            counts["step_clipping"] += 1
        u = np.clip(state.u + delta, self.lower, self.upper)
        g_norm = float(np.linalg.norm(m_hat))
        g0 = g_norm if np.isnan(state.g0) else state.g0
        small = g_norm <= opts.warmup_gtol * g0
        state = state._replace(u=u, m=m, v=v, step=step, g0=g0, small_gradient=small, counts=tuple(counts.items()),
                               m_norm=g_norm)
        if step % opts.warmup_eval_every and not small and step < opts.warmup_max_steps:
            return state, Command("gradient", u, step)
        return state, Command("loss", u)

    def _after_loss(self, state: AdamState, res) -> tuple[AdamState, Command]:
        opts, loss = self.opts, res.loss
        usable = not res.n_bad and np.isfinite(loss)
        if state.finishing is not None:                       # the final evaluation
            if usable and loss < state.best_loss:
                state = state._replace(best_u=state.u, best_loss=loss)
            return self._outcome(state._replace(evaluations=state.evaluations + 1), state.finishing)
        state = state._replace(evaluations=state.evaluations + 1, last_eval=state.step)
        if not usable:
            return self._outcome(state, "non_finite")
        if loss < state.best_loss:
            state = state._replace(best_u=state.u, best_loss=loss)
        history = state.best_history + (state.best_loss,)
        state = state._replace(best_history=history)
        if state.step % self.print_every == 0:
            self.table.line(f"phase 1 step {state.step:5d}: loss {loss:.6e}, relative {self.relative(loss):.4g}, "
                            f"learning rate {state.rate:.3g}, |m| {state.m_norm:.3e}")
        counts = dict(state.counts)
        if opts.cost_guard and loss > (1.0 + opts.cost_guard_tolerance) * self.loss0:
            counts["cost_guard"] += 1
            return self._outcome(state._replace(counts=tuple(counts.items())), "cost_guard")
        if state.small_gradient:
            return self._outcome(state, "gradient")
        window = opts.warmup_plateau_window
        if len(history) > window and history[-window - 1] - state.best_loss <= opts.warmup_plateau_rtol * history[-window - 1]:
            return self._outcome(state, "plateau")
        rate = self._rate(self.relative(loss), state.rate, counts)
        return self._next(state._replace(rate=rate, counts=tuple(counts.items())))

    def _finish(self, state: AdamState, reason: str) -> tuple[AdamState, Command]:
        """End with ``reason``; evaluate the last point first if its steps were not evaluated."""
        if state.last_eval != state.step:
            state = state._replace(finishing=reason)
            return state, Command("loss", state.u)
        return self._outcome(state, reason)

    def _outcome(self, state: AdamState, reason: str) -> tuple[AdamState, Command]:
        seconds = time.perf_counter() - state.started
        rel0, rel = self.relative(self.loss0), self.relative(state.best_loss)
        self.table.line(f"phase 1: {reason} after {state.step} steps; relative loss {rel0:.4g} -> {rel:.4g} "
                        f"({seconds:.3f} s)")
        report = WarmupReport(state.step > 0, reason, state.step, state.evaluations, loss_start=self.loss0,
                              loss_end=state.best_loss, relative_loss_start=rel0, relative_loss_end=rel,
                              learning_rate=state.rate, layer_counts=dict(state.counts),
                              eval_points=self.eval_points, seconds=seconds)
        return state, Command("stop", payload=WarmupOutcome(state.best_u, report))
