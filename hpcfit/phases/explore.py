"""Phase 1: explore on a fixed sample, then hand the best candidate to phase 2.

Candidates are produced cheaply on an in-memory sample of the data (:mod:`hpcfit.data.sample`)
and each is polished by the same Levenberg–Marquardt solver that phase 2 runs on all the data:

1. LM on the sample from p0 — p0's own basin, always a candidate;
2. when that does not explain the data (relative loss ≥ ``warm_start_threshold``), the Adam
   warm-up with its four layers (:mod:`hpcfit.phases.warmup`) from p0, and LM from its end;
3. ``multistart`` quasi-random starts in the normalized box (``"auto"``: 32 of them, only when
   neither p0 nor Adam gave a converged, sound candidate that explains the data) and the
   caller's ``explore_starts``, each polished by LM.

The candidate with the lowest sample cost wins; within a relative ``TIE`` of the best, a
candidate that sits on a bound or at which JᵀWJ is rank deficient loses to one that does not.
Because p0's basin is a candidate, phase 1 can only improve on Gauss–Newton from p0 (as far as
the sample represents the data). Every rank holds the same sample and runs the same numpy and
the same compiled kernels, so every decision is the same on every rank and for any rank count.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable, NamedTuple

import numpy as np

from ..comm import Communicator
from ..data.sample import Sample
from ..errors import HpcfitError
from ..report import IterationTable
from ..result import ExploreReport, WarmupReport
from .covariance import covariance
from .trust_region import run_trust_region

#: Candidates whose sample costs differ by less than this (relative) are tied.
TIE = 1e-4
#: ``multistart="auto"``: this many quasi-random starts when neither LM from p0 nor from Adam's end
#: gives a sound candidate (converged, not degenerate, relative loss below :data:`POOR_FIT`).
#: Measured on NIST StRD at tight tolerances: 8 starts solve BoxBOD from start 1, 32 solve MGH10
#: from start 1 (docs/benchmarks.md).
AUTO_MULTISTART = 32
#: A relative loss (1 − R² for the linear loss) above this: the model explains less than half of
#: what a constant leaves.
POOR_FIT = 0.5
CONVERGED = ("GTOL", "FTOL", "XTOL", "FTOL_XTOL")
_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97)


class Candidate(NamedTuple):
    origin: str               # "p0", "adam", "multistart 3", "start 1"
    u: np.ndarray             # the polished point (normalized)
    cost: float               # cost on the sample at u
    status: str               # how LM on the sample ended
    iterations: int
    on_bound: bool            # a parameter sits on a finite bound
    rank_deficient: bool      # JᵀWJ on the sample is rank deficient at u

    def describe(self) -> dict:
        return {"origin": self.origin, "cost": float(self.cost), "status": self.status,
                "iterations": int(self.iterations), "on_bound": bool(self.on_bound),
                "rank_deficient": bool(self.rank_deficient)}


class ExploreOutcome(NamedTuple):
    u: np.ndarray | None      # the point handed to phase 2 (None: phase 1 did not run)
    report: ExploreReport
    warmup: WarmupReport


def halton(count: int, dim: int, skip: int = 1) -> np.ndarray:
    """The first ``count`` points of the Halton sequence in [0, 1)^dim (after ``skip``), with
    primes cycled for dim > 25: a quasi-random cover that is the same everywhere."""
    out = np.empty((count, dim))
    for d in range(dim):
        base = _PRIMES[d % len(_PRIMES)]
        for i in range(count):
            k, f, value = i + skip, 1.0, 0.0
            while k > 0:
                f /= base
                value += f * (k % base)
                k //= base
            out[i, d] = value
    return out


def multistart_points(count: int, u0: np.ndarray, lower_u: np.ndarray, upper_u: np.ndarray,
                      theta_offset: np.ndarray) -> list[np.ndarray]:
    """``count`` quasi-random starts in u: uniform in the box where both bounds are finite; where
    not, θ = p0·10^(±1) on a log scale (sign kept; around 0: u0 ± 1)."""
    h = halton(count, u0.size)
    starts = []
    for row in h:
        finite = np.isfinite(lower_u) & np.isfinite(upper_u)
        box = np.where(finite, lower_u + row * (np.where(finite, upper_u - lower_u, 0.0)), 0.0)
        theta0 = u0 + theta_offset                    # θ / scale: the sign and size of p0
        factor = 10.0 ** (2.0 * row - 1.0)
        unbounded = np.where(theta0 != 0.0, theta0 * factor - theta_offset, u0 + 2.0 * row - 1.0)
        starts.append(np.clip(np.where(finite, box, unbounded), lower_u, upper_u))
    return starts


def choose(candidates: list[Candidate]) -> Candidate:
    """The lowest cost; within a relative :data:`TIE`, one neither on a bound nor degenerate
    (earlier candidates first: p0's basin wins a full tie)."""
    best = min(candidates, key=lambda c: c.cost)
    tied = [c for c in candidates if c.cost <= best.cost + TIE * abs(best.cost)]
    sound = [c for c in tied if not (c.on_bound or c.rank_deficient)]
    return min(sound, key=lambda c: c.cost) if sound else best


def run_explore(problem, sample: Sample, sample_evaluator, run_adam: Callable | None) -> ExploreOutcome:
    """Phase 1 (the same on every rank; no collective except inside ``run_adam``).

    ``sample_evaluator`` evaluates passes over ``sample`` (serially, on every rank); LM polishes the
    candidates over it through the same driver as phase 2. ``run_adam(u0)`` runs the Adam warm-up
    (collective) and returns a WarmupOutcome.
    """
    t0 = time.perf_counter()
    opts, norm, table, u0 = problem.options, problem.norm, problem.table, problem.u0
    lower_u, upper_u = problem.lower_u, problem.upper_u
    size, p = sample.size, u0.size
    sample_variance = sample.weighted_variance(problem.weight_scale)
    # The user's tolerances and iteration limit: when the sample is all the data, LM from p0 is then
    # exactly what method="gn" runs, and phase 2 starts where it ended. Serial and quiet.
    on_sample = replace(problem, comm=Communicator(None), local=sample_evaluator.local, table=IterationTable(False),
                        options=replace(opts, max_nfev=None, max_time=None, checkpoint=None, resume=None))

    def relative(cost: float) -> float:
        return 2.0 * cost / (size * sample_variance) if sample_variance > 0 else (0.0 if cost == 0 else np.inf)

    def polish(origin: str, start: np.ndarray) -> Candidate | None:
        try:
            out = run_trust_region(on_sample, sample_evaluator, start)
        except HpcfitError as exc:        # the same on every rank: the sample and the numbers are
            table.line(f"phase 1: {origin}: not usable ({exc})")
            return None
        cov = covariance(out.jtj, np.ones(p), out.cost, max(size, p + 1), True, opts.cov_rcond)
        finite_lo, finite_hi = np.isfinite(lower_u), np.isfinite(upper_u)
        on_bound = bool(np.any((finite_lo & (out.u <= lower_u)) | (finite_hi & (out.u >= upper_u))))
        cand = Candidate(origin, out.u, float(out.cost), out.status.name, out.n_iterations, on_bound,
                         cov.rank < p)
        table.line(f"phase 1: LM on the sample from {origin}: cost {cand.cost:.8e} (relative "
                   f"{relative(cand.cost):.4g}) after {cand.iterations} iterations, {cand.status}"
                   + (", on a bound" if on_bound else "") + (", rank deficient" if cand.rank_deficient else ""))
        return cand

    candidates = []
    first = polish("p0", u0)
    if first is None:     # p0 is not usable on the sample: phase 2 reports the bad start in detail
        return _outcome(u0, "non_finite", [], None, size, t0, WarmupReport(ran=False, reason="non_finite"))
    candidates.append(first)
    rel = relative(first.cost)
    skip = opts.warm_start_detection and rel < opts.warm_start_threshold
    warm = WarmupReport(ran=False, reason="warm_start", relative_loss_start=rel, relative_loss_end=rel,
                        layer_counts={"warm_start": 1})
    if not skip and run_adam is not None and opts.warmup_max_steps > 0:
        adam = run_adam(u0)
        warm = adam.report
        if adam.u is not None and not np.array_equal(adam.u, u0):
            candidates.append(polish("adam", adam.u))
    elif not skip:
        warm = WarmupReport(ran=False, reason="max_steps")
    theta_offset = norm.offset / norm.scale
    count = opts.multistart
    if count == "auto":
        sound = [c for c in candidates if c is not None and c.status in CONVERGED and not c.on_bound
                 and not c.rank_deficient and relative(c.cost) < POOR_FIT]
        count = 0 if sound else AUTO_MULTISTART
    starts = [(f"multistart {k + 1}", s) for k, s in
              enumerate(multistart_points(count, u0, lower_u, upper_u, theta_offset))]
    starts += [(f"start {k + 1}", np.clip(norm.to_u(np.asarray(s, dtype=float)), lower_u, upper_u))
               for k, s in enumerate(opts.explore_starts or ())]
    for origin, start in starts:
        candidates.append(polish(origin, start))
    candidates = [c for c in candidates if c is not None]
    best = choose(candidates)
    reason = "warm_start" if skip else ("adam" if warm.ran else "lm")
    return _outcome(best.u, reason, candidates, best, size, t0, warm)


def _outcome(u, reason, candidates, best, size, t0, warm) -> ExploreOutcome:
    report = ExploreReport(ran=True, reason=reason, sample_points=size,
                           candidates=tuple(c.describe() for c in candidates),
                           chosen=None if best is None else best.origin,
                           seconds=time.perf_counter() - t0)
    return ExploreOutcome(u, report, warm)


def not_run(reason: str) -> ExploreOutcome:
    return ExploreOutcome(None, ExploreReport(ran=False, reason=reason), WarmupReport(ran=False, reason=reason))
