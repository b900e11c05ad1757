"""``hpcfit.curve_fit``: check the arguments, build the problem, run the phases, build the result.

Every check runs on every rank and is agreed collectively before the first data collective, so a
bad argument raises the same :class:`~hpcfit.errors.InputError` everywhere and never hangs.
"""
from __future__ import annotations

import inspect
import time
import warnings
from dataclasses import asdict, fields

import numpy as np

from .checkpoint.record import answer_options
from .checkpoint.session import CheckpointSession
from .comm import Communicator
from .data.arrays import ArraySource
from .errors import InputError, RankDeficientWarning
from .kernels.chunk import TRACE_COUNTS, model_output_shape
from .kernels.coords import implicit_model
from .kernels.evaluator import PassEvaluator
from .kernels.points import PointEvaluator
from .options import FitOptions, make_options
from .phases.covariance import covariance
from .phases.normalize import make_normalization
from .phases.trust_region import PHASE as TRUST_REGION, run_trust_region
from .phases.warmup import WarmupOutcome, not_run, run_warmup
from .report import IterationTable
from .result import FitResult, WarmupReport


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
    if np.any(lower >= upper):
        i = int(np.argmax(lower >= upper))
        raise InputError(f"`bounds`: each lower bound must be strictly less than its upper bound; "
                         f"parameter {i} has lower {float(lower[i])!r} >= upper {float(upper[i])!r}")
    outside = (p0 < lower) | (p0 > upper)
    if np.any(outside):
        i = int(np.argmax(outside))
        raise InputError(f"`p0` is outside the bounds: p0[{i}] = {float(p0[i])!r} is not in "
                         f"[{float(lower[i])!r}, {float(upper[i])!r}]")
    return p0, lower, upper


def _local_checks(f, source, p0, bounds, method, loss, f_scale, options):
    """Everything that can be checked without data or communication (local; raises InputError)."""
    if not hasattr(source, "open") or not hasattr(source, "check_arguments"):
        raise InputError(f"`source` must be a data source from hpcfit.data (ArraySource, HDF5Source); "
                         f"got {type(source).__name__}")
    source.check_arguments()
    if method is not None:              # None: the preset's method (hybrid by default)
        options = {**options, "method": method}
    opts = make_options(loss=loss, f_scale=f_scale, **options)
    p0, lower, upper = _check_parameters(f, p0, bounds)
    return opts, p0, lower, upper, make_normalization(opts.normalize, p0, lower, upper)


def _same_everywhere(opts: FitOptions, p0, lower, upper, absolute_sigma, source) -> dict:
    """What must be equal on every rank, by name (``verbose`` only matters on rank 0)."""
    values = {"p0": p0.tobytes(), "bounds": (lower.tobytes(), upper.tobytes()),
              "absolute_sigma": bool(absolute_sigma), "distribute": getattr(source, "distribute", None),
              "source": type(source).__name__}
    values.update({f.name: getattr(opts, f.name) for f in fields(opts) if f.name != "verbose"})
    return values


def curve_fit(f, xdata, ydata, p0=None, sigma=None, absolute_sigma=False, bounds=(-np.inf, np.inf), *,
              method: str | None = None, loss: str = "linear", f_scale: float = 1.0, comm=None,
              distribute: str = "global", **options) -> FitResult:
    """Fit ``f(x, *params)`` to ``ydata`` by streaming nonlinear least squares.

    A drop-in for :func:`scipy.optimize.curve_fit`: ``f`` is any JAX-traceable function (write it
    with ``jax.numpy``), the points axis of ``xdata`` is its last axis, ``sigma`` is 1-D, and
    ``popt, pcov = curve_fit(...)`` works. With ``comm`` (an mpi4py communicator) the fit is
    collective: ``distribute="global"`` takes each rank's part of the same full arrays,
    ``"local"`` fits the union of each rank's own arrays. Further keywords are
    :class:`~hpcfit.options.FitOptions` fields. Returns a :class:`~hpcfit.result.FitResult`,
    identical on every rank.
    """
    return fit(f, ArraySource(xdata, ydata, sigma, distribute=distribute), p0, absolute_sigma=absolute_sigma,
               bounds=bounds, method=method, loss=loss, f_scale=f_scale, comm=comm, **options)


