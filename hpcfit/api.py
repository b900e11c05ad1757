"""``hpcfit.curve_fit``: check the arguments, build the problem, run the phases, build the result.

Every check runs on every rank and is agreed collectively before the first data collective, so a
bad argument raises the same :class:`~hpcfit.errors.InputError` everywhere and never hangs.
"""
from __future__ import annotations

import hashlib
import inspect
import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, fields, replace
from functools import partial

import numpy as np

from .checkpoint.record import answer_options
from .checkpoint.session import CheckpointSession
from .checkpoint.signals import StopSignals
from .comm import Communicator
from .data.arrays import ArraySource
from .data.sample import gather_sample, sample_chunks
from .errors import InputError, RankDeficientWarning
from .groups import GroupLayout, declared_groups, kernel_columns, resolve_groups
from .kernels.chunk import TRACE_COUNTS, model_fingerprint, model_output_shape, residuals
from .kernels.coords import IndexedX, implicit_model
from .kernels.evaluator import PassEvaluator
from .kernels.points import PointEvaluator
from .models.wrappers import FixedParameters, UserJacobian
from .options import FitOptions, make_options
from .phases.covariance import covariance
from .phases.explore import WHOLE_DATA, ExploreOutcome, not_run as not_explored, run_explore
from .phases.normalize import make_normalization
from .phases.scales import data_scales
from .phases.trust_region import PHASE as TRUST_REGION, run_trust_region
from .phases.warmup import run_warmup
from .problem import Problem
from .report import IterationTable
from .result import ExploreReport, FitResult, WarmupReport

#: scipy's finite-difference choices for ``jac``: accepted, and replaced by exact autodiff.
SCIPY_JAC_STRINGS = ("2-point", "3-point", "cs")


def _n_params_from_signature(f) -> int:
    try:
        params = list(inspect.signature(f).parameters.values())
    except (TypeError, ValueError) as exc:
        raise InputError(f"`p0` is None and the number of parameters of `f` cannot be read from its "
                         f"signature ({exc}); pass p0") from None
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params) or len(params) < 2:
        raise InputError("`p0` is None and `f` does not name its parameters (it must be f(x, a, b, ...)); pass p0")
    return len(params) - 1


def _check_parameters(f, p0, bounds):
    """p0 and bounds as float arrays, checked against each other (local, may raise InputError)."""
    if not callable(f):
        raise InputError(f"`f` must be a callable f(x, *params); got {type(f).__name__}")
    if p0 is None:
        p0 = np.ones(_n_params_from_signature(f))
    try:
        p0 = np.atleast_1d(np.asarray(p0, dtype=float))
    except (TypeError, ValueError) as exc:
        raise InputError(f"`p0` must be a sequence of numbers: {exc}") from None
    if p0.ndim != 1 or p0.size == 0:
        raise InputError(f"`p0` must be 1-D with one value per parameter; got shape {p0.shape}")
    if not np.all(np.isfinite(p0)):
        raise InputError(f"`p0` must be finite; got {p0.tolist()}")
    p = p0.size
    if hasattr(bounds, "lb") and hasattr(bounds, "ub"):      # scipy.optimize.Bounds
        bounds = (bounds.lb, bounds.ub)
    try:
        lower, upper = bounds
    except (TypeError, ValueError):
        raise InputError("`bounds` must be a 2-tuple (lower, upper) of scalars or sequences of "
                         f"length {p}, or a scipy.optimize.Bounds; got {bounds!r}") from None
    out = []
    for name, b in (("lower", lower), ("upper", upper)):
        try:
            arr = np.asarray(b, dtype=float)
        except (TypeError, ValueError) as exc:
            raise InputError(f"`bounds` {name} must be a number or a sequence of numbers: {exc}") from None
        if arr.ndim == 0:
            arr = np.full(p, float(arr))
        if arr.shape != (p,):
            raise InputError(f"`bounds` {name} must be a scalar or have length {p} (the length of p0); "
                             f"got shape {arr.shape}")
        if np.any(np.isnan(arr)):
            raise InputError(f"`bounds` {name} contains NaN")
        out.append(arr)
    lower, upper = out
    if np.any(lower > upper):
        i = int(np.argmax(lower > upper))
        raise InputError(f"`bounds`: each lower bound must be less than or equal to its upper bound (equal bounds "
                         f"fix the parameter); parameter {i} has lower {float(lower[i])!r} > upper "
                         f"{float(upper[i])!r}")
    if np.any((lower == upper) & ~np.isfinite(lower)):
        i = int(np.argmax((lower == upper) & ~np.isfinite(lower)))
        raise InputError(f"`bounds`: parameter {i} has equal infinite bounds {float(lower[i])!r}; equal bounds fix a "
                         "parameter at a finite value")
    outside = (p0 < lower) | (p0 > upper)
    if np.any(outside):
        i = int(np.argmax(outside))
        raise InputError(f"`p0` is outside the bounds: p0[{i}] = {float(p0[i])!r} is not in "
                         f"[{float(lower[i])!r}, {float(upper[i])!r}]")
    return p0, lower, upper


