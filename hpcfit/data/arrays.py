"""In-memory data: checking the user's arrays and cutting this rank's part into padded chunks.

``distribute="global"``: every rank passes the same full arrays (verified across ranks by shape,
dtype and checksum) and keeps the chunks the :class:`~hpcfit.data.grid.ChunkGrid` gives it.
``distribute="local"``: every rank passes its own shard; the fit is of the union in rank order.
Either way the result is a :class:`LocalChunks`: the fixed-shape chunks this rank computes and
where they sit in the global chunk tree.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from ..comm import Communicator
from ..errors import InputError
from .grid import ChunkGrid, dyadic_blocks


@dataclass(frozen=True)
class Chunk:
    """One fixed-shape chunk: points ``[global_start, global_start + n_valid)``, padded."""

    x: np.ndarray          # (chunk_size,) or (k, chunk_size)
    y: np.ndarray          # (chunk_size,)
    weight: np.ndarray     # (chunk_size,) = 1/sigma; 0 on padding
    n_valid: int
    global_start: int


@dataclass(frozen=True)
class LocalChunks:
    """This rank's chunks and the global tree they belong to."""

    chunks: list[Chunk]
    chunk_size: int                         # the same on every rank
    first_leaf: int                         # global index of this rank's first chunk
    n_leaves: int                           # chunks over all ranks
    slots: list[tuple[int, int]]            # every rank's tree blocks, rank order: the reduction layout
    n_points: int                           # points over all ranks

    @property
    def local_blocks(self) -> list[tuple[int, int]]:
        return dyadic_blocks(self.first_leaf, self.first_leaf + len(self.chunks), self.n_leaves)


def _as_real_array(name: str, value) -> np.ndarray:
    try:
        arr = np.asarray(value)
        if arr.dtype.kind == "c":
            raise InputError(f"`{name}` is complex (dtype {arr.dtype}); only real data can be fitted")
        return np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"`{name}` must be a real numeric array: {exc}") from None


