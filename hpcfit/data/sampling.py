"""Random points by global index, the same on every rank whatever the rank count.

A sample is drawn from a counter-based generator (Philox) keyed by ``(seed, stream)``: step k of
the warm-up uses stream k, the fixed evaluation subset its own stream. Every rank draws the whole
sample (a few thousand integers) and keeps the points it owns, so no rank needs to talk to another
to know the sample, and the sample does not depend on how the points are split between ranks.
Pure numpy.
"""
from __future__ import annotations

import numpy as np

#: Stream of the fixed evaluation subset; warm-up steps use streams 0, 1, 2, ...
EVALUATION_STREAM = 2 ** 64 - 1


def sample_points(seed: int, stream: int, size: int, n_points: int) -> np.ndarray:
    """``size`` global point indices in [0, n_points), with replacement, sorted.

    Indices are Philox's raw 64-bit outputs modulo n (a bias below n/2⁶⁴), so the sample depends on
    the Philox algorithm only, not on how a numpy version turns bits into integers.
    """
    key = np.array([seed % 2 ** 64, stream % 2 ** 64], dtype=np.uint64)
    raw = np.random.Philox(key=key).random_raw(size)
    return np.sort(raw % np.uint64(n_points)).astype(np.int64)


def evaluation_points(seed: int, size: int, n_points: int) -> np.ndarray:
    """The fixed evaluation subset: every point when ``size >= n_points`` (all data is cheap),
    else ``size`` points drawn from the evaluation stream."""
    if size >= n_points:
        return np.arange(n_points, dtype=np.int64)
    return sample_points(seed, EVALUATION_STREAM, size, n_points)


def position_runs(sample: np.ndarray, point_runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """For a sorted sample, each rank's run ``[first, stop)`` of sample positions, in rank order,
    from each rank's global point range ``point_runs``."""
    starts = np.searchsorted(sample, [lo for lo, _ in point_runs], side="left")
    stops = np.searchsorted(sample, [hi for _, hi in point_runs], side="left")
    return list(zip(starts.tolist(), stops.tolist()))


#: Stream of phase 1's explore sample (stratified, see :func:`stratified_points`).
EXPLORE_STREAM = 2 ** 64 - 2


def stratified_points(seed: int, size: int, n_points: int) -> np.ndarray:
    """``size`` distinct global indices, one drawn in each of ``size`` equal strata of [0, n): every
    part of the data is represented (every angle of an XPCS map, every region of a curve), no point
    twice. All points when ``size >= n_points``. Sorted; the same for any rank count."""
    if size >= n_points:
        return np.arange(n_points, dtype=np.int64)
    edges = (np.arange(size + 1, dtype=np.float64) * (n_points / size)).astype(np.int64)
    edges[-1] = n_points
    width = (edges[1:] - edges[:-1]).astype(np.uint64)
    key = np.array([seed % 2 ** 64, EXPLORE_STREAM], dtype=np.uint64)
    raw = np.random.Philox(key=key).random_raw(size)
    return edges[:-1] + (raw % width).astype(np.int64)