def _local_checks(f, source, p0, bounds, method, loss, f_scale, jac, options):
    """Everything that can be checked without data or communication (local; raises InputError).

    Returns the options, p0 and bounds, the mask of parameters fixed by equal bounds, and the
    model the kernels will call (``f``, or ``f`` with the user's Jacobian).
    """
    if not hasattr(source, "open") or not hasattr(source, "check_arguments"):
        raise InputError(f"`source` must be a data source from hpcfit.data (ArraySource, HDF5Source); "
                         f"got {type(source).__name__}")
    source.check_arguments()
    if method is not None:              # None: the preset's method (hybrid by default)
        options = {**options, "method": method}
    opts = make_options(loss=loss, f_scale=f_scale, **options)
    p0, lower, upper = _check_parameters(f, p0, bounds)
    for name in ("explore_starts", "explore_scan"):
        rows = getattr(opts, name)
        if rows is not None and any(len(row) != p0.size for row in rows):
            raise InputError(f"`{name}`: every start must have {p0.size} values (the length of p0); got "
                             f"lengths {sorted({len(row) for row in rows})}")
    make_normalization(opts.normalize, p0, lower, upper)
    return opts, p0, lower, upper, lower == upper, _with_jac(f, jac, p0.size)


def _with_jac(f, jac, p: int):
    """The model with the user's ``jac``: None or a scipy finite-difference name keep ``f`` (its
    derivatives are exact by autodiff); a callable ``jac(x, *params) -> (n, p)`` is used."""
    if jac is None or (isinstance(jac, str) and jac in SCIPY_JAC_STRINGS):
        return f
    if not callable(jac):
        raise InputError(f"`jac` must be None, one of {SCIPY_JAC_STRINGS} (hpcfit's autodiff derivatives are exact "
                         f"either way) or a callable jac(x, *params) returning the (n, p) Jacobian; got {jac!r}")
    names = _parameter_names(f, p)
    return UserJacobian(f, jac, None if names is None else tuple(names))


def _model_identity(f) -> str:
    """What names the model the same way on every rank, cheaply: its type and qualified name, and the
    bytes of its code when it is a plain function (two different fits never pair up across ranks)."""
    code = getattr(f, "__code__", None)
    if code is None:
        return f"{type(f).__qualname__}:{getattr(f, '__qualname__', '')}"
    consts = repr(tuple(c for c in code.co_consts if not inspect.iscode(c)))     # code objects print addresses
    digest = hashlib.sha256(code.co_code + consts.encode()).hexdigest()[:16]
    return f"{type(f).__qualname__}:{getattr(f, '__qualname__', '')}:{digest}"


def _same_everywhere(opts: FitOptions, p0, lower, upper, absolute_sigma, source, model) -> dict:
    """What must be equal on every rank, by name (``verbose`` only matters on rank 0)."""
    values = {"p0": p0.tobytes(), "bounds": (lower.tobytes(), upper.tobytes()), "model": _model_identity(model),
              "absolute_sigma": bool(absolute_sigma), "distribute": getattr(source, "distribute", None),
              "source": type(source).__name__}
    values.update({f.name: getattr(opts, f.name) for f in fields(opts) if f.name != "verbose"})
    return values


