"""Phase 1's Adam warm-up on minibatches, with its four-layer defense (one tool of the explore
phase, :mod:`hpcfit.phases.explore`, which runs it when LM on the sample from p0 does not explain
the data, and polishes its end with LM).

Gauss–Newton converges fast from a good start and can stall or wander from a bad one; the warm-up
brings p0 into its basin and gets out of the way. All of it works in normalized u.

1. **Warm-start detection.** The relative loss ℓ_rel = 2·cost/(m·var_w(y)) (1 − R² for the linear
   loss) of LM's point from p0 on the explore sample; below ``warm_start_threshold`` the warm-up is
   not run (decided in :mod:`hpcfit.phases.explore`).
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

import numpy as np

from ..result import WarmupReport
from ..solvers.adam import (LEARNING_RATE_BANDS, PHASE, AdamWarmup, WarmupOutcome, learning_rate_band,
                            natural_scale)
from ..solvers.driver import guarded, run

__all__ = ["LEARNING_RATE_BANDS", "PHASE", "WarmupOutcome", "learning_rate_band", "natural_scale", "run_warmup"]


def run_warmup(problem, points, u0: np.ndarray, checkpoints=None) -> WarmupOutcome:
    """Collective: the Adam warm-up from ``u0``; every rank returns the same outcome.

    ``points`` is a :class:`~hpcfit.kernels.points.PointEvaluator` over ``problem``'s data.
    Overflow is not an error here: a non-finite value ends the warm-up and phase 2 reports it.
    A warm-up checkpoint in ``checkpoints.resumed`` continues from there.
    """
    t0 = time.perf_counter()
    opts, norm = problem.options, problem.norm
    subset = points.evaluation_set(opts.warmup_eval_points)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        variance = points.weighted_variance(subset)
        loss0, bad0 = points.loss(u0, subset)
    solver = AdamWarmup(opts, norm.offset / norm.scale, problem.lower_u, problem.upper_u, loss0, variance,
                        subset.size, problem.table)
    rel0 = solver.relative(loss0)
    if bad0 or not (np.isfinite(loss0) and np.isfinite(variance)):      # phase 2 reports the bad start
        return WarmupOutcome(u0, WarmupReport(False, "non_finite", loss_start=loss0, relative_loss_start=rel0,
                                              eval_points=subset.size, seconds=time.perf_counter() - t0))
    # Layer 1 (warm-start detection) is decided by the explore phase, on LM's point from p0: it only
    # calls the warm-up when that point does not explain the data.
    return run(points.comm, solver, points, PHASE,
               lambda: guarded(lambda _, u: solver.init(u), None, u0) if points.comm.is_root else (None, None),
               checkpoints)
