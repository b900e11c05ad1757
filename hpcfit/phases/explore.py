"""Phase 1: explore on a fixed sample, then hand the best candidate to phase 2.

Candidates are produced cheaply on an in-memory sample of the data (:mod:`hpcfit.data.sample`)
and each is polished by the same Levenberg–Marquardt solver that phase 2 runs on all the data.
Phase 1 earns its time: what runs beyond LM from p0 depends on what that LM shows, is held to a
share of the fit's own cost, and is spread over the ranks.

1. LM on the sample from p0 — p0's own basin, always a candidate, run on every rank. Its end is
   the evidence for the rest, and its sample cost the bar the other candidates must beat. It
   *settled* when it converged, JᵀWJ has full rank there and its relative loss is below
   :data:`FAILED_FIT` (the model explains something); a *warm start* has a relative loss below
   ``warm_start_threshold``.
2. The Adam warm-up (:mod:`hpcfit.phases.warmup`) from p0 and LM from its end — only when LM from p0
   did not settle (Adam brings a start LM cannot settle into a basin; from a settled end it
   only finds that basin again) and is not below ``warm_start_threshold``; always with
   ``warm_start_detection=False``. Run on every rank (collective).
3. The automatic candidates, in this order: ``explore_scan`` (xpcs.fit's scan) and, with
   ``multistart="auto"``, :data:`AUTO_MULTISTART` quasi-random starts when neither p0 nor Adam
   gave a sound candidate. The first ``floor(explore_budget · n / m)``
   (n points, m sampled) when LM from p0 settled — each costs about what LM from p0 cost on the
   sample, so together about one LM from p0 over all the data, i.e. one Gauss–Newton fit; all of
   them when it did not settle (a rescue, whatever it costs). Not none at a warm start: on
   random XPCS starts LM from p0 reached relative loss < 0.01 in a basin 40 % above the one the
   scan finds. Then the caller's own
   ``multistart=K`` starts and ``explore_starts``, always.
4. The candidates of 3 form one global list: rank r polishes candidates r, r + size, … on the
   same sample with a serial communicator, stopping one early (status ``DROPPED``) once it cannot
   beat the bar (:func:`hopeless`), and one allgather gives every rank every candidate. A
   candidate's bits do not depend on the rank that computed it, so the list, the choice and the
   fit are the same on any rank count.

The candidate with the lowest sample cost wins; within a relative ``TIE`` of the best, a
candidate that sits on a bound or at which JᵀWJ is rank deficient loses to one that does not.
Because p0's basin is a candidate, phase 1 can only improve on Gauss–Newton from p0 (as far as
the sample represents the data). Every decision above is made from the same numbers on every rank.
"""
from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Callable, NamedTuple

import numpy as np

from ..comm import Communicator
from ..data.sample import Sample, gather_sample, sample_chunks
from ..errors import FitError, HpcfitError, InputError, interrupted
from ..groups import GroupLayout
from ..kernels.coords import IndexedX
from ..kernels.evaluator import PassEvaluator
from ..kernels.points import PointEvaluator
from ..report import IterationTable
from ..result import ExploreReport, WarmupReport
from ..solvers.driver import resumed
from .covariance import covariance
from .trust_region import PHASE as TRUST_REGION, run_trust_region
from .warmup import run_warmup

#: Phase 1 works on all the data when there are at most this many times ``explore_sample_points``
#: points: a sample of more than half the data costs about what the data cost, and phase 2 from its
#: minimum redoes much of the work (the real 8-ID-E maps, 44850 points: 18 more LM iterations on
#: all of them after a 32768-point sample), while phase 1 on all of it chooses on the fit's own cost.
WHOLE_DATA = 2
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
#: LM from p0 did not settle when its relative loss is at least this (the model explains less than
#: 1 % of what a constant leaves: BoxBOD's flat region b₂ → ∞ ends at 1.0000); the real 8-ID-E maps,
#: whose static model explains 6–54 %, end at 0.46–0.94 (docs/benchmarks.md).
FAILED_FIT = 0.99
#: Early stop (:func:`hopeless`): after at least DROP_AFTER accepted LM iterations, a candidate more
#: than DROP_MARGIN (relative) above the bar that closed less than DROP_PROGRESS of its gap to it over
#: its last DROP_WINDOW iterations is dropped. Measured on every candidate of bench_hard_starts and
#: of the real maps (docs/benchmarks.md): it ends 54 % of their LM iterations and no candidate that
#: ended below the bar, except two multistarts on a real map whose basin the scan also reaches.
DROP_AFTER = 3
DROP_WINDOW = 2
DROP_PROGRESS = 0.1
DROP_MARGIN = 0.01
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


