"""The order of an XPCS map's points, in its one home: each angle's frame pairs (t1, t2) — t1 < t2
(``"upper"``: each independent pair once) or t1 ≠ t2 (``"both"``) — ordered by t1, then t2, and
the maps between a pair and its position. Stream files, the beamline source, the loaders and the
kernels' :class:`~hpcfit.kernels.coords.PairGrid` all use these. numpy; :func:`pair_at` also runs
inside a kernel with ``xp=jax.numpy``."""
from __future__ import annotations

import numpy as np

from .errors import InputError

TRIANGLES = ("upper", "both")


def check_triangle(triangle) -> str:
    if triangle not in TRIANGLES:
        raise InputError(f"`triangle` must be one of {TRIANGLES}; got {triangle!r}")
    return triangle


def check_n_t(n_t, minimum: int = 0, what: str = "") -> int:
    """``n_t`` (frames of each map) as an int, or an InputError naming it and the ``minimum``."""
    if isinstance(n_t, bool) or not isinstance(n_t, (int, np.integer)) or n_t < minimum:
        raise InputError(f"`n_t` must be an integer >= {minimum}{what}; got {n_t!r}")
    return int(n_t)


def n_pairs(n_t: int, triangle: str = "upper") -> int:
    """Points per angle: n(n-1)/2 for "upper" (t1 < t2), n(n-1) for "both" (t1 != t2)."""
    n = check_n_t(n_t)
    full = n * (n - 1)
    return full // 2 if check_triangle(triangle) == "upper" else full


def pair_frames(n_t: int, triangle: str = "upper") -> tuple[np.ndarray, np.ndarray]:
    """(t1, t2), 0-based int64 frame indices of every point of one angle, in order."""
    n, tri = check_n_t(n_t), check_triangle(triangle)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if tri == "upper":
        t1, t2 = np.triu_indices(n, k=1)
        return t1.astype(np.int64), t2.astype(np.int64)
    idx = np.arange(n * (n - 1), dtype=np.int64)      # row t1 holds n-1 points: every t2 but t1 itself
    t1, r = np.divmod(idx, n - 1)
    return t1, r + (r >= t1)


def pair_rows(start: int, stop: int, n_t: int) -> list[tuple[int, int, int]]:
    """The points at positions start … stop − 1 of one angle (triangle "upper") as runs along rows:
    (t1, first t2, count) each, so that contiguous points are read and weighted as a few slices
    instead of finding every point's frames (:func:`pair_at`)."""
    runs = []
    if stop <= start:
        return runs
    t1 = int(pair_at(np.array([start]), n_t)[0][0])
    k = start
    while k < stop:
        row_start = t1 * (2 * n_t - t1 - 1) // 2
        first = t1 + 1 + (k - row_start)
        count = min(n_t - first, stop - k)
        runs.append((t1, first, count))
        k += count
        t1 += 1
    return runs


def pair_position(t1, t2, n_t: int, triangle: str):
    """Position of pair (t1, t2) among its angle's points (inverse of :func:`pair_at`)."""
    if triangle == "upper":
        return t1 * (2 * n_t - t1 - 1) // 2 + (t2 - t1 - 1)
    return t1 * (n_t - 1) + t2 - (t2 > t1)


def pair_at(k, n_t: int, triangle: str = "upper", xp=np):
    """(t1, t2) of position k among an angle's points, exact for any n_t; ``k`` an integer array
    (numpy, or jax.numpy with ``xp``)."""
    if xp is np:
        k = np.asarray(k, dtype=np.int64)
    if triangle == "both":
        t1 = k // (n_t - 1)
        j = k % (n_t - 1)
        return t1, j + (j >= t1)
    # Row t1 starts at r(t1) = t1·(2n − t1 − 1)/2; invert with the quadratic formula, then correct
    # the float estimate by one either way (exact integer checks).
    b = 2 * n_t - 1
    t1 = xp.floor((b - xp.sqrt(xp.maximum(b * b - 8.0 * k, 0.0))) / 2).astype(k.dtype)
    row = lambda t: t * (2 * n_t - t - 1) // 2  # noqa: E731 - first position of row t
    t1 = xp.where(row(t1) > k, t1 - 1, t1)
    t1 = xp.where(row(t1 + 1) <= k, t1 + 1, t1)
    return t1, k - row(t1) + t1 + 1


def pair_mask(n_t: int, triangle: str) -> np.ndarray:
    """(n, n) booleans whose True cells, taken in C order, are the pairs of :func:`pair_frames`:
    ``c2[mask]`` gathers one angle's points with n² bytes of index instead of two int64 arrays."""
    if triangle == "upper":
        return np.triu(np.ones((n_t, n_t), dtype=bool), k=1)
    return ~np.eye(n_t, dtype=bool)
