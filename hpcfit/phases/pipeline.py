"""The phases in order: build the problem, explore (phase 1), Gauss–Newton/LM on all the data
(phase 2), finalize (phase 3); then the result, built once. Collective."""
from __future__ import annotations

import time
from dataclasses import asdict
from functools import partial

import numpy as np

from ..checkpoint.record import answer_options
from ..checkpoint.session import CheckpointSession
from ..errors import InputError
from ..kernels.chunk import TRACE_COUNTS, model_fingerprint
from ..kernels.coords import IndexedX
from ..kernels.evaluator import PassEvaluator
from ..problem import Problem
from ..result import FitResult
from .explore import ExploreOutcome, explore
from .finalize import finalize
from .setup import build_problem
from .trust_region import run_trust_region

#: Kernel kinds whose compilations a result counts.
COMPILED = ("jacobian", "cost", "point_gradient", "point_cost")


def run_phases(hc, source, args, absolute_sigma: bool, t_start: float, stops=None) -> FitResult:
    """Collective: open the data, build the Problem, run phases 1–3, build the result.
    ``args`` is :class:`hpcfit.arguments.Arguments`; ``stops`` the fit's stop requests (signals)."""
    evaluator = checkpoints = None
    try:
        problem = build_problem(hc, source, args, absolute_sigma)
        traces_before = dict(TRACE_COUNTS)
        evaluator = hc.agree(PassEvaluator.for_problem, problem)
        evaluator.show_progress = bool(problem.options.verbose) and hc.is_root
        t_setup = time.perf_counter()
        checkpoints = _checkpoints(problem, stops)
        if checkpoints is not None:
            checkpoints.track(evaluator)
        explored = explore(problem, evaluator, checkpoints)
        if checkpoints is not None:
            checkpoints.carry["warmup"] = asdict(explored.warmup)
            checkpoints.carry["explore"] = asdict(explored.report)
        t_explored = time.perf_counter()
        outcome = _solve(problem, evaluator, explored, checkpoints)
        if checkpoints is not None:
            checkpoints.finish()
    finally:
        if checkpoints is not None:
            checkpoints.close()
        if evaluator is not None:
            evaluator.close()
        if hasattr(source, "close"):
            source.close()
    t_solved = time.perf_counter()
    solution = finalize(problem, outcome)
    t_end = time.perf_counter()
    stats, local, opts = evaluator.stats, problem.local, problem.options
    outcome, cov, p = solution.outcome, solution.cov, problem.n_params
    problem.table.line(f"{outcome.status.message} cost {outcome.cost:.8e} after {outcome.n_iterations} "
                       f"iterations ({stats.jacobian_passes} Jacobian + {stats.cost_passes} cost passes, "
                       f"{t_end - t_start:.3f} s)")
    if solution.issues:
        problem.table.line("NOT TRUSTWORTHY: " + "; ".join(solution.issues))
    info = {"null_parameters": cov.null_parameters, "undetermined": solution.undetermined,
            "chunk_size": local.chunk_size, "n_chunks": local.n_leaves, "n_ranks": hc.size,
            "source": local.describe, "normalize": problem.norm.strategy, "linear_solves": outcome.solvers,
            "n_omitted": _omitted(hc, source), "residual_scale": problem.weight_scale,
            "jacobian_points_per_second": _rate(local.n_points, stats.jacobian_passes, stats.jacobian_seconds),
            "cost_points_per_second": _rate(local.n_points, stats.cost_passes, stats.cost_seconds)}
    if checkpoints is not None:
        info["checkpoint"] = checkpoints.summary()
    timings = {"setup": t_setup - t_start, "phase1": t_explored - t_setup, "phase2": t_solved - t_explored,
               "covariance": t_end - t_solved, "total": t_end - t_start,
               "jacobian_passes": stats.jacobian_seconds, "cost_passes": stats.cost_seconds,
               "reductions": stats.reduction_seconds, "reads": stats.read_seconds}
    return FitResult(
        popt=solution.popt, pcov=cov.pcov, perr=cov.perr,
        cost=outcome.cost, chi2=2.0 * outcome.cost, dof=local.n_points - p,
        success=outcome.status.success, status=outcome.status, message=outcome.status.message,
        n_iterations=outcome.n_iterations, nfev=stats.cost_passes + stats.jacobian_passes,
        njev=stats.jacobian_passes, history=outcome.history, timings=timings,
        active_mask=solution.active, rank=cov.rank, rank_deficient=cov.rank < p, n_points=local.n_points, n_params=p,
        method=opts.method, loss=opts.loss, grad=outcome.jtr / problem.norm.scale, optimality=outcome.optimality,
        info=info, names=solution.names, warmup=explored.warmup, explore=explored.report,
        trustworthy=not solution.issues, trust_issues=solution.issues, fixed=np.zeros(p, dtype=bool),
        model=problem.model, compile_counts={k: TRACE_COUNTS[k] - traces_before.get(k, 0) for k in COMPILED})


def _checkpoints(problem: Problem, stops) -> CheckpointSession | None:
    """Collective: the fit's checkpoint session (writing, and resuming from a checkpoint that
    answers the same question), or None without ``checkpoint``/``resume``."""
    hc, opts, local, f = problem.comm, problem.options, problem.local, problem.model
    if opts.checkpoint is None and opts.resume is None:
        return None
    implicit = local.coords is not None
    model_hash = hc.agree(model_fingerprint, IndexedX(f, local.coords) if implicit else f,
                          (8,) if implicit else local.x_shape[:-1] + (8,), problem.n_params, implicit=implicit)
    answer = answer_options(opts, p0=problem.p0, lower=problem.lower, upper=problem.upper,
                            absolute_sigma=problem.absolute_sigma, model=f, model_hash=model_hash)
    return CheckpointSession(hc, opts, local, answer, problem.table, stops)


def _solve(problem: Problem, evaluator, explored: ExploreOutcome, checkpoints):
    """Collective: phase 2 from phase 1's choice; if the full data's derivatives are not finite
    there (the sample missed the points that make them so), from p0 instead."""
    run = partial(run_trust_region, problem, evaluator, checkpoints=checkpoints)
    if explored.u is None or np.array_equal(explored.u, problem.u0):
        return run(problem.u0, start_label=f"at p0 = {problem.p0.tolist()} (phase 2)")
    theta = np.clip(problem.norm.to_theta(explored.u), problem.lower, problem.upper)
    try:
        return run(explored.u, start_label=f"at the start phase 1 chose (from {explored.report.chosen}: "
                                           f"θ = {theta.tolist()}; phase 2)")
    except InputError as exc:
        problem.table.line(f"phase 2: {exc}; starting from p0 instead")
        return run(problem.u0, start_label=f"at p0 = {problem.p0.tolist()} (phase 2)")


def _omitted(hc, source) -> int:
    """Collective: points dropped by ``nan_policy="omit"`` over all ranks."""
    mine = int(getattr(source, "n_omitted", 0))
    if getattr(source, "distribute", None) == "local":
        return int(sum(hc.allgather(mine)))
    return mine


def _rate(n_points: int, passes: int, seconds: float) -> float:
    return n_points * passes / seconds if seconds > 0 else float("nan")
