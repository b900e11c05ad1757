"""The arguments of a fit, checked where they enter: p0 and bounds against each other, the options,
the user's Jacobian, and what must be the same on every rank. Local (no communication; the caller
agrees on the outcome); each check raises InputError naming the argument, what it got and what is
allowed. The model's parameter names are read here, and only here."""
from __future__ import annotations

import hashlib
import inspect
from dataclasses import fields
from typing import NamedTuple

import numpy as np

from .errors import InputError
from .models.wrappers import UserJacobian
from .options import FitOptions, make_options
from .phases.normalize import Normalization, make_normalization

#: scipy's finite-difference choices for ``jac``: accepted, and replaced by exact autodiff.
SCIPY_JAC_STRINGS = ("2-point", "3-point", "cs")


def n_params_from_signature(f) -> int:
    try:
        params = list(inspect.signature(f).parameters.values())
    except (TypeError, ValueError) as exc:
        raise InputError(f"`p0` is None and the number of parameters of `f` cannot be read from its "
                         f"signature ({exc}); pass p0") from None
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params) or len(params) < 2:
        raise InputError("`p0` is None and `f` does not name its parameters (it must be f(x, a, b, ...)); pass p0")
    return len(params) - 1


def check_parameters(f, p0, bounds):
    """p0 and bounds as float arrays, checked against each other (local, may raise InputError)."""
    if not callable(f):
        raise InputError(f"`f` must be a callable f(x, *params); got {type(f).__name__}")
    if p0 is None:
        p0 = np.ones(n_params_from_signature(f))
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


class Arguments(NamedTuple):
    """A fit's arguments as checked: what the problem is built from."""

    options: FitOptions
    p0: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    fixed: np.ndarray            # True where equal bounds fix the parameter
    model: object                # f, or f with the user's Jacobian
    norm: Normalization          # the parameters' normalization (built once, here)


def check_arguments(f, source, p0, bounds, method, loss, f_scale, jac, options) -> Arguments:
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
    p0, lower, upper = check_parameters(f, p0, bounds)
    for name in ("explore_starts", "explore_scan"):
        rows = getattr(opts, name)
        if rows is not None and any(len(row) != p0.size for row in rows):
            raise InputError(f"`{name}`: every start must have {p0.size} values (the length of p0); got "
                             f"lengths {sorted({len(row) for row in rows})}")
    return Arguments(opts, p0, lower, upper, lower == upper, with_jac(f, jac, p0.size),
                     make_normalization(opts.normalize, p0, lower, upper))


def with_jac(f, jac, p: int):
    """The model with the user's ``jac``: None or a scipy finite-difference name keep ``f`` (its
    derivatives are exact by autodiff); a callable ``jac(x, *params) -> (n, p)`` is used."""
    if jac is None or (isinstance(jac, str) and jac in SCIPY_JAC_STRINGS):
        return f
    if not callable(jac):
        raise InputError(f"`jac` must be None, one of {SCIPY_JAC_STRINGS} (hpcfit's autodiff derivatives are exact "
                         f"either way) or a callable jac(x, *params) returning the (n, p) Jacobian; got {jac!r}")
    names = parameter_names(f, p)
    return UserJacobian(f, jac, None if names is None else tuple(names))


def model_identity(f) -> str:
    """What names the model the same way on every rank, cheaply: its type and qualified name, and the
    bytes of its code when it is a plain function (two different fits never pair up across ranks)."""
    code = getattr(f, "__code__", None)
    if code is None:
        return f"{type(f).__qualname__}:{getattr(f, '__qualname__', '')}"
    consts = repr(tuple(c for c in code.co_consts if not inspect.iscode(c)))     # code objects print addresses
    digest = hashlib.sha256(code.co_code + consts.encode()).hexdigest()[:16]
    return f"{type(f).__qualname__}:{getattr(f, '__qualname__', '')}:{digest}"


def same_everywhere(opts: FitOptions, p0, lower, upper, absolute_sigma, source, model) -> dict:
    """What must be equal on every rank, by name (``verbose`` only matters on rank 0)."""
    values = {"p0": p0.tobytes(), "bounds": (lower.tobytes(), upper.tobytes()), "model": model_identity(model),
              "absolute_sigma": bool(absolute_sigma), "distribute": getattr(source, "distribute", None),
              "source": type(source).__name__}
    values.update({f.name: getattr(opts, f.name) for f in fields(opts) if f.name != "verbose"})
    return values


def parameter_names(f, p: int) -> list[str] | None:
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