def curve_fit(f, xdata, ydata, p0=None, sigma=None, absolute_sigma=False, bounds=(-np.inf, np.inf), *,
              method: str | None = None, loss: str = "linear", f_scale: float = 1.0, comm=None,
              distribute: str = "global", full_output: bool = False, nan_policy: str | None = "raise",
              jac=None, maxfev: int | None = None, **options):
    """Fit ``f(x, *params)`` to ``ydata`` by streaming nonlinear least squares.

    A drop-in for :func:`scipy.optimize.curve_fit`: ``f`` is any JAX-traceable function (write it
    with ``jax.numpy``), the points axis of ``xdata`` is its last axis, ``sigma`` is 1-D, and
    ``popt, pcov = curve_fit(...)``, ``curve_fit(...)[0]`` work. ``full_output=True`` returns
    ``(popt, pcov, infodict, mesg, ier)`` as scipy does; ``nan_policy="omit"`` drops points with a
    non-finite x, y or sigma (counted in ``result.info["n_omitted"]``); ``jac`` is a callable
    ``jac(x, *params)`` written with jax.numpy, or scipy's finite-difference names (hpcfit's
    derivatives are exact either way); ``maxfev`` is ``max_nfev``. Equal lower and upper bounds fix
    a parameter. With ``comm`` (an mpi4py communicator) the fit is collective:
    ``distribute="global"`` takes each rank's part of the same full arrays, ``"local"`` fits the
    union of each rank's own arrays. Further keywords are :class:`~hpcfit.options.FitOptions`
    fields. Returns a :class:`~hpcfit.result.FitResult`, identical on every rank.
    """
    if maxfev is not None:
        options = {**options, "max_nfev": maxfev}
    source = ArraySource(xdata, ydata, sigma, distribute=distribute, nan_policy=nan_policy)
    result = fit(f, source, p0, absolute_sigma=absolute_sigma, bounds=bounds, method=method, loss=loss,
                 f_scale=f_scale, comm=comm, jac=jac, **options)
    if not full_output:
        return result
    return (result.popt, result.pcov, {"nfev": result.nfev, "njev": result.njev,
                                      "fvec": residuals(f, *source.finite_arrays(), result.popt)},
            result.message, int(result.status) if result.success else 5)


def fit(f, source, p0=None, *, absolute_sigma=False, bounds=(-np.inf, np.inf), method: str | None = None,
        loss: str = "linear", f_scale: float = 1.0, comm=None, jac=None, **options) -> FitResult:
    """Fit ``f(x, *params)`` to the points of a data source (:mod:`hpcfit.data`): in-memory
    arrays, or an HDF5 file streamed chunk by chunk with each rank reading only its own chunks.
    Arguments and result as :func:`curve_fit`; ``sigma`` and ``distribute`` belong to the source.
    """
    t_start = time.perf_counter()
    with Communicator(comm) as hc:
        opts, p0, lower, upper, fixed, model = hc.agree(_local_checks, f, source, p0, bounds, method, loss,
                                                        f_scale, jac, options)
        hc.check_same(_same_everywhere(opts, p0, lower, upper, absolute_sigma, source, model),
                      "every rank must call the fit with the same p0, bounds, options and kind of source")
        if not fixed.any():
            with _stop_signals(hc, opts) as stops:
                return _run(hc, model, source, opts, p0, lower, upper, absolute_sigma, t_start, stops)
    return _fit_free_parameters(model, source, p0, lower, upper, fixed, opts, absolute_sigma, comm)


def _stop_signals(hc, opts):
    """The fit's stop requests: Ctrl-C under MPI or with a checkpoint (serially without one, Python's
    own KeyboardInterrupt is already prompt), and the batch system's signals with a checkpoint."""
    if opts.checkpoint is None and hc.size == 1:
        return nullcontext(None)
    return StopSignals(preempt=opts.checkpoint is not None, abort=hc.abort_job if hc.size > 1 else None)


