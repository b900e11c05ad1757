"""The global chunk grid: which points form chunk k, and which rank owns it.

Pure arithmetic, no MPI and no JAX, so it can be tested for any size and rank count.

Chunk k always covers global points ``[k*chunk_size, min((k+1)*chunk_size, n))``. Rank r owns
a contiguous run of chunks. Partial sums are combined over a fixed binary tree on the chunk
index (:func:`dyadic_blocks`, :func:`combine_blocks`), so the combined value does not depend on
how the chunks were split between ranks: that is what makes a fit bitwise identical on any
rank count.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class ChunkGrid:
    """Fixed-size chunks over ``n_points`` global points, split over ``n_ranks`` ranks."""

    n_points: int
    chunk_size: int
    n_ranks: int = 1

    def __post_init__(self):
        if self.n_points < 1:
            raise ValueError(f"n_points must be >= 1, got {self.n_points}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.n_ranks < 1:
            raise ValueError(f"n_ranks must be >= 1, got {self.n_ranks}")

    @property
    def n_chunks(self) -> int:
        return -(-self.n_points // self.chunk_size)

    def chunk_points(self, k: int) -> tuple[int, int]:
        """Global point range ``[start, stop)`` of chunk k."""
        start = k * self.chunk_size
        return start, min(start + self.chunk_size, self.n_points)

    def rank_chunks(self, rank: int) -> tuple[int, int]:
        """Chunk range ``[first, stop)`` owned by ``rank``; empty when there are more ranks than chunks."""
        n = self.n_chunks
        return rank * n // self.n_ranks, (rank + 1) * n // self.n_ranks

    def rank_points(self, rank: int) -> tuple[int, int]:
        """Global point range ``[start, stop)`` owned by ``rank``."""
        first, stop = self.rank_chunks(rank)
        if first == stop:
            return (self.n_points, self.n_points)
        return self.chunk_points(first)[0], self.chunk_points(stop - 1)[1]


def _tree_height(n_leaves: int) -> int:
    return max(0, (n_leaves - 1).bit_length())


def dyadic_blocks(first: int, stop: int, n_leaves: int) -> list[tuple[int, int]]:
    """The maximal nodes ``(level, index)`` of the binary tree over ``n_leaves`` leaves that lie
    inside ``[first, stop)``, left to right.

    Node ``(L, i)`` covers leaves ``[i*2**L, min((i+1)*2**L, n_leaves))``. Whatever the split of
    ``[0, n_leaves)`` into runs, each run's blocks are subtrees of the same global tree.
    """
    out: list[tuple[int, int]] = []

    def visit(level: int, index: int) -> None:
        lo = index << level
        hi = min((index + 1) << level, n_leaves)
        if lo >= n_leaves or hi <= first or lo >= stop:
            return
        if first <= lo and hi <= stop:
            out.append((level, index))
            return
        visit(level - 1, 2 * index)
        visit(level - 1, 2 * index + 1)

    if first < stop:
        visit(_tree_height(n_leaves), 0)
    return out


def combine_blocks(values: dict[tuple[int, int], T], n_leaves: int, add: Callable[[T, T], T]) -> T:
    """Combine block values over the global tree: node = left ⊕ right, an absent child is skipped."""

    def node(level: int, index: int):
        if (level, index) in values:
            return values[(level, index)]
        if level == 0 or (index << level) >= n_leaves:
            return None
        left, right = node(level - 1, 2 * index), node(level - 1, 2 * index + 1)
        if right is None:
            return left
        if left is None:
            return right
        return add(left, right)

    total = node(_tree_height(n_leaves), 0)
    if total is None:
        raise ValueError("combine_blocks: the blocks do not cover any leaf")
    return total


class TreeAccumulator:
    """Sums leaves arriving left to right in canonical tree order, holding O(log n) partials.

    Feeding the leaves of one block of :func:`dyadic_blocks` gives exactly that block's value as
    :func:`combine_blocks` would compute it from its leaves.
    """

    def __init__(self, add: Callable[[T, T], T]):
        self._add = add
        self._stack: list[tuple[int, T]] = []

    def push(self, value: T) -> None:
        level = 0
        while self._stack and self._stack[-1][0] == level:
            _, left = self._stack.pop()
            value = self._add(left, value)
            level += 1
        self._stack.append((level, value))

    def result(self) -> T:
        """The tree sum; a partial right edge is folded from the right, as absent leaves imply."""
        if not self._stack:
            raise ValueError("TreeAccumulator.result: no leaves were pushed")
        value = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            value = self._add(left, value)
        return value


def tree_sum(rows):
    """Sum ``rows`` (leaves along axis 0) over the canonical tree, vectorised: pairs, then pairs of
    pairs, an unpaired last node passing up alone. For an aligned block of :func:`dyadic_blocks`
    this is exactly the value :func:`combine_blocks` gives from the block's leaves."""
    while rows.shape[0] > 1:
        even = rows.shape[0] & ~1
        paired = rows[0:even:2] + rows[1:even:2]
        rows = paired if even == rows.shape[0] else np.concatenate([paired, rows[even:]])
    return rows[0]


def block_sums(rows, first: int, n_leaves: int) -> dict[tuple[int, int], object]:
    """Values of the tree blocks covering leaves ``[first, first + len(rows))`` of a tree over
    ``n_leaves`` leaves, each summed canonically: what one rank contributes to a reduction."""
    out = {}
    for level, index in dyadic_blocks(first, first + rows.shape[0], n_leaves):
        lo = (index << level) - first
        hi = min((index + 1) << level, n_leaves) - first
        out[(level, index)] = tree_sum(rows[lo:hi])
    return out
