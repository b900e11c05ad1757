"""Phase 2: streaming Levenberg–Marquardt on all the data, in normalized space.

One Jacobian pass at the start (checked: a bad start is an error naming it), then the driver
runs rank 0's :class:`~hpcfit.solvers.levenberg_marquardt.LevenbergMarquardt` over the evaluator
until it stops — or from a phase 2 checkpoint, where the state is restored instead.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from ..solvers.driver import Command, evaluate, guarded, run
from ..solvers.levenberg_marquardt import PHASE, LevenbergMarquardt, Outcome
from ..solvers.lm_step import arrow_blocks

__all__ = ["PHASE", "Outcome", "run_trust_region"]


def _scale_note(weight_scale: float) -> str:
    """How the fit scaled the residuals (hpcfit.data.scale), for a message; empty when it did not."""
    if weight_scale == 1.0:
        return ""
    k = math.frexp(weight_scale)[1] - 1
    return (f" (the fit scales the residuals by 2^{k}, the data's median |y/sigma| being about 2^{-k}: "
            "values more than ~2^511 times that median cannot be squared at this scale)")


def _check_start(res, where: str, data: str, weight_scale: float = 1.0) -> None:
    """Raise (identically on every rank: the values are reduced) if the pass at the start is unusable;
    ``where`` names the start and its parameter values, ``data`` the data (file and dataset),
    ``weight_scale`` the residual scale of data of an extreme magnitude (named in the message)."""
    error = InputError
    if res.n_bad:
        raise error(f"{where}, {res.n_bad} point(s) of the data ({data}) have a residual (f(x) − ydata)/sigma "
                    "that is NaN or Inf, or too large to square in float64 (|r| > 1e154); the first at global point "
                    f"index {res.first_bad}{_scale_note(weight_scale)}. Check the data there (a garbage or missing "
                    "value), p0 and the model")
    diagonal = np.diagonal(res.jtj) if np.ndim(res.jtj) == 2 else np.zeros(0)
    if weight_scale != 1.0 and np.isfinite(res.cost) and not np.all(np.isfinite(res.jtj)) \
            and not np.any(np.isnan(diagonal)):
        k = math.frexp(weight_scale)[1] - 1
        raise error(f"JᵀWJ overflowed {where} with the residuals scaled by 2^{k} (the data's median |y/sigma| is "
                    f"about 2^{-k}; data: {data}): a parameter's Jacobian column is too large at that scale, i.e. "
                    "the unit the fit measures it in (|p0|, its box width, or 1 with normalize='none') is far "
                    "from the data's units; give p0 values of the data's magnitude (or finite bounds)")
    if not np.isfinite(res.cost):
        raise error(f"the cost overflowed {where} (cost = {res.cost!r}; data: {data}) although every residual "
                    "squares to a finite value: the residuals (ydata − f)/sigma are too large for float64 sums; "
                    "rescale ydata or sigma")
    if not (np.all(np.isfinite(res.jtj)) and np.all(np.isfinite(res.jtr))):
        raise error(f"JᵀWJ is not finite {where}: the model's derivatives are NaN or Inf at some points "
                    "(for example sqrt or log at 0, or a power of 0 with a negative exponent), or so large "
                    "that their products overflow; check p0, the bounds and the model")


def run_trust_region(problem, evaluator, u0: np.ndarray, checkpoints=None, start_label: str = "at the start",
                     valley_check: bool = True) -> Outcome:
    """Collective: LM over ``evaluator`` from ``u0`` (or from ``checkpoints.resumed`` when that is a
    phase 2 checkpoint); every rank returns the same :class:`Outcome`. ``problem``: the
    :class:`~hpcfit.problem.Problem` (phase 1 passes its sample's); ``checkpoints``: a
    CheckpointSession or None; ``valley_check`` (LevenbergMarquardt's): False for phase 1's
    candidates, which need their basin, not convergence to the last digit along a flat valley."""
    comm = problem.comm
    solver = LevenbergMarquardt(problem.options, problem.norm, problem.lower_u, problem.upper_u,
                                problem.table if comm.is_root else None, valley_check=valley_check,
                                blocks=arrow_blocks(getattr(evaluator, "groups", None)))

    def begin():
        state, start = solver.start(u0)
        first = evaluate(comm, evaluator, start, checkpoints)
        # before the driver: a bad start is the user's error
        _check_start(first, start_label, evaluator.local.describe, problem.weight_scale)
        return guarded(solver.step, state, start, first) if comm.is_root else (None, None)

    return run(comm, solver, evaluator, PHASE, begin, checkpoints)
