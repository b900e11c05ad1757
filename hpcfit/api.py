"""``hpcfit.curve_fit`` and ``hpcfit.fit``: check the arguments (:mod:`hpcfit.arguments`), then run
the phases (:mod:`hpcfit.phases.pipeline`), which build the problem and the result.

Every check runs on every rank and is agreed collectively before the first data collective, so a
bad argument raises the same :class:`~hpcfit.errors.InputError` everywhere and never hangs.
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import asdict, replace

import numpy as np

from .arguments import check_arguments, parameter_names, same_everywhere
from .checkpoint.signals import StopSignals
from .comm import Communicator
from .data.arrays import ArraySource
from .errors import InputError
from .kernels.chunk import residuals
from .models.wrappers import FixedParameters
from .phases.pipeline import run_phases
from .result import FitResult
from .threads import one_blas_thread


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
    with one_blas_thread(), Communicator(comm) as hc:
        args = hc.agree(check_arguments, f, source, p0, bounds, method, loss, f_scale, jac, options)
        hc.check_same(same_everywhere(args.options, args.p0, args.lower, args.upper, absolute_sigma, source, args.model),
                      "every rank must call the fit with the same p0, bounds, options and kind of source")
        if not args.fixed.any():
            with _stop_signals(hc, args.options) as stops:
                return run_phases(hc, source, args, absolute_sigma, t_start, stops)
    return _fit_free_parameters(args.model, source, args.p0, args.lower, args.upper, args.fixed, args.options,
                                absolute_sigma, comm)


def _stop_signals(hc, opts):
    """The fit's stop requests: Ctrl-C under MPI or with a checkpoint (serially without one, Python's
    own KeyboardInterrupt is already prompt), and the batch system's signals with a checkpoint."""
    if opts.checkpoint is None and hc.size == 1:
        return nullcontext(None)
    return StopSignals(preempt=opts.checkpoint is not None, abort=hc.abort_job if hc.size > 1 else None)


def _fit_free_parameters(f, source, p0, lower, upper, fixed, opts, absolute_sigma, comm) -> FitResult:
    """Equal lower and upper bounds fix a parameter: fit the others, report the fixed one with perr 0."""
    free = ~fixed
    if not free.any():
        raise InputError("every parameter is fixed (lower bound == upper bound for all of them): nothing to fit")
    names = parameter_names(f, p0.size)
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


__all__ = ["curve_fit", "fit"]
