"""A data source whose points get their σ from a function of the global point index.

Noise estimated from the data (XPCS: per map and lag) is a small table, not a dataset: this wrapper
gives any source (arrays, HDF5, a beamline file) those σ as it reads its chunks, so no σ array of
n points is ever stored. The inner source's own weights multiply in (1 for a source without σ;
0 on padding, which stays 0).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from .chunks import Chunk, LocalChunks


class WeightedSource:
    """``inner`` with σ = ``sigma_of(global indices)`` at every point (> 0, finite).

    ``inverse_sigma_over(start, stop)``, when given, is 1/σ of the contiguous points start … stop − 1
    (the same values as ``1 / sigma_of``), a faster way for the chunks, which are contiguous: finding
    each point's σ took 1–2 ms of every 32768-point chunk's ~7 ms Jacobian pass.
    Everything else (describe, fingerprint, close, grid, ...) is the inner source's."""

    def __init__(self, inner, sigma_of: Callable[[np.ndarray], np.ndarray],
                 inverse_sigma_over: Callable[[int, int], np.ndarray] | None = None):
        self.inner, self.sigma_of, self.inverse_sigma_over = inner, sigma_of, inverse_sigma_over

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def check_arguments(self) -> None:
        getattr(self.inner, "check_arguments", lambda: None)()

    def open(self, comm, chunk_size: int) -> LocalChunks:
        local = self.inner.open(comm, chunk_size)
        n = local.n_points

        def weights(index: np.ndarray) -> np.ndarray:
            return 1.0 / self.sigma_of(np.minimum(index, n - 1))

        def chunk_weights(start: int, size: int) -> np.ndarray:
            if self.inverse_sigma_over is None:
                return weights(start + np.arange(size))
            inside = self.inverse_sigma_over(start, min(start + size, n))
            return np.pad(inside, (0, size - inside.size), mode="edge")      # padding: the last point's

        def read(i: int) -> Chunk:
            chunk = local.read(i)
            return replace(chunk, weight=chunk.weight * chunk_weights(chunk.global_start, chunk.y.shape[0]))

        def take(indices: np.ndarray) -> tuple:
            x, y, w = local.take(indices)
            return x, y, w * weights(np.asarray(indices))

        return replace(local, read=read, take=None if local.take is None else take,
                       cacheable=local.cacheable)
