"""Implicit coordinates: x computed inside the kernel from the global point index, never stored.

For data on a regular grid (XPCS: angle × t1 × t2) reading x would double the I/O and memory of a
fit; instead a chunk carries only its global start index and the kernel rebuilds x from it.
Coordinate objects are frozen (hashable) so a kernel compiled for one is reused by the next fit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax.numpy as jnp
import numpy as np

from ..pairs import TRIANGLES, n_pairs, pair_at


def split_contiguous(start, n: int, last: int, per: int):
    """(index // per, index % per) of the n contiguous points start, start + 1, … (indices past
    ``last`` taken as ``last``: a chunk's padding) with one scalar division: a 64-bit division per
    point cost ~1 ms of a 32768-point chunk's ~8 ms. The positions are int32 where they fit."""
    small = per + n < 2**31
    offsets = jnp.minimum(jnp.arange(n), last - start)
    first_block, first_pos = start // per, start % per
    if small:
        offsets, first_pos = offsets.astype(jnp.int32), first_pos.astype(jnp.int32)
    pos = first_pos + offsets
    return first_block + pos // per, pos % per


def coordinates_at(coords, start, n: int):
    """x of a chunk of ``coords``: the points start … start + n − 1, those past the last taken as the
    last (padding). A grid may give ``at_range(start, n)``, a faster formula for contiguous points;
    any object with ``n_points`` and ``__call__(index)`` works."""
    at_range = getattr(coords, "at_range", None)
    if at_range is not None:
        return at_range(start, n)
    return coords(jnp.minimum(start + jnp.arange(n), coords.n_points - 1))


@dataclass(frozen=True)
class RegularGrid:
    """The points of the full product of 1-D axes in C order; x has one row per axis.

    ``RegularGrid(a)`` gives x of shape (n,) with x = a; ``RegularGrid(a, b)`` gives (2, n) with
    rows a[i], b[j] for the flat index i·len(b) + j, and so on.
    """

    axes: tuple

    def __init__(self, *axes):
        if not axes:
            raise ValueError("RegularGrid needs at least one axis")
        cleaned = []
        for k, a in enumerate(axes):
            arr = np.asarray(a, dtype=float)
            if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
                raise ValueError(f"RegularGrid axis {k} must be a non-empty 1-D array of finite numbers")
            cleaned.append(tuple(arr.tolist()))
        object.__setattr__(self, "axes", tuple(cleaned))

    @property
    def n_points(self) -> int:
        return int(np.prod([len(a) for a in self.axes]))

    def __call__(self, index):
        rows, rest = [], index
        for axis in reversed(self.axes):
            rows.append(jnp.asarray(axis)[rest % len(axis)])
            rest = rest // len(axis)
        rows.reverse()
        return rows[0] if len(rows) == 1 else jnp.stack(rows)


@dataclass(frozen=True)
class PairGrid:
    """XPCS points: for each of ``n_groups`` angles, the frame pairs (t1, t2) in the order
    angle, t1, t2 — t1 < t2 (``triangle="upper"``, each independent pair once) or t1 ≠ t2
    (``"both"``). x has shape (3, n): angle index, t1, t2 (as float64)."""

    n_groups: int
    n_t: int
    triangle: str = "upper"

    def __post_init__(self):
        if self.triangle not in TRIANGLES:
            raise ValueError(f"triangle must be 'upper' or 'both'; got {self.triangle!r}")
        if self.n_t < 2 or self.n_groups < 1:
            raise ValueError(f"PairGrid needs n_t >= 2 and n_groups >= 1; got n_t={self.n_t}, n_groups={self.n_groups}")

    @property
    def n_points(self) -> int:
        return self.n_groups * n_pairs(self.n_t, self.triangle)

    def __call__(self, index):
        per_group = n_pairs(self.n_t, self.triangle)
        group, k = index // per_group, index % per_group
        t1, t2 = pair_at(k, self.n_t, self.triangle, xp=jnp)
        return jnp.stack([group, t1, t2]).astype(jnp.float64)

    def at_range(self, start, n: int):
        group, k = split_contiguous(start, n, self.n_points - 1, n_pairs(self.n_t, self.triangle))
        t1, t2 = pair_at(k, self.n_t, self.triangle, xp=jnp)
        return jnp.stack([group.astype(k.dtype), t1, t2]).astype(jnp.float64)


@dataclass(frozen=True)
class ImplicitX:
    """A model whose x is the coordinates of the chunk's points, rebuilt from its start index."""

    model: Callable
    coords: object
    chunk_size: int

    def __call__(self, start, *params):
        return self.model(coordinates_at(self.coords, start, self.chunk_size), *params)


@dataclass(frozen=True)
class IndexedX:
    """A model whose x is the coordinates of arbitrary points, computed from their global indices."""

    model: Callable
    coords: object

    def __call__(self, index, *params):
        return self.model(self.coords(index), *params)


def implicit_model(model: Callable, local) -> Callable:
    """The model the kernels call for ``local`` chunks: ``model`` itself, or wrapped to rebuild x."""
    return model if local.coords is None else ImplicitX(model, local.coords, local.chunk_size)
