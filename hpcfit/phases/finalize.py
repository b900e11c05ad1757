"""Phase 3: de-normalize, the covariance and the active set, and what should not be trusted."""
from __future__ import annotations

import math
import warnings
from dataclasses import replace
from typing import NamedTuple

import numpy as np

from ..arguments import parameter_names
from ..errors import RankDeficientWarning
from ..problem import Problem
from .covariance import covariance


class Solution(NamedTuple):
    """Phase 3's answer: the solver's outcome in the data's units, de-normalized, with its covariance."""

    outcome: object                 # the solver's outcome, cost, gradient and history in the data's units
    popt: np.ndarray
    cov: object                     # hpcfit.phases.covariance.Covariance
    active: np.ndarray              # −1 at a lower bound, +1 at an upper bound, 0 free
    names: list | None
    undetermined: list
    issues: tuple                   # why the result should not be trusted (empty: trustworthy)


def finalize(problem: Problem, outcome) -> Solution:
    """Phase 3: de-normalize, covariance, active set; name what should not be trusted."""
    p, norm, opts = problem.n_params, problem.norm, problem.options
    lower, upper, lower_u, upper_u = problem.lower, problem.upper, problem.lower_u, problem.upper_u
    cov = covariance(outcome.jtj, norm.scale, outcome.cost, problem.local.n_points, problem.absolute_sigma,
                     opts.cov_rcond)
    outcome = _in_user_units(outcome, problem.weight_scale)
    if problem.absolute_sigma and problem.weight_scale != 1.0:
        k = math.frexp(problem.weight_scale)[1] - 1       # pcov / weight_scale², perr / weight_scale
        with np.errstate(over="ignore", under="ignore"):
            cov = cov._replace(pcov=np.ldexp(cov.pcov, 2 * k), perr=np.ldexp(cov.perr, k))
    active = np.where(outcome.u <= lower_u, -1, np.where(outcome.u >= upper_u, 1, 0))
    # The affine map can round a bound by an ulp: report active parameters exactly on it.
    popt = np.where(active < 0, lower, np.where(active > 0, upper, np.clip(norm.to_theta(outcome.u), lower, upper)))
    names = parameter_names(problem.model, p)
    label = names or [f"p[{i}]" for i in range(p)]
    undetermined = [label[i] for i in cov.null_parameters]
    issues = []
    if not outcome.status.success:
        issues.append(f"it did not converge ({outcome.status.name}: {outcome.status.message})")
    if cov.rank < p:
        issues.append(f"the data do not determine {', '.join(undetermined)} (JᵀWJ rank {cov.rank} of {p}); "
                      "their perr is inf")
        if problem.comm.is_root:
            warnings.warn(f"JᵀWJ is rank deficient at the solution (rank {cov.rank} of {p}): the data do not "
                          f"determine {', '.join(undetermined)}; their perr is inf and their rows of pcov are NaN",
                          RankDeficientWarning, stacklevel=4)
    if outcome.taken_back:
        issues.append(f"{outcome.taken_back} accepted step(s) were taken back because the model's derivatives were "
                      "not finite there (e.g. a power of 0 with an exponent below 1): the fit may be held at the edge "
                      "of that region rather than at a minimum")
    issues += [f"{label[i]} is on its {'lower' if a < 0 else 'upper'} bound" for i, a in enumerate(active) if a]
    return Solution(outcome, popt, cov, active, names, undetermined, tuple(issues))


def _in_user_units(outcome, weight_scale: float):
    """The solver's outcome with cost, gradient and history in the data's own units (the fit ran on
    residuals scaled by ``weight_scale``, a power of two; see hpcfit.data.scale)."""
    if weight_scale == 1.0:
        return outcome
    k = -2 * (math.frexp(weight_scale)[1] - 1)        # value / weight_scale² = value · 2^k, exactly

    def unscale(value):                                # 0 or inf where float64 cannot hold the value
        with np.errstate(over="ignore", under="ignore"):
            return np.ldexp(value, k) if np.ndim(value) else float(np.ldexp(value, k))

    history = [replace(rec, cost=unscale(rec.cost), cost_change=unscale(rec.cost_change),
                       gradient_norm=unscale(rec.gradient_norm)) for rec in outcome.history]
    return outcome._replace(cost=unscale(outcome.cost), jtr=unscale(outcome.jtr), history=history)