def _run(hc, f, source, opts, p0, lower, upper, absolute_sigma, t_start, stops=None) -> FitResult:
    """Collective: open the data, build the Problem, run phases 1–3."""
    p = p0.size
    norm = make_normalization(opts.normalize, p0, lower, upper)
    evaluator = checkpoints = None
    try:
        local = source.open(hc, opts.chunk_size_for(_kernel_width(f, p, opts)))
        if local.n_points <= p:                     # every rank knows the global n
            raise InputError(f"the fit needs more points than parameters: n = {local.n_points} points, "
                             f"p = {p} parameters (n must be > p)")
        hc.agree(_check_model, implicit_model(f, local), local, p, opts)
        traces_before = dict(TRACE_COUNTS)
        weight_scale, norm = data_scales(hc, local, f, opts.normalize, norm, p0, lower, upper)
        groups = hc.agree(_group_layout, f, local, p, opts)
        evaluator = hc.agree(PassEvaluator, hc, local, f, opts.loss, opts.f_scale, norm.offset, norm.scale,
                             opts.jacobian_mode, weight_scale, groups)
        evaluator.show_progress = bool(opts.verbose) and hc.is_root
        t_setup = time.perf_counter()
        problem = Problem(hc, local, f, opts, norm, p0, lower, upper, norm.to_u(lower), norm.to_u(upper),
                          bool(absolute_sigma), IterationTable(bool(opts.verbose) and hc.is_root), weight_scale,
                          groups)
        if weight_scale != 1.0:
            problem.table.line(f"the data (y/sigma) are of order 2^{-math.frexp(weight_scale)[1] + 1}: residuals are "
                               f"scaled by 2^{math.frexp(weight_scale)[1] - 1} inside the fit (exact); the table "
                               "shows scaled costs, the result is in your units")
        if opts.checkpoint is not None or opts.resume is not None:
            checkpoints = CheckpointSession(hc, opts, local, answer_options(
                opts, p0=p0, lower=lower, upper=upper, absolute_sigma=absolute_sigma, model=f,
                model_hash=hc.agree(model_fingerprint, f if local.coords is None else IndexedX(f, local.coords),
                                    local.x_shape[:-1] + (8,) if local.coords is None else (8,), p,
                                    implicit=local.coords is not None)), problem.table, stops)
            checkpoints.track(evaluator)
        explored = _explore(problem, checkpoints, evaluator)
        if checkpoints is not None:
            checkpoints.carry["warmup"] = asdict(explored.warmup)
            checkpoints.carry["explore"] = asdict(explored.report)
        t_warm = time.perf_counter()
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
    t_solve = time.perf_counter()
    result = _finalize(problem, outcome, evaluator.stats, explored)
    t_end = time.perf_counter()
    stats = evaluator.stats
    problem.table.line(f"{outcome.status.message} cost {outcome.cost:.8e} after {outcome.n_iterations} "
                       f"iterations ({stats.jacobian_passes} Jacobian + {stats.cost_passes} cost passes, "
                       f"{t_end - t_start:.3f} s)")
    if not result.trustworthy:
        problem.table.line("NOT TRUSTWORTHY: " + "; ".join(result.trust_issues))
    result.timings.update({"setup": t_setup - t_start, "phase1": t_warm - t_setup, "phase2": t_solve - t_warm,
                           "covariance": t_end - t_solve, "total": t_end - t_start,
                           "jacobian_passes": stats.jacobian_seconds, "cost_passes": stats.cost_seconds,
                           "reductions": stats.reduction_seconds, "reads": stats.read_seconds})
    result.info.update({
        "chunk_size": local.chunk_size, "n_chunks": local.n_leaves, "n_ranks": hc.size,
        "source": local.describe, "normalize": norm.strategy, "linear_solves": outcome.solvers,
        "n_omitted": _omitted(hc, source), "residual_scale": problem.weight_scale,
        "jacobian_points_per_second": _rate(local.n_points, stats.jacobian_passes, stats.jacobian_seconds),
        "cost_points_per_second": _rate(local.n_points, stats.cost_passes, stats.cost_seconds)})
    if checkpoints is not None:
        result.info["checkpoint"] = checkpoints.summary()
    result.compile_counts.update({k: TRACE_COUNTS[k] - traces_before.get(k, 0)
                                  for k in ("jacobian", "cost", "point_gradient", "point_cost")})
    return result


def _omitted(hc, source) -> int:
    """Collective: points dropped by ``nan_policy="omit"`` over all ranks."""
    mine = int(getattr(source, "n_omitted", 0))
    if getattr(source, "distribute", None) == "local":
        return int(sum(hc.allgather(mine)))
    return mine