def _check_finite(name: str, arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(f"`{name}` contains NaN or Inf ({int(bad.sum())} values; first at index "
                         f"{where if len(where) > 1 else where[0]}); all values must be finite")


def check_arrays(xdata, ydata, sigma, *, allow_empty: bool):
    """Validate and convert the user's arrays (local, not collective); raises InputError."""
    x = _as_real_array("xdata", xdata)
    y = _as_real_array("ydata", ydata)
    if x.ndim not in (1, 2):
        raise InputError(f"`xdata` must have shape (n,) or (k, n) with the points on the last axis; "
                         f"got shape {x.shape}")
    if y.ndim != 1:
        raise InputError(f"`ydata` must be 1-D of shape (n,); got shape {y.shape}")
    if x.shape[-1] != y.shape[0]:
        raise InputError(f"`xdata` and `ydata` disagree on the number of points: xdata has shape {x.shape} "
                         f"(points on the last axis: {x.shape[-1]}), ydata has {y.shape[0]}")
    if y.shape[0] == 0 and not allow_empty:
        raise InputError("`xdata` and `ydata` have no points (an empty shard is allowed only with "
                         "distribute='local')")
    sig = None
    if sigma is not None:
        sig = _as_real_array("sigma", sigma)
        if sig.shape != y.shape:
            raise InputError(f"`sigma` must be 1-D with one value per point, shape {y.shape}; got shape "
                             f"{sig.shape} (a 2-D covariance sigma is not supported)")
    for name, arr in (("xdata", x), ("ydata", y), ("sigma", sig)):
        if arr is not None:
            _check_finite(name, arr)
    if sig is not None and np.any(sig <= 0):
        i = int(np.argmax(sig <= 0))
        raise InputError(f"`sigma` must be > 0 everywhere; sigma[{i}] = {float(sig[i])!r}")
    return x, y, sig


def checksum(arr: np.ndarray | None) -> tuple | None:
    """Shape and a CRC32 of the bytes: a cheap fingerprint to compare an array across ranks."""
    if arr is None:
        return None
    return arr.shape, zlib.crc32(np.ascontiguousarray(arr).view(np.uint8).ravel())


def _cut_chunks(x, y, sig, chunk_size: int, global_start: int) -> list[Chunk]:
    """Cut local arrays into chunks of ``chunk_size`` points, the last padded with weight 0."""
    n = y.shape[0]
    chunks = []
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        m = stop - start
        xs, ys = x[..., start:stop], y[start:stop]
        ws = np.ones(m) if sig is None else 1.0 / sig[start:stop]
        if m < chunk_size:
            pad = chunk_size - m
            # Padding repeats the last real point so the model stays finite there; weight 0 and
            # the kernel's mask keep it out of every sum.
            xs = np.concatenate([xs, np.repeat(xs[..., -1:], pad, axis=-1)], axis=-1)
            ys = np.concatenate([ys, np.repeat(ys[-1:], pad)])
            ws = np.concatenate([ws, np.zeros(pad)])
        chunks.append(Chunk(np.ascontiguousarray(xs), np.ascontiguousarray(ys),
                            np.ascontiguousarray(ws), m, global_start + start))
    return chunks


def distribute_arrays(comm: Communicator, xdata, ydata, sigma, *, chunk_size: int,
                      distribute: str) -> tuple[LocalChunks, tuple]:
    """Collective: check the arrays on every rank, agree on errors, and cut this rank's chunks.

    The chunk size used is ``min(chunk_size, points)`` (points: global n, or the largest local shard),
    the same on every rank, so a small fit does not pad one chunk to a huge requested size.
    Returns the chunks and ``x_shape_tail`` (the x shape without the points axis).
    """
    x, y, sig = comm.agree(check_arrays, xdata, ydata, sigma, allow_empty=distribute == "local")

    if distribute == "global":
        comm.check_same({"xdata": checksum(x), "ydata": checksum(y), "sigma": checksum(sig)},
                        "with distribute='global' every rank must pass the same arrays (shape and CRC32 "
                        "are compared); use distribute='local' to pass one shard per rank")
        n = y.shape[0]
        chunk_size = min(chunk_size, n)
        grid = ChunkGrid(n, chunk_size, comm.size)
        runs = [grid.rank_chunks(r) for r in range(comm.size)]
        first = runs[comm.rank][0]
        start, end = grid.rank_points(comm.rank)
        chunks = comm.agree(_cut_chunks, x[..., start:end], y[start:end],
                            None if sig is None else sig[start:end], chunk_size, start)
        n_leaves = grid.n_chunks
    else:
        shapes = comm.allgather((x.shape[:-1], sig is not None, y.shape[0]))
        for r, (tail, has_sigma, _) in enumerate(shapes):
            if tail != shapes[0][0] or has_sigma != shapes[0][1]:   # every rank sees the same list
                raise InputError(
                    "with distribute='local' every rank's xdata must have the same leading shape "
                    f"and sigma must be given on all ranks or none: rank 0 has x shape {shapes[0][0]}+(n,), "
                    f"sigma {'given' if shapes[0][1] else 'None'}; rank {r} has {tail}+(n,), "
                    f"sigma {'given' if has_sigma else 'None'}")
        counts = [s[2] for s in shapes]
        n = sum(counts)
        chunk_size = max(1, min(chunk_size, max(counts)))
        chunk_counts = [-(-c // chunk_size) for c in counts]
        offsets = np.concatenate([[0], np.cumsum(chunk_counts)]).astype(int).tolist()
        runs = list(zip(offsets[:-1], offsets[1:]))
        first = offsets[comm.rank]
        n_leaves = offsets[-1]
        chunks = comm.agree(_cut_chunks, x, y, sig, chunk_size, sum(counts[: comm.rank]))

    slots = [blk for a, b in runs for blk in dyadic_blocks(a, b, n_leaves)]
    return LocalChunks(chunks, chunk_size, first, n_leaves, slots, n), x.shape[:-1]
