"""Phase 1's Adam warm-up on minibatches, with its four-layer defense (one tool of the explore
phase, :mod:`hpcfit.phases.explore`, which runs it when LM on the sample from p0 does not explain
the data, and polishes its end with LM).

Gauss–Newton converges fast from a good start and can stall or wander from a bad one; the warm-up
brings p0 into its basin and gets out of the way. All of it works in normalized u.

1. **Warm-start detection.** The relative loss ℓ_rel = 2·loss/var_w(y) (1 − R² for the linear
   loss) on the evaluation subset at p0; below ``warm_start_threshold`` phase 1 is skipped, at the
   price of one evaluation of the subset.
2. **Adaptive learning rate** from the band ℓ_rel falls in (:data:`LEARNING_RATE_BANDS`), chosen
   at the start and again at every evaluation.
3. **Cost guard.** When the subset loss rises above the initial one by more than
   ``cost_guard_tolerance``, stop: the best point seen goes to phase 2.
4. **Step clipping.** Each update's 2-norm in u is capped at ``max_step_norm``.

Phase 1 ends on the gradient test (the smoothed gradient fell to ``warmup_gtol`` of its first
value), a plateau (the best loss improved by less than ``warmup_plateau_rtol`` over
``warmup_plateau_window`` evaluations), the step limit, a guard stop or a non-finite value, and
always hands phase 2 the best evaluated point (p0 included), so it never makes the start worse on
the subset.

Every rank runs this same code on the same reduced values (one reduction per step, no broadcast):
the decisions are identical everywhere because the reduced numbers are.
"""
from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from ..result import WarmupReport

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
    u: np.ndarray            # the point handed to phase 2
    report: WarmupReport


PHASE = "warmup"