def hopeless(costs: list[float], bar: float) -> bool:
    """Whether a candidate whose sample costs at its accepted points (the start first) are ``costs``
    cannot beat ``bar``: after :data:`DROP_AFTER` iterations it is still more than
    :data:`DROP_MARGIN` above the bar and closed less than :data:`DROP_PROGRESS` of that gap over
    its last :data:`DROP_WINDOW` iterations (it is settling in a worse basin). A pure function of
    the candidate's own numbers and the bar, so the same on every rank."""
    if len(costs) <= max(DROP_AFTER, DROP_WINDOW):
        return False
    cost, before = costs[-1], costs[-1 - DROP_WINDOW]
    return cost > bar + DROP_MARGIN * abs(bar) and before - cost < DROP_PROGRESS * (cost - bar)


class _Hopeless(Exception):
    """Raised out of a candidate's LM when it cannot beat the bar; carries its last accepted point."""

    def __init__(self, u: np.ndarray, result, iterations: int):
        super().__init__("dropped")
        self.u, self.result, self.iterations = u, result, iterations


class _Watched:
    """The sample evaluator, watching one candidate's cost at each accepted point (each usable
    Jacobian pass) and stopping it when :func:`hopeless`. Serial: raising leaves no rank waiting."""

    def __init__(self, evaluator, bar: float):
        self._evaluator, self._bar, self._costs = evaluator, bar, []

    def __getattr__(self, name):
        return getattr(self._evaluator, name)

    def evaluate(self, cmd, flags=()):
        res = self._evaluator.evaluate(cmd, flags)
        if cmd.kind == "jacobian" and res.n_bad == 0 and np.isfinite(res.cost) and np.all(np.isfinite(res.jtj)):
            self._costs.append(float(res.cost))
            if hopeless(self._costs, self._bar):
                raise _Hopeless(np.asarray(cmd.u, dtype=float), res, len(self._costs) - 1)
        return res


def _gather(comm: Communicator, work: Callable[[], list]) -> list[list]:
    """Collective, one allgather: every rank's ``work()``; an error on any rank is raised on every
    rank (the first by rank), as :meth:`Communicator.agree` raises it."""
    result, error = None, None
    try:
        result = work()
    except HpcfitError as exc:
        error = (type(exc).__name__, str(exc))
    except KeyboardInterrupt as exc:      # Ctrl-C seen by this rank's serial LM: agreed here
        if getattr(exc, "agreed", True):
            raise
        error = ("Interrupted", "")
    except Exception as exc:  # noqa: BLE001 - any failure must reach every rank
        error = ("FitError", f"{type(exc).__name__}: {exc}")
    parts = comm.allgather((result, error))
    if any(err is not None and err[0] == "Interrupted" for _, err in parts):
        raise interrupted(phase="phase 1")
    for rank, (_, err) in enumerate(parts):
        if err is not None:
            kind, message = err
            raise (InputError if kind == "InputError" else FitError)(
                message + (f" [found on rank {rank}]" if comm.size > 1 else ""))
    return [r for r, _ in parts]


def _names(origins: list[str]) -> str:
    return ", ".join(origins) if len(origins) <= 3 else f"{origins[0]} … {origins[-1]} ({len(origins)})"


