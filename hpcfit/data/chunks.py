"""What every data source hands the engine: this rank's chunks, read on demand, and their place
in the global chunk tree. Pure numpy: sources read and pad, the kernels never see a file."""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .grid import dyadic_blocks


@dataclass(frozen=True)
class Chunk:
    """One fixed-shape chunk: points ``[global_start, global_start + n_valid)``, padded.

    ``x`` is the coordinates (chunk_size,) or (k, chunk_size), or, for sources with implicit
    coordinates, the 0-d global start index from which the kernel computes them.
    """

    x: np.ndarray
    y: np.ndarray          # (chunk_size,)
    weight: np.ndarray     # (chunk_size,) = 1/sigma; 0 on padding
    n_valid: int
    global_start: int


def pad_chunk(x: np.ndarray | None, y: np.ndarray, weight: np.ndarray, chunk_size: int):
    """Pad a short last chunk to ``chunk_size`` points.

    Padding repeats the last real point so the model stays finite there; weight 0 and the
    kernel's mask keep it out of every sum.
    """
    pad = chunk_size - y.shape[0]
    if pad > 0:
        if x is not None:
            x = np.concatenate([x, np.repeat(x[..., -1:], pad, axis=-1)], axis=-1)
        y = np.concatenate([y, np.repeat(y[-1:], pad)])
        weight = np.concatenate([weight, np.zeros(pad)])
    return (None if x is None else np.ascontiguousarray(x)), np.ascontiguousarray(y), np.ascontiguousarray(weight)


@dataclass(frozen=True)
class LocalChunks:
    """This rank's chunks (read on demand) and the global tree they belong to."""

    read: Callable[[int], Chunk]           # local chunk i → Chunk (may do I/O; called from one thread)
    n_local: int                           # chunks on this rank
    chunk_size: int                        # the same on every rank
    first_leaf: int                        # global index of this rank's first chunk
    n_leaves: int                          # chunks over all ranks
    slots: list[tuple[int, int]]           # every rank's tree blocks, rank order: the reduction layout
    n_points: int                          # points over all ranks
    x_shape: tuple                         # shape of one chunk's x as the model sees it
    cacheable: bool                        # keep device copies after the first pass
    coords: object | None = None           # implicit coordinates (hpcfit.kernels.coords); x is the start index
    describe: str = "arrays"
    # Random access for sampled points (the warm-up): every rank's global point range, rank order,
    # and ``take(indices)`` → (x or None with implicit coordinates, y, weight) for sorted global
    # indices inside this rank's range (repeats allowed).
    point_runs: tuple[tuple[int, int], ...] = ()
    take: Callable[[np.ndarray], tuple] | None = None
    # Raises if the data changed since they were opened (a file written, truncated or replaced
    # under the fit); called at every pass boundary, so a pass never mixes two versions of the data.
    verify: Callable[[], None] | None = None

    @property
    def local_blocks(self) -> list[tuple[int, int]]:
        return dyadic_blocks(self.first_leaf, self.first_leaf + self.n_local, self.n_leaves)


def contiguous_runs(chunk_counts: list[int]) -> list[tuple[int, int]]:
    """Global chunk runs of ranks that own ``chunk_counts`` chunks each, in rank order."""
    offsets = np.concatenate([[0], np.cumsum(chunk_counts)]).astype(int).tolist()
    return list(zip(offsets[:-1], offsets[1:]))


def reduction_slots(runs: list[tuple[int, int]], n_leaves: int) -> list[tuple[int, int]]:
    return [blk for a, b in runs for blk in dyadic_blocks(a, b, n_leaves)]


def chunk_checksum(chunk) -> int:
    """CRC32 of a chunk's x, y and weights (as read, padding included)."""
    crc = zlib.crc32(np.ascontiguousarray(chunk.x).tobytes())
    crc = zlib.crc32(np.ascontiguousarray(chunk.y).tobytes(), crc)
    return zlib.crc32(np.ascontiguousarray(chunk.weight).tobytes(), crc)
