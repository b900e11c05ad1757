"""Per-group parameters: the structure that makes Jacobian passes block-sparse.

Many models have a few parameters every point uses (the *shared* ones: XPCS's D0, α, …, φ0) and a
few more per group of points (XPCS's contrast and offset per angle). A point depends only on the
shared parameters and its own group's, so its Jacobian row has ``n_shared + per_group`` non-zeros
whatever the number of groups, and JᵀWJ is arrow-shaped: a dense shared block, one small block per
group and the coupling between them. Groups are contiguous runs of points in point order (a grid's
leading axis, or sorted data), so a chunk spans few groups.

:class:`ParameterGroups` is what a user declares (validated once); :class:`GroupLayout` is that
declaration resolved against the data (how many groups, where each starts, how many a chunk can
span) and packs the arrow-shaped sums into the one reduction buffer of a pass. Pure numpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from .errors import InputError
from .validate import choice, integer

LAYOUTS = ("by_parameter", "by_group")


@dataclass(frozen=True)
class ParameterGroups:
    """The order of a model's parameters: ``n_shared`` shared ones first, then ``per_group`` per group.

    ``layout="by_parameter"`` (XPCS's order: every group's first parameter, then every group's
    second, …): parameter j of group g is at ``n_shared + j·n_groups + g``. ``"by_group"`` (each
    group's parameters together): at ``n_shared + g·per_group + j``. ``group_sizes`` gives the
    points of each group in point order, for data with explicit x; on a grid source
    (:class:`~hpcfit.PairGrid`, :class:`~hpcfit.RegularGrid`) the groups are the grid's
    leading axis and it is left out.
    """

    n_shared: int
    per_group: int
    layout: str = "by_parameter"
    group_sizes: tuple | None = None

    def __post_init__(self):
        object.__setattr__(self, "n_shared", integer("parameter_groups.n_shared", self.n_shared, 0))
        object.__setattr__(self, "per_group", integer("parameter_groups.per_group", self.per_group, 0))
        choice("parameter_groups.layout", self.layout, LAYOUTS)
        if self.group_sizes is not None:
            sizes = tuple(integer("parameter_groups.group_sizes", v, 1, " (points in each group)")
                          for v in np.asarray(self.group_sizes).reshape(-1).tolist())
            if not sizes:
                raise InputError("`parameter_groups.group_sizes` must list the points of at least one group")
            object.__setattr__(self, "group_sizes", sizes)


def parameter_groups(value) -> ParameterGroups | None:
    """The ``parameter_groups`` option: "auto", None (or False, "off": dense passes), a
    ParameterGroups, or a mapping of its fields (a TOML table)."""
    if value is None or value is False or value == "off":
        return None
    if value == "auto" or isinstance(value, ParameterGroups):
        return value
    if isinstance(value, Mapping):
        known = {"n_shared", "per_group", "layout", "group_sizes"}
        unknown = sorted(set(value) - known)
        if unknown or not {"n_shared", "per_group"} <= set(value):
            raise InputError(f"`parameter_groups` must have keys n_shared and per_group (and optionally layout, "
                             f"group_sizes); got keys {sorted(value)}")
        return ParameterGroups(**value)
    raise InputError(f"`parameter_groups` must be \"auto\", \"off\" (or None), a hpcfit.ParameterGroups or a table "
                     f"with n_shared and per_group; got {value!r}")


@dataclass(frozen=True)
class GroupLayout:
    """ParameterGroups resolved against the data, and the packed arrow-shaped sums of a pass.

    Packed vector: upper(shared×shared), then per group upper(own×own) and shared×own (row
    major), then JᵀWr (p, parameter order), then cost, n_bad, first_bad: the width does not grow
    with p², only with the number of groups.
    """

    n_shared: int
    per_group: int
    n_groups: int
    layout: str
    starts: tuple            # first global point of each group, and n_points at the end
    span: int                # most groups any chunk touches (static: the kernel's slot count)

    @property
    def n_params(self) -> int:
        return self.n_shared + self.n_groups * self.per_group

    @property
    def uniform(self) -> int | None:
        """Points per group when every group has the same number (then a point's group is a division)."""
        sizes = np.diff(self.starts)
        return int(sizes[0]) if np.all(sizes == sizes[0]) else None

    def own_index(self, group, j):
        """Index in θ of parameter j of ``group`` (numpy or JAX integers)."""
        if self.layout == "by_parameter":
            return self.n_shared + j * self.n_groups + group
        return self.n_shared + group * self.per_group + j

    @property
    def width(self) -> int:
        s, k = self.n_shared, self.per_group
        return s * (s + 1) // 2 + self.n_groups * (k * (k + 1) // 2 + s * k) + self.n_params + 3

    def _dense_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) in JᵀWJ of every entry of the packed matrix part, in packed order (cached)."""
        if not hasattr(self, "_rows_cols"):
            object.__setattr__(self, "_rows_cols", self._list_positions())
        return self._rows_cols

    def _list_positions(self) -> tuple[np.ndarray, np.ndarray]:
        s, k = self.n_shared, self.per_group
        rows, cols = [], []
        r, c = np.triu_indices(s)
        rows.append(r), cols.append(c)
        for g in range(self.n_groups):
            own = self.own_index(g, np.arange(k))
            r, c = np.triu_indices(k)
            rows.append(own[r]), cols.append(own[c])
            rows.append(np.repeat(np.arange(s), k)), cols.append(np.tile(own, s))
        return np.concatenate(rows).astype(int), np.concatenate(cols).astype(int)

    def packed_position(self) -> np.ndarray:
        """(p, p) table: position of JᵀWJ[i, j] in the packed vector, -1 where it is structurally 0."""
        if not hasattr(self, "_position"):
            rows, cols = self._dense_positions()
            table = np.full((self.n_params, self.n_params), -1, dtype=np.int64)
            table[rows, cols] = np.arange(rows.size)
            table[cols, rows] = np.arange(rows.size)
            object.__setattr__(self, "_position", table)
        return self._position

    def _group_positions(self, group: int) -> tuple:
        """Packed positions of ``group``'s own×own upper triangle, its shared×own block and its Jᵀr."""
        if not hasattr(self, "_positions"):
            object.__setattr__(self, "_positions", {})
        if group not in self._positions:
            s, k = self.n_shared, self.per_group
            position = self.packed_position()
            own = self.own_index(group, np.arange(k)).astype(int)
            upper = np.triu_indices(k)
            self._positions[group] = (position[own[upper[0]], own[upper[1]]],
                                      position[np.repeat(np.arange(s), k), np.tile(own, s)],
                                      self.width - 3 - self.n_params + own)
        return self._positions[group]

    def leaf(self, product: np.ndarray, first_group: int, tail: np.ndarray) -> np.ndarray:
        """One chunk's packed vector from the kernel's AᵀA, A = [J_shared | J_own of slot 0 | … |
        J_own of slot span−1 | r] (slot t: the rows of group ``first_group + t``), and its
        (cost, n_bad, first)."""
        s, k = self.n_shared, self.per_group
        out = np.zeros(self.width)
        r = product.shape[0] - 1
        if not hasattr(self, "_uppers"):
            object.__setattr__(self, "_uppers", (np.triu_indices(s), np.triu_indices(k)))
        upper, own_upper = self._uppers
        out[: upper[0].size] = product[upper]
        jtr0 = self.width - 3 - self.n_params
        out[jtr0: jtr0 + s] = product[:s, r]
        for t in range((r - s) // k if k else 0):
            g = first_group + t
            if g >= self.n_groups:
                break
            cols = s + t * k + np.arange(k)
            own_own, shared_own, own_r = self._group_positions(g)
            out[own_own] = product[cols[own_upper[0]], cols[own_upper[1]]]
            out[shared_own] = product[:s, cols].reshape(-1)
            out[own_r] = product[cols, r]
        out[-3:] = tail
        return out

    def unpack(self, vec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(JᵀWJ (p, p) dense, JᵀWr (p,)) from a packed (reduced) vector."""
        rows, cols = self._dense_positions()
        p = self.n_params
        jtj = np.zeros((p, p))
        jtj[rows, cols] = vec[: rows.size]
        jtj[cols, rows] = vec[: rows.size]
        jtr0 = self.width - 3 - p
        return jtj, vec[jtr0: jtr0 + p].copy()

    def group_of(self, index: np.ndarray) -> np.ndarray:
        """Group of global point indices (numpy)."""
        return np.searchsorted(np.asarray(self.starts), index, side="right") - 1


@dataclass(frozen=True)
class DenseLayout:
    """The packed sums of a dense Jacobian pass: upper(JᵀWJ), JᵀWr, cost, n_bad, first_bad."""

    n_params: int

    @property
    def width(self) -> int:
        return self.n_params * (self.n_params + 1) // 2 + self.n_params + 3

    def unpack(self, vec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(JᵀWJ (p, p), JᵀWr (p,)) from a packed (reduced) vector."""
        p = self.n_params
        rows, cols = np.triu_indices(p)
        jtj = np.zeros((p, p))
        jtj[rows, cols] = vec[: rows.size]
        jtj[cols, rows] = vec[: rows.size]
        return jtj, vec[rows.size: rows.size + p].copy()


def declared_groups(models_own: ParameterGroups | None, option) -> ParameterGroups | None:
    """The declaration a fit uses: the ``parameter_groups`` option, or with "auto" the model's own."""
    return models_own if option == "auto" else option


def kernel_columns(groups: ParameterGroups | None, n_params: int) -> int:
    """Columns of a Jacobian chunk: p, or with per-group parameters the shared ones and two groups'."""
    return n_params if groups is None else min(n_params, groups.n_shared + 2 * groups.per_group)


def resolve_groups(groups: ParameterGroups, n_params: int, n_points: int, coords, chunk_size: int) -> GroupLayout:
    """The layout of ``groups`` on data of ``n_points`` points (coordinates ``coords``, or explicit
    x when None), checked against the parameter count; InputError naming parameter_groups."""
    if groups.group_sizes is not None:
        sizes = np.asarray(groups.group_sizes, dtype=np.int64)
        if int(sizes.sum()) != n_points:
            raise InputError(f"`parameter_groups.group_sizes` adds up to {int(sizes.sum())} points; the data have "
                             f"{n_points}")
    elif groups.per_group == 0:
        sizes = np.array([n_points])
    elif coords is not None and hasattr(coords, "n_groups"):
        sizes = np.full(coords.n_groups, n_points // coords.n_groups)
    elif coords is not None and hasattr(coords, "axes"):
        sizes = np.full(len(coords.axes[0]), n_points // len(coords.axes[0]))
    else:
        raise InputError("`parameter_groups` needs `group_sizes` (the points of each group, in point order) when x "
                         "is given explicitly; on a grid source the groups are its leading axis")
    n_groups = sizes.size
    expected = groups.n_shared + n_groups * groups.per_group
    if groups.per_group and expected != n_params:
        raise InputError(f"`parameter_groups` ({groups.n_shared} shared + {groups.per_group} per group × {n_groups} "
                         f"groups = {expected} parameters) does not match p0's {n_params} parameters")
    if not groups.per_group and groups.n_shared != n_params:
        raise InputError(f"`parameter_groups` declares {groups.n_shared} shared parameters and none per group; p0 "
                         f"has {n_params}")
    starts = np.concatenate([[0], np.cumsum(sizes)])
    chunk_first = np.arange(0, n_points, chunk_size)
    chunk_last = np.minimum(chunk_first + chunk_size, n_points) - 1
    group_at = lambda i: np.searchsorted(starts, i, side="right") - 1  # noqa: E731
    span = int(np.max(group_at(chunk_last) - group_at(chunk_first))) + 1
    return GroupLayout(groups.n_shared, groups.per_group, n_groups, groups.layout,
                       tuple(int(v) for v in starts), span)