def _explore(problem: Problem, checkpoints, evaluator) -> ExploreOutcome:
    """Collective: phase 1 (``method="hybrid"``), or its report from a phase 2 checkpoint. Phase 2's
    kernels (``evaluator``'s) compile on a background thread meanwhile."""
    hc, opts = problem.comm, problem.options
    resumed = getattr(checkpoints, "resumed", None)
    if resumed is not None and resumed.phase == TRUST_REGION:
        values = resumed.values
        return ExploreOutcome(None, ExploreReport(**values["explore"]), WarmupReport(**values["warmup"]))
    if opts.method != "hybrid":
        return not_explored("method")
    local, norm, f = problem.local, problem.norm, problem.model
    # A sample of more than half the data costs about what the data cost: take all of it (phase 1 then
    # chooses on the fit's own cost, and phase 2 starts where the chosen candidate converged).
    whole = local.n_points <= WHOLE_DATA * opts.explore_sample_points
    sample = gather_sample(hc, local, local.n_points if whole else opts.explore_sample_points, opts.warmup_seed)
    # Every point of a grid source is read as the fit reads it, so phase 2's kernels serve phase 1 too.
    own_kernels = sample.coords is not None and not whole
    if own_kernels:
        # The sample's kernels are its own (IndexedX), so its chunks need not pad to the fit's size
        # (32768 sampled points in chunks of 65536 would do half their work twice).
        chunks = sample_chunks(sample, min(local.chunk_size, 1 << max(sample.size - 1, 1).bit_length()))
        sample_model, groups = IndexedX(f, sample.coords), _sample_groups(problem.groups, sample, chunks)
    else:
        chunks = sample_chunks(sample, local.chunk_size, implicit=sample.coords is not None)
        sample_model = f
        groups = problem.groups if sample.coords is not None else None
    sample_pass = hc.agree(PassEvaluator, Communicator(None), chunks, sample_model, opts.loss, opts.f_scale,
                           norm.offset, norm.scale, opts.jacobian_mode, problem.weight_scale, groups)

    def run_adam(u):
        points = hc.agree(PointEvaluator, hc, local, f, opts.loss, opts.f_scale, norm.offset, norm.scale,
                          opts.warmup_dtype, opts.warmup_batch_size, opts.warmup_seed, problem.weight_scale)
        return run_warmup(problem, points, u, checkpoints)

    if own_kernels:
        evaluator.compile_ahead(problem.u0)
    return run_explore(problem, sample, sample_pass, run_adam)


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


def _fit_free_parameters(f, source, p0, lower, upper, fixed, opts, absolute_sigma, comm) -> FitResult:
    """Equal lower and upper bounds fix a parameter: fit the others, report the fixed one with perr 0."""
    free = ~fixed
    if not free.any():
        raise InputError("every parameter is fixed (lower bound == upper bound for all of them): nothing to fit")
    names = _parameter_names(f, p0.size)
    reduced = FixedParameters(f, tuple(fixed.tolist()), tuple(p0.tolist()),
                              None if names is None else tuple(n for n, k in zip(names, free) if k))
    kwargs = asdict(opts)
    kwargs["parameter_groups"] = None     # the groups' parameter order does not hold for the free ones
    for name in ("explore_starts", "explore_scan"):
        if getattr(opts, name) is not None:
            kwargs[name] = tuple(tuple(v for v, k in zip(row, free) if k) for row in getattr(opts, name))
    res = fit(reduced, source, p0[free], absolute_sigma=absolute_sigma, bounds=(lower[free], upper[free]), comm=comm,
              **kwargs)
    p = p0.size
    idx = np.flatnonzero(free)
    popt = p0.copy()
    popt[idx] = res.popt
    pcov = np.zeros((p, p))
    pcov[np.ix_(idx, idx)] = res.pcov
    perr, grad, active = np.zeros(p), np.zeros(p), np.zeros(p, dtype=int)
    perr[idx], grad[idx], active[idx] = res.perr, res.grad, res.active_mask
    return replace(res, popt=popt, pcov=pcov, perr=perr, grad=grad, active_mask=active, n_params=p,
                   dof=res.n_points - int(free.sum()), names=names, fixed=fixed.copy(), model=f,
                   info={**res.info, "fixed_parameters": [int(i) for i in np.flatnonzero(fixed)]})


