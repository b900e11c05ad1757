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
    first_leaf: int                         # global index of this rank's first chunk
    n_leaves: int                           # chunks over all ranks
    slots: list[tuple[int, int]]            # every rank's tree blocks, rank order: the reduction layout
    n_points: int                           # points over all ranks
    y_sum: float                            # over all ranks (for var(y))
    y_sq_sum: float

    @property
    def local_blocks(self) -> list[tuple[int, int]]:
        return dyadic_blocks(self.first_leaf, self.first_leaf + len(self.chunks), self.n_leaves)


def _as_float_array(name: str, value) -> np.ndarray | InputError:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        return InputError(f"`{name}` must be a real numeric array: {exc}")
    return arr


def _first_nonfinite(name: str, arr: np.ndarray, offset: int = 0) -> InputError | None:
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = np.argwhere(bad)[0]
        where = tuple(int(i) for i in idx)
        if arr.ndim == 1:
            where = (where[0] + offset,)
        else:
            where = where[:-1] + (where[-1] + offset,)
        return InputError(f"`{name}` contains NaN or Inf ({int(bad.sum())} values; first at index "
                          f"{where if len(where) > 1 else where[0]}); all values must be finite")
    return None


def check_arrays(xdata, ydata, sigma, *, index_offset: int = 0):
    """Validate and convert the user's arrays (local, not collective).

    Returns ``(x, y, sigma, None)`` or ``(None, None, None, error)``: the caller agrees on errors
    across ranks before going on.
    """
    x = _as_float_array("xdata", xdata)
    if isinstance(x, InputError):
        return None, None, None, x
    y = _as_float_array("ydata", ydata)
    if isinstance(y, InputError):
        return None, None, None, y
    if x.ndim not in (1, 2):
        return None, None, None, InputError(
            f"`xdata` must have shape (n,) or (k, n) with the points on the last axis; got shape {x.shape}")
    if y.ndim != 1:
        return None, None, None, InputError(f"`ydata` must be 1-D of shape (n,); got shape {y.shape}")
    if x.shape[-1] != y.shape[0]:
        return None, None, None, InputError(
            f"`xdata` and `ydata` disagree on the number of points: xdata has shape {x.shape} "
            f"(points on the last axis: {x.shape[-1]}), ydata has {y.shape[0]}")
    sig = None
    if sigma is not None:
        sig = _as_float_array("sigma", sigma)
        if isinstance(sig, InputError):
            return None, None, None, sig
        if sig.shape != y.shape:
            return None, None, None, InputError(
                f"`sigma` must be 1-D with one value per point, shape {y.shape}; got shape {sig.shape} "
                "(a 2-D covariance sigma is not supported)")
    for name, arr in (("xdata", x), ("ydata", y), ("sigma", sig)):
        if arr is not None:
            err = _first_nonfinite(name, arr, index_offset)
            if err is not None:
                return None, None, None, err
    if sig is not None and np.any(sig <= 0):
        i = int(np.argmax(sig <= 0))
        return None, None, None, InputError(
            f"`sigma` must be > 0 everywhere; sigma[{i + index_offset}] = {float(sig[i])!r}")
    return x, y, sig, None


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

    Returns the chunks and ``x_shape_tail`` (the x shape without the points axis).
    """
    x, y, sig, err = check_arrays(xdata, ydata, sigma)
    comm.raise_if_any(err)

    if distribute == "global":
        comm.check_same({"xdata": checksum(x), "ydata": checksum(y), "sigma": checksum(sig)},
                        "with distribute='global' every rank must pass the same arrays (shape and CRC32 "
                        "are compared); use distribute='local' to pass one shard per rank")
        n = y.shape[0]
        grid = ChunkGrid(n, chunk_size, comm.size)
        runs = [grid.rank_chunks(r) for r in range(comm.size)]
        first, stop = runs[comm.rank]
        start, end = grid.rank_points(comm.rank)
        chunks = _cut_chunks(x[..., start:end], y[start:end], None if sig is None else sig[start:end],
                             chunk_size, start)
        y_sum, y_sq = float(np.sum(y)), float(np.sum(y * y))
        n_leaves = grid.n_chunks
    else:
        shapes = comm.allgather((x.shape[:-1], sig is not None, y.shape[0]))
        for r, (tail, has_sigma, _) in enumerate(shapes):
            if tail != shapes[0][0] or has_sigma != shapes[0][1]:
                comm.raise_if_any(InputError(
                    "with distribute='local' every rank's xdata must have the same leading shape "
                    f"and sigma must be given on all ranks or none: rank 0 has x shape {shapes[0][0]}+(n,), "
                    f"sigma {'given' if shapes[0][1] else 'None'}; rank {r} has {tail}+(n,), "
                    f"sigma {'given' if has_sigma else 'None'}"))
        counts = [s[2] for s in shapes]
        n = sum(counts)
        point_offset = sum(counts[: comm.rank])
        chunk_counts = [-(-c // chunk_size) for c in counts]
        first = sum(chunk_counts[: comm.rank])
        runs = []
        acc = 0
        for c in chunk_counts:
            runs.append((acc, acc + c))
            acc += c
        n_leaves = acc
        chunks = _cut_chunks(x, y, sig, chunk_size, point_offset) if counts[comm.rank] else []
        sums = comm.allgather((float(np.sum(y)), float(np.sum(y * y))))
        y_sum, y_sq = sum(s[0] for s in sums), sum(s[1] for s in sums)

    slots = [blk for a, b in runs for blk in dyadic_blocks(a, b, n_leaves)]
    local = LocalChunks(chunks, first, n_leaves, slots, n, y_sum, y_sq)
    return local, x.shape[:-1]
