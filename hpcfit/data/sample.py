"""Phase 1's fixed sample: a few 10⁴ points of the global data, held in memory on every rank.

Each rank reads the sampled points it owns and one gather gives every rank the whole sample in
global index order, so phase 1's solvers run on it locally — the same numbers on every rank,
whatever the rank count, with no collective per step. Pure numpy (the gather is the communicator's).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..comm import Communicator
from .chunks import Chunk, LocalChunks, pad_chunk, reduction_slots
from .sampling import position_runs, stratified_points


class Sample(NamedTuple):
    indices: np.ndarray        # global point indices, sorted
    x: np.ndarray              # coordinates (k, m) / (m,), or the indices themselves (implicit coordinates)
    y: np.ndarray
    weight: np.ndarray         # 1/sigma
    coords: object | None      # the source's implicit coordinates: x holds indices, the model maps them

    @property
    def size(self) -> int:
        return int(self.y.size)

    def weighted_variance(self, weight_scale: float = 1.0) -> float:
        """Σw²(y − ȳ)²/m with ȳ the w²-weighted mean: what a constant model leaves per point (with the
        weights scaled as the fit scales them, hpcfit.data.scale)."""
        with np.errstate(over="ignore", invalid="ignore"):    # huge y: inf, and phase 2 reports the overflow
            w = self.weight * weight_scale
            if weight_scale != 1.0:       # w² may leave float64 (w = 2^1000): the mean does not need it
                top = float(np.max(w)) if w.size else 1.0
                v = w / top if top > 0 and np.isfinite(top) else w
                mean = float(np.sum(v * v * self.y) / np.sum(v * v))
                return float(np.sum((w * (self.y - mean)) ** 2) / self.size)
            w2 = w * w
            mean = float(np.sum(w2 * self.y) / np.sum(w2))
            return float(np.sum(w2 * (self.y - mean) ** 2) / self.size)


def gather_sample(comm: Communicator, local: LocalChunks, size: int, seed: int) -> Sample:
    """Collective: the stratified sample of ``size`` points (all points when n is smaller) on every rank.

    A read error or a non-finite value on one rank is raised on every rank.
    """
    indices = stratified_points(seed, size, local.n_points)
    first, stop = position_runs(indices, list(local.point_runs))[comm.rank]
    mine = indices[first:stop]

    def read():
        if not mine.size:
            return None, np.zeros(0), np.zeros(0)
        return local.take(mine)

    x, y, w = comm.agree(read)
    parts = comm.allgather((x, y, w))
    y = np.concatenate([p[1] for p in parts])
    w = np.concatenate([p[2] for p in parts])
    if local.coords is not None:
        x = indices
    else:
        x = np.concatenate([p[0] for p in parts if p[1].size], axis=-1)
    return Sample(indices, x, y, w, local.coords)


def sample_chunks(sample: Sample, chunk_size: int, implicit: bool = False) -> LocalChunks:
    """The sample as the chunks of a serial fit (one rank, in memory), padded as any chunk is.

    With the full data's chunk size (even if that pads a small sample) phase 1 calls the kernels
    phase 2 compiles anyway: a fit compiles nothing extra for its sample (with block-sparse passes,
    one Jacobian kernel: the sample's chunk spans more groups than phase 2's).

    ``implicit``: the sample is every point of a source with implicit coordinates (``sample.coords``),
    and its chunks are that source's own: x is the chunk's start index, so the fit's kernels serve."""
    m = sample.size
    n_chunks = -(-m // chunk_size)
    if implicit and (sample.coords is None or m != sample.coords.n_points):
        raise ValueError("implicit sample chunks need every point of a source with implicit coordinates")

    def read(i: int) -> Chunk:
        lo, hi = i * chunk_size, min((i + 1) * chunk_size, m)
        x, y, w = pad_chunk(None if implicit else sample.x[..., lo:hi], sample.y[lo:hi], sample.weight[lo:hi],
                            chunk_size)
        return Chunk(np.asarray(lo) if implicit else x, y, w, hi - lo, lo)

    runs = [(0, n_chunks)]
    return LocalChunks(read, n_chunks, chunk_size, 0, n_chunks, reduction_slots(runs, n_chunks), m,
                       () if implicit else sample.x.shape[:-1] + (chunk_size,), cacheable=True,
                       coords=sample.coords if implicit else None, describe="phase 1 sample")
