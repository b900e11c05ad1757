"""Argument checks shared by options, models, loaders and the simulator: each returns the
normalised value or raises InputError naming the argument, what it got and what is allowed.
numpy scalars count as numbers; bools never do."""
from __future__ import annotations

import math
import numbers

import numpy as np

from .errors import InputError


def choice(name: str, value, allowed):
    """One of ``allowed``."""
    if not isinstance(value, (str, int, float)) or value not in allowed:
        raise InputError(f"`{name}` must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def flag(name: str, value) -> bool:
    """True or False (numpy bools too)."""
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"`{name}` must be True or False; got {value!r}")
    return bool(value)


def integer(name: str, value, minimum: int, what: str = "") -> int:
    """An integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"`{name}` must be an integer >= {minimum}{what}; got {value!r}")
    return int(value)


def number(name: str, value, *, allow_zero: bool = False) -> float:
    """A finite number > 0 (or >= 0 with ``allow_zero``)."""
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
          and (value >= 0 if allow_zero else value > 0))
    if not ok:
        raise InputError(f"`{name}` must be a finite number {'>= 0' if allow_zero else '> 0'}; got {value!r}")
    return float(value)


def per_item(name: str, value, n: int, item: str = "angle", *, broadcast: bool = True) -> np.ndarray:
    """One finite number per ``item`` (or, with ``broadcast``, a scalar repeated), as a float array
    of length n."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"`{name}` must be a number or one number per {item} ({n}); got {value!r}") from None
    if arr.ndim == 0 and broadcast:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise InputError(f"`{name}` must be {'a number or ' if broadcast else ''}one number per {item} ({n}); "
                         f"got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"`{name}` must be finite; got {value!r}")
    return arr


def file_path(name: str, value) -> str:
    """A file path (str or os.PathLike), as a str."""
    import os

    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise InputError(f"`{name}` must be a file path (str or pathlib.Path); got {value!r}")
    return os.fspath(value)