def _finalize(problem: Problem, outcome, stats, explored: ExploreOutcome) -> FitResult:
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
    names = _parameter_names(problem.model, p)
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
    on_bound = [f"{label[i]} is on its {'lower' if a < 0 else 'upper'} bound" for i, a in enumerate(active) if a]
    issues += on_bound
    return FitResult(
        popt=popt, pcov=cov.pcov, perr=cov.perr,
        cost=outcome.cost, chi2=2.0 * outcome.cost, dof=problem.local.n_points - p,
        success=outcome.status.success, status=outcome.status, message=outcome.status.message,
        n_iterations=outcome.n_iterations, nfev=stats.cost_passes + stats.jacobian_passes,
        njev=stats.jacobian_passes, history=outcome.history, timings={},
        active_mask=active, rank=cov.rank, rank_deficient=cov.rank < p, n_points=problem.local.n_points, n_params=p,
        method=opts.method, loss=opts.loss, grad=outcome.jtr / norm.scale, optimality=outcome.optimality,
        info={"null_parameters": cov.null_parameters, "undetermined": undetermined}, names=names,
        warmup=explored.warmup, explore=explored.report, trustworthy=not issues, trust_issues=tuple(issues),
        fixed=np.zeros(p, dtype=bool), model=problem.model)


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


def _parameter_names(f, p: int) -> list[str] | None:
    """The model's ``parameter_names``, or the names after x in f's signature, if there are p."""
    names = getattr(f, "parameter_names", None)
    if names is None:
        try:
            params = list(inspect.signature(f).parameters.values())[1:]
        except (TypeError, ValueError):
            return None
        if any(q.kind not in (q.POSITIONAL_ONLY, q.POSITIONAL_OR_KEYWORD) for q in params):
            return None
        names = [q.name for q in params]
    return list(names) if len(names) == p else None


def _rate(n_points: int, passes: int, seconds: float) -> float:
    return n_points * passes / seconds if seconds > 0 else float("nan")


def _sample_groups(groups: GroupLayout | None, sample, chunks) -> GroupLayout | None:
    """The fit's group layout for phase 1's sample (sorted global indices, chunks of the fit's size):
    the same groups, the span of the sample's chunks. Block-sparse on a grid source only, where the
    sample's x holds the global indices."""
    if groups is None or sample.coords is None:
        return None
    at = groups.group_of(sample.indices)
    first = at[:: chunks.chunk_size]
    last = at[np.minimum(np.arange(first.size) * chunks.chunk_size + chunks.chunk_size, at.size) - 1]
    return replace(groups, span=int(np.max(last - first)) + 1)


def _kernel_width(f, p: int, opts) -> int:
    return kernel_columns(declared_groups(getattr(f, "parameter_groups", None), opts.parameter_groups), p)


def _group_layout(f, local, p: int, opts) -> GroupLayout | None:
    """The block-sparse layout of this fit's Jacobian passes (hpcfit.groups), or None for dense ones.

    "auto" takes the model's own ``parameter_groups`` where its groups can be placed on the points
    (a grid source, or no per-group parameters) and forward mode is asked for; a declaration the
    user gave must hold, or the error says why.
    """
    groups = declared_groups(getattr(f, "parameter_groups", None), opts.parameter_groups)
    if opts.parameter_groups == "auto":
        if groups is None or opts.jacobian_mode != "forward" or (
                groups.per_group and groups.group_sizes is None and local.coords is None):
            return None
    elif groups is None:
        return None
    elif opts.jacobian_mode != "forward":
        raise InputError(f"`parameter_groups` (block-sparse Jacobian passes) works with jacobian_mode='forward'; got "
                         f"{opts.jacobian_mode!r}")
    return resolve_groups(groups, p, local.n_points, local.coords, local.chunk_size)


def _check_model(model, local, p: int, opts) -> None:
    """The model traces with p parameters on one chunk and returns one value per point."""
    if local.coords is not None and opts.jacobian_mode != "forward":
        raise InputError(f"jacobian_mode={opts.jacobian_mode!r} needs explicit x; sources with implicit "
                         "coordinates support jacobian_mode='forward' only")
    try:
        shape = model_output_shape(model, local.x_shape, p, implicit=local.coords is not None)
    except Exception as exc:  # noqa: BLE001 - any failure to trace the model is the user's to see
        raise InputError(f"calling the model f(x, *p0) with len(p0) = {p} parameters failed while tracing it "
                         f"with JAX: {type(exc).__name__}: {exc}. f must be JAX-traceable (use jax.numpy) and "
                         f"take x followed by one argument per entry of p0") from None
    if shape != (local.chunk_size,):
        raise InputError(f"the model f must return one value per point: for a chunk of {local.chunk_size} points "
                         f"it must return shape ({local.chunk_size},), but it returned shape {shape}")


__all__ = ["curve_fit", "fit"]