def fit(f, source, p0=None, *, absolute_sigma=False, bounds=(-np.inf, np.inf), method: str | None = None,
        loss: str = "linear", f_scale: float = 1.0, comm=None, **options) -> FitResult:
    """Fit ``f(x, *params)`` to the points of a data source (:mod:`hpcfit.data`): in-memory
    arrays, or an HDF5 file streamed chunk by chunk with each rank reading only its own chunks.
    Arguments and result as :func:`curve_fit`; ``sigma`` and ``distribute`` belong to the source.
    """
    t_start = time.perf_counter()
    with Communicator(comm) as hc:
        opts, p0, lower, upper, norm = hc.agree(_local_checks, f, source, p0, bounds, method, loss, f_scale,
                                                options)
        hc.check_same(_same_everywhere(opts, p0, lower, upper, absolute_sigma, source),
                      "every rank must call the fit with the same p0, bounds, options and kind of source")
        p = p0.size
        evaluator = checkpoints = None
        try:
            local = source.open(hc, opts.chunk_size_for(p))
            if local.n_points <= p:                     # every rank knows the global n
                raise InputError(f"the fit needs more points than parameters: n = {local.n_points} points, "
                                 f"p = {p} parameters (n must be > p)")
            model = implicit_model(f, local)
            hc.agree(_check_model, model, local, p, opts)
            traces_before = dict(TRACE_COUNTS)
            evaluator = hc.agree(PassEvaluator, hc, local, f, opts.loss, opts.f_scale, norm.offset, norm.scale,
                                 opts.jacobian_mode)
            t_setup = time.perf_counter()
            lower_u, upper_u = norm.to_u(lower), norm.to_u(upper)
            u0 = np.clip(norm.to_u(p0), lower_u, upper_u)  # rounding of the map must not leave the box
            table = IterationTable(bool(opts.verbose) and hc.is_root)
            if opts.checkpoint is not None or opts.resume is not None:
                checkpoints = CheckpointSession(hc, opts, local, answer_options(
                    opts, p0=p0, lower=lower, upper=upper, absolute_sigma=absolute_sigma, model=f), table)
            resumed = getattr(checkpoints, "resumed", None)
            warm = not_run("method")
            if resumed is not None and resumed.phase == TRUST_REGION:
                warm = WarmupOutcome(None, WarmupReport(**resumed.values["warmup"]))
            elif opts.method == "hybrid":
                points = hc.agree(PointEvaluator, hc, local, f, opts.loss, opts.f_scale, norm.offset, norm.scale,
                                  opts.warmup_dtype, opts.warmup_batch_size, opts.warmup_seed)
                warm = run_warmup(points, u0, opts, norm, lower_u, upper_u, table, checkpoints)
            if checkpoints is not None:
                checkpoints.carry["warmup"] = asdict(warm.report)
            t_warm = time.perf_counter()
            outcome = run_trust_region(hc, evaluator, u0 if warm.u is None else warm.u, opts, norm, lower_u,
                                       upper_u, table, checkpoints)
        finally:
            if checkpoints is not None:
                checkpoints.close()
            if evaluator is not None:
                evaluator.close()
            if hasattr(source, "close"):
                source.close()
        t_solve = time.perf_counter()
        result = _finalize(f, outcome, norm, lower, upper, lower_u, upper_u, local, absolute_sigma, opts,
                           evaluator.stats, warm.report)
        t_end = time.perf_counter()
        stats = evaluator.stats
        table.line(f"{outcome.status.message} cost {outcome.cost:.8e} after {outcome.n_iterations} "
                   f"iterations ({stats.jacobian_passes} Jacobian + {stats.cost_passes} cost passes, "
                   f"{t_end - t_start:.3f} s)")
        result.timings.update({"setup": t_setup - t_start, "phase1": t_warm - t_setup, "phase2": t_solve - t_warm,
                               "covariance": t_end - t_solve, "total": t_end - t_start,
                               "jacobian_passes": stats.jacobian_seconds, "cost_passes": stats.cost_seconds,
                               "reductions": stats.reduction_seconds})
        result.info.update({
            "chunk_size": local.chunk_size, "n_chunks": local.n_leaves, "n_ranks": hc.size,
            "source": local.describe, "normalize": norm.strategy, "linear_solves": outcome.solvers,
            "jacobian_points_per_second": _rate(local.n_points, stats.jacobian_passes, stats.jacobian_seconds),
            "cost_points_per_second": _rate(local.n_points, stats.cost_passes, stats.cost_seconds)})
        if checkpoints is not None:
            result.info["checkpoint"] = checkpoints.summary()
        result.compile_counts.update({k: TRACE_COUNTS[k] - traces_before.get(k, 0)
                                      for k in ("jacobian", "cost", "point_gradient", "point_cost")})
        return result


def _finalize(f, outcome, norm, lower, upper, lower_u, upper_u, local, absolute_sigma, opts, stats,
              warmup) -> FitResult:
    """Phase 3: de-normalize, covariance, active set; warn about rank deficiency."""
    p = lower.size
    cov = covariance(outcome.jtj, norm.scale, outcome.cost, local.n_points, absolute_sigma, opts.cov_rcond)
    active = np.where(outcome.u <= lower_u, -1, np.where(outcome.u >= upper_u, 1, 0))
    # The affine map can round a bound by an ulp: report active parameters exactly on it.
    popt = np.where(active < 0, lower, np.where(active > 0, upper, np.clip(norm.to_theta(outcome.u), lower, upper)))
    rank_deficient = cov.rank < p
    if rank_deficient:
        warnings.warn(f"JᵀWJ is rank deficient at the solution (rank {cov.rank} of {p}); parameters "
                      f"{cov.null_parameters} are not determined by the data. pcov is a pseudo-inverse "
                      "(taken with unit-diagonal scaling) and carries no variance along the undetermined "
                      "directions.", RankDeficientWarning, stacklevel=3)
    return FitResult(
        popt=popt, pcov=cov.pcov, perr=np.sqrt(np.maximum(np.diag(cov.pcov), 0.0)),
        cost=outcome.cost, chi2=2.0 * outcome.cost, dof=local.n_points - p,
        success=outcome.status.success, status=outcome.status, message=outcome.status.message,
        n_iterations=outcome.n_iterations, nfev=stats.cost_passes + stats.jacobian_passes,
        njev=stats.jacobian_passes, history=outcome.history, timings={},
        active_mask=active, rank=cov.rank, rank_deficient=rank_deficient, n_points=local.n_points, n_params=p,
        method=opts.method, loss=opts.loss, grad=outcome.jtr / norm.scale, optimality=outcome.optimality,
        info={"null_parameters": cov.null_parameters}, names=_parameter_names(f, p), warmup=warmup)


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