def run_explore(problem, sample: Sample, sample_evaluator, run_adam: Callable | None) -> ExploreOutcome:
    """Phase 1 (collective: ``run_adam`` and one allgather of the candidates; every rank returns the
    same outcome).

    ``sample_evaluator`` evaluates passes over ``sample`` (serially, on every rank); LM polishes the
    candidates over it through the same driver as phase 2. ``run_adam(u0)`` runs the Adam warm-up
    (collective) and returns a WarmupOutcome.
    """
    t0 = time.perf_counter()
    hc = problem.comm
    opts, norm, table, u0 = problem.options, problem.norm, problem.table, problem.u0
    lower_u, upper_u = problem.lower_u, problem.upper_u
    size, p = sample.size, u0.size
    sample_variance = sample.weighted_variance(problem.weight_scale)
    # The user's tolerances and iteration limit: when the sample is all the data, LM from p0 is then
    # exactly what method="gn" runs, and phase 2 starts where it ended. Serial and quiet.
    on_sample = _serial(problem, sample_evaluator)

    def relative(cost: float) -> float:
        return 2.0 * cost / (size * sample_variance) if sample_variance > 0 else (0.0 if cost == 0 else np.inf)

    def polish(origin: str, start: np.ndarray, bar: float | None = None) -> tuple[Candidate | None, str]:
        """LM on the sample from ``start`` (serial): the candidate and its line for the table."""
        watched = bar is not None and opts.explore_early_stop
        try:
            out = run_trust_region(on_sample, _Watched(sample_evaluator, bar) if watched else sample_evaluator,
                                   start, valley_check=False)
            u, cost, jtj, status, iterations = out.u, float(out.cost), out.jtj, out.status.name, out.n_iterations
        except _Hopeless as stop:
            u, cost, jtj, status, iterations = stop.u, float(stop.result.cost), stop.result.jtj, "DROPPED", \
                stop.iterations
        except HpcfitError as exc:        # the same on every rank: the sample and the numbers are
            return None, f"phase 1: {origin}: not usable ({exc})"
        cov = covariance(jtj, np.ones(p), cost, max(size, p + 1), True, opts.cov_rcond)
        finite_lo, finite_hi = np.isfinite(lower_u), np.isfinite(upper_u)
        on_bound = bool(np.any((finite_lo & (u <= lower_u)) | (finite_hi & (u >= upper_u))))
        cand = Candidate(origin, u, cost, status, iterations, on_bound, cov.rank < p)
        line = (f"phase 1: LM on the sample from {origin}: cost {cand.cost:.8e} (relative {relative(cand.cost):.4g}) "
                f"after {cand.iterations} iterations, {cand.status}" + (", on a bound" if on_bound else "")
                + (", rank deficient" if cand.rank_deficient else ""))
        return cand, line

    def sound(c: Candidate | None) -> bool:
        return (c is not None and c.status in CONVERGED and not c.on_bound and not c.rank_deficient
                and relative(c.cost) < POOR_FIT)

    kept = []
    # every rank polishes p0 (serially); the allgather after it agrees on a Ctrl-C met during it
    _gather(hc, lambda: kept.append(polish("p0", u0)))
    first, line = kept[0]
    table.line(line)
    if first is None:     # p0 is not usable on the sample: phase 2 reports the bad start in detail
        return _outcome(u0, "non_finite", [], None, size, t0, WarmupReport(ran=False, reason="non_finite"))
    candidates, skipped = [first], []
    rel = relative(first.cost)
    settled = first.status in CONVERGED and not first.rank_deficient and rel < FAILED_FIT
    below = opts.warm_start_detection and rel < opts.warm_start_threshold
    warm = WarmupReport(ran=False, reason="warm_start" if below else "converged", relative_loss_start=rel,
                        relative_loss_end=rel, layer_counts={"warm_start": 1} if below else {})
    reason = "warm_start" if below else "converged"
    if not opts.warm_start_detection or not (below or settled):
        if run_adam is not None and opts.warmup_max_steps > 0:
            adam = run_adam(u0)
            warm, reason = adam.report, "adam"
            if adam.u is not None and not np.array_equal(adam.u, u0):
                cand, line = polish("adam", adam.u)
                table.line(line)
                candidates.append(cand)
        else:
            warm, reason = WarmupReport(ran=False, reason="max_steps"), "lm"
    elif not below:
        skipped.append(f"adam: LM from p0 settled (converged, full rank, relative loss {rel:.4g} < {FAILED_FIT})")
    bar = min(c.cost for c in candidates if c is not None)

    theta_offset = norm.offset / norm.scale

    def given(rows, label):
        return [(f"{label} {k + 1}", np.clip(norm.to_u(np.asarray(row, dtype=float)), lower_u, upper_u))
                for k, row in enumerate(rows or ())]

    auto_count = AUTO_MULTISTART if opts.multistart == "auto" and not any(sound(c) for c in candidates) else 0
    own_count = 0 if opts.multistart == "auto" else opts.multistart
    auto = given(opts.explore_scan, "scan") + [
        (f"multistart {k + 1}", s) for k, s in enumerate(multistart_points(auto_count, u0, lower_u, upper_u,
                                                                             theta_offset))]
    if auto and settled:
        n = problem.local.n_points
        limit = len(auto) if math.isinf(opts.explore_budget) else int(math.floor(opts.explore_budget * n / size))
        if limit < len(auto):
            skipped.append(f"{_names([o for o, _ in auto[limit:]])}: beyond explore_budget (LM from p0 settled; "
                           f"{opts.explore_budget:g} × {n} points / {size} sampled allows {limit} of {len(auto)})")
            auto = auto[:limit]
    rows = auto + [(f"multistart {k + 1}", s) for k, s in enumerate(
        multistart_points(own_count, u0, lower_u, upper_u, theta_offset))] + given(opts.explore_starts, "start")
    for note in skipped:
        table.line(f"phase 1: skipped {note}")
    mine = rows[hc.rank::hc.size]
    parts = _gather(hc, lambda: [polish(origin, start, bar) for origin, start in mine])
    for k in range(len(rows)):
        cand, line = parts[k % hc.size][k // hc.size]
        table.line(line)
        candidates.append(cand)
    candidates = [c for c in candidates if c is not None]
    best = choose(candidates)
    return _outcome(best.u, reason, candidates, best, size, t0, warm, tuple(skipped))


def _outcome(u, reason, candidates, best, size, t0, warm, skipped=()) -> ExploreOutcome:
    report = ExploreReport(ran=True, reason=reason, sample_points=size,
                           candidates=tuple(c.describe() for c in candidates),
                           chosen=None if best is None else best.origin,
                           seconds=time.perf_counter() - t0, skipped=skipped)
    return ExploreOutcome(u, report, warm)


def not_run(reason: str) -> ExploreOutcome:
    return ExploreOutcome(None, ExploreReport(ran=False, reason=reason), WarmupReport(ran=False, reason=reason))


def explore(problem, evaluator, checkpoints) -> ExploreOutcome:
    """Collective: phase 1 (``method="hybrid"``), or its report from a phase 2 checkpoint. Phase 2's
    kernels (``evaluator``'s) compile on a background thread meanwhile."""
    hc, opts = problem.comm, problem.options
    phase_2 = resumed(checkpoints, TRUST_REGION)
    if phase_2 is not None:           # phase 1 ended before that checkpoint: its report is in it
        values = phase_2.values
        return ExploreOutcome(None, ExploreReport(**values["explore"]), WarmupReport(**values["warmup"]))
    if opts.method != "hybrid":
        return not_run("method")
    # A sample of more than half the data costs about what the data cost: take all of it (phase 1 then
    # chooses on the fit's own cost, and phase 2 starts where the chosen candidate converged).
    whole = problem.local.n_points <= WHOLE_DATA * opts.explore_sample_points
    sample, sample_pass, own_kernels = _sample_and_passes(problem, opts.explore_sample_points, whole)

    def run_adam(u):
        return run_warmup(problem, hc.agree(PointEvaluator.for_problem, problem), u, checkpoints)

    if own_kernels:
        evaluator.compile_ahead(problem.u0)
    outcome = run_explore(problem, sample, sample_pass, run_adam)
    return outcome if whole else refine(problem, outcome)


def _sample_and_passes(problem, size: int, whole: bool = False):
    """Collective: a sample of ``size`` points (all of them with ``whole``) on every rank, the serial
    evaluator of its passes, and whether the sample has kernels of its own."""
    hc, local, f = problem.comm, problem.local, problem.model
    sample = gather_sample(hc, local, local.n_points if whole else size, problem.options.warmup_seed)
    # Every point of a grid source is read as the fit reads it, so phase 2's kernels serve phase 1 too.
    own_kernels = sample.coords is not None and not whole
    if own_kernels:
        # The sample's kernels are its own (IndexedX), so its chunks need not pad to the fit's size
        # (32768 sampled points in chunks of 65536 would do half their work twice).
        chunks = sample_chunks(sample, min(local.chunk_size, 1 << max(sample.size - 1, 1).bit_length()))
        sample_model, groups = IndexedX(f, sample.coords), sample_groups(problem.groups, sample, chunks)
    else:
        chunks = sample_chunks(sample, local.chunk_size, implicit=sample.coords is not None)
        sample_model = f
        groups = problem.groups if sample.coords is not None else None
    return sample, hc.agree(PassEvaluator.for_sample, problem, chunks, sample_model, groups), own_kernels


#: explore_refine_points="auto": the refining sample is this many times phase 1's ...
REFINE_FACTOR = 32
#: ... when the data hold at least this many times the refining sample.
REFINE_BELOW = 100


def refine_points(opts, n_points: int) -> int:
    """Points of the sample phase 1's winner is polished on before phase 2 (0: none)."""
    if opts.explore_refine_points != "auto":
        size = opts.explore_refine_points
        return size if opts.explore_sample_points < size < n_points // WHOLE_DATA else 0
    size = REFINE_FACTOR * opts.explore_sample_points
    return size if n_points >= REFINE_BELOW * size else 0


def refine(problem, outcome: ExploreOutcome) -> ExploreOutcome:
    """Collective: phase 1's winner polished by LM on a bigger sample (serially, on every rank), with
    phase 2's convergence test. At 10⁹ points the 32768-point sample leaves the start hundreds of the
    full data's errors from its minimum, and maps with few sampled short lags far off in contrast;
    each phase 2 iteration is a pass over all the data, each one here a pass over 1/1000 of it."""
    size = refine_points(problem.options, problem.local.n_points)
    if outcome.u is None or not size:
        return outcome
    hc, table = problem.comm, problem.table
    t0 = time.perf_counter()
    _, sample_pass, _ = _sample_and_passes(problem, size)
    try:
        runs = _gather(hc, lambda: run_trust_region(_serial(problem, sample_pass), sample_pass, outcome.u))
    except HpcfitError as exc:           # the same on every rank (_gather)
        table.line(f"phase 1: polishing on {size} points failed ({exc}); phase 2 starts from the chosen candidate")
        return outcome
    finally:
        sample_pass.close()
    out = runs[0]
    table.line(f"phase 1: polished on {size} points: cost {float(out.cost):.8e} after {out.n_iterations} "
               f"iterations, {out.status.name} ({time.perf_counter() - t0:.1f} s)")
    return outcome._replace(u=out.u)


def _serial(problem, sample_pass):
    """``problem`` over the sample of ``sample_pass``, alone on this rank and quiet, with the user's
    tolerances and iteration limit (no pass, time or checkpoint limits: those are the fit's)."""
    opts = problem.options
    return replace(problem, comm=Communicator(None), local=sample_pass.local, table=IterationTable(False),
                   options=replace(opts, max_nfev=None, max_time=None, checkpoint=None, resume=None))


def sample_groups(groups: GroupLayout | None, sample, chunks) -> GroupLayout | None:
    """The fit's group layout for phase 1's sample (sorted global indices, chunks of the fit's size):
    the same groups, the span of the sample's chunks. Block-sparse on a grid source only, where the
    sample's x holds the global indices."""
    if groups is None or sample.coords is None:
        return None
    at = groups.group_of(sample.indices)
    first = at[:: chunks.chunk_size]
    last = at[np.minimum(np.arange(first.size) * chunks.chunk_size + chunks.chunk_size, at.size) - 1]
    return replace(groups, span=int(np.max(last - first)) + 1)