def run_warmup(points, u0: np.ndarray, opts, norm, lower_u: np.ndarray, upper_u: np.ndarray, table,
               checkpoints=None) -> WarmupOutcome:
    """Collective: phase 1 from ``u0``; every rank returns the same outcome.

    ``points`` is a :class:`~hpcfit.kernels.points.PointEvaluator`; ``table`` prints on rank 0.
    Overflow is not an error here: a non-finite value ends phase 1 and phase 2 reports it.
    ``checkpoints`` (a CheckpointSession or None) is asked at every evaluation, where the whole
    state is the locals below; a phase 1 checkpoint in ``checkpoints.resumed`` continues from there.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _warmup(points, u0, opts, norm.offset / norm.scale, lower_u, upper_u, table, checkpoints)


def _warmup(points, u0, opts, theta_offset, lower_u, upper_u, table, checkpoints) -> WarmupOutcome:
    t0 = time.perf_counter()
    subset = points.evaluation_set(opts.warmup_eval_points)
    variance = points.weighted_variance(subset)
    loss0, bad0 = points.loss(u0, subset)

    def relative(loss: float) -> float:
        return 2.0 * loss / variance if variance > 0 else (0.0 if loss == 0 else np.inf)

    rel0 = relative(loss0)
    counts = {"warm_start": 0, "learning_rate": 0, "cost_guard": 0, "step_clipping": 0}
    report = dict(loss_start=loss0, relative_loss_start=rel0, eval_points=subset.size)

    def finish(u, reason, steps=0, evaluations=0, loss=loss0, rate=float("nan")):
        seconds = time.perf_counter() - t0
        table.line(f"phase 1: {reason} after {steps} steps; relative loss {rel0:.4g} -> {relative(loss):.4g} "
                   f"({seconds:.3f} s)")
        return WarmupOutcome(u, WarmupReport(steps > 0, reason, steps, evaluations,
                                             loss_end=loss, relative_loss_end=relative(loss), learning_rate=rate,
                                             layer_counts=counts, seconds=seconds, **report))

    if bad0 or not (np.isfinite(loss0) and np.isfinite(variance)):
        return finish(u0, "non_finite")          # phase 2 reports the bad start in detail
    if opts.warm_start_detection and rel0 < opts.warm_start_threshold:
        counts["warm_start"] = 1
        return finish(u0, "warm_start")

    def pick_rate(rel: float, current: float) -> float:
        if not opts.adaptive_learning_rate:
            return opts.learning_rate
        rate = learning_rate_band(rel)[1]
        counts["learning_rate"] += rate != current
        return rate

    resume = getattr(checkpoints, "resumed", None)
    if resume is not None and resume.phase == PHASE:
        a, val = resume.arrays, resume.values
        u, m, v, best_u, best_history = a["u"], a["m"], a["v"], a["best_u"], list(a["best_history"])
        step, rate, best_loss = val["step"], val["rate"], val["best_loss"]
        evaluations, last_eval = val["evaluations"], val["last_eval"]
        g0 = None if np.isnan(val["g0"]) else val["g0"]
        counts.update(val["counts"])
    else:
        rate = pick_rate(rel0, np.nan)
        u, m, v = u0.copy(), np.zeros_like(u0), np.zeros_like(u0)
        best_u, best_loss, best_history = u0, loss0, [loss0]
        g0 = None
        step, evaluations, last_eval = 0, 0, 0
    # about ten progress lines on rank 0, at evaluations
    print_every = opts.warmup_eval_every * max(1, opts.warmup_max_steps // (10 * opts.warmup_eval_every))
    reason = "max_steps"
    while step < opts.warmup_max_steps:
        batch_loss, grad, curvature, bad = points.gradient(u, points.minibatch(step))
        if bad or not (np.all(np.isfinite(grad)) and np.all(np.isfinite(curvature))):
            reason = "non_finite"
            break
        step += 1
        m = BETA1 * m + (1.0 - BETA1) * grad
        v = BETA2 * v + (1.0 - BETA2) * grad * grad
        m_hat = m / (1.0 - BETA1 ** step)
        scale = natural_scale(batch_loss, curvature, np.abs(u + theta_offset))
        delta = -rate * scale * m_hat / (np.sqrt(v / (1.0 - BETA2 ** step)) + EPSILON)
        norm = float(np.linalg.norm(delta))
        if opts.step_clipping and norm > opts.max_step_norm:
            delta *= opts.max_step_norm / norm
            counts["step_clipping"] += 1
        u = np.clip(u + delta, lower_u, upper_u)
        g_norm = float(np.linalg.norm(m_hat))
        g0 = g_norm if g0 is None else g0
        small_gradient = g_norm <= opts.warmup_gtol * g0
        if step % opts.warmup_eval_every and not small_gradient and step < opts.warmup_max_steps:
            continue
        loss, bad = points.loss(u, subset)
        evaluations, last_eval = evaluations + 1, step
        if bad or not np.isfinite(loss):
            reason = "non_finite"
            break
        if loss < best_loss:
            best_u, best_loss = u, loss
        best_history.append(best_loss)
        if step % print_every == 0:
            table.line(f"phase 1 step {step:5d}: loss {loss:.6e}, relative {relative(loss):.4g}, "
                       f"learning rate {rate:.3g}, |m| {g_norm:.3e}")
        if opts.cost_guard and loss > (1.0 + opts.cost_guard_tolerance) * loss0:
            counts["cost_guard"] += 1
            reason = "cost_guard"
            break
        if small_gradient:
            reason = "gradient"
            break
        window = opts.warmup_plateau_window
        if len(best_history) > window and \
                best_history[-window - 1] - best_loss <= opts.warmup_plateau_rtol * best_history[-window - 1]:
            reason = "plateau"
            break
        rate = pick_rate(relative(loss), rate)
        if checkpoints is not None:
            write, stop = checkpoints.decide(PHASE, step, stride=print_every)
            ckpt = None
            if write:
                arrays = {"u": u, "m": m, "v": v, "best_u": best_u, "best_history": np.array(best_history)}
                values = {"step": step, "rate": rate, "g0": np.nan if g0 is None else g0, "best_loss": best_loss,
                          "evaluations": evaluations, "last_eval": last_eval, "counts": dict(counts)}
                ckpt = checkpoints.make(PHASE, step, arrays, values, np.zeros((0, 9)), cursor=step)
            checkpoints.commit(ckpt, stop)
    if last_eval != step:                      # the last steps were not evaluated: do it now
        loss, bad = points.loss(u, subset)
        evaluations += 1
        if not bad and np.isfinite(loss) and loss < best_loss:
            best_u, best_loss = u, loss
    # Phase 1 polishes this point with LM on the sample and keeps it only if it beats LM from p0
    # (hpcfit.phases.explore), so no hand-off rule is needed here.
    return finish(best_u, reason, step, evaluations, best_loss, rate)
