"""The size of a few Jacobian columns at the start, for scaling parameters that start at 0.

A parameter with p0 = 0 has no scale of its own; on data of an extreme magnitude its column of J
(∂f/∂θ·w) can be 1e±300 and its square leaves float64. This kernel measures those columns on
the fixed sample (hpcfit.phases.scales), unsquared, so the measurement itself cannot overflow.
"""
from __future__ import annotations

import collections
from typing import Callable

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from .sums import point_sum  # noqa: E402

# Jitted kernels by model, least recently used first (bounded as hpcfit.kernels.chunk's cache).
_CACHE: collections.OrderedDict = collections.OrderedDict()
_CACHE_SIZE = 8


def _build(model: Callable):
    def kernel(theta, directions, x, w, n_valid):
        def f(th):
            return jnp.asarray(model(x, *(th[i] for i in range(th.shape[0]))), dtype=theta.dtype)

        _, lin = jax.linearize(f, theta)
        cols = jax.vmap(lin)(directions) * w[None, :]              # (k, m): ∂f/∂θ_j · w
        mask = jnp.arange(cols.shape[1]) < n_valid
        finite = jnp.all(jnp.isfinite(cols) | ~mask[None, :], axis=1)
        a = jnp.where(mask[None, :] & jnp.isfinite(cols), jnp.abs(cols), 0.0)
        top = jnp.max(a, axis=1)
        ss = point_sum(((a / jnp.where(top > 0, top, 1.0)[:, None]) ** 2).T)
        return jnp.stack([top, ss, finite.astype(theta.dtype)])

    return jax.jit(kernel)


def _kernel(model: Callable):
    try:
        hash(model)
    except TypeError:
        return _build(model)
    if model in _CACHE:
        _CACHE.move_to_end(model)
    else:
        _CACHE[model] = _build(model)
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return _CACHE[model]


def column_rms(model: Callable, chunks, theta: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Root mean square over the real points of ``chunks`` (a LocalChunks held in memory) of the
    columns ``columns`` of ∂f/∂θ·w at ``theta``, combined in chunk order: NaN for a column with a
    non-finite entry. Local; the same numbers on every rank for the same chunks."""
    kernel = _kernel(model)
    theta = np.asarray(theta, dtype=float)
    directions = np.zeros((len(columns), theta.size))
    directions[np.arange(len(columns)), columns] = 1.0
    top = np.zeros(len(columns))
    ss = np.zeros(len(columns))
    finite = np.ones(len(columns), dtype=bool)
    n = 0
    for i in range(chunks.n_local):
        c = chunks.read(i)
        t, s, ok = np.asarray(kernel(jnp.asarray(theta), jnp.asarray(directions), c.x, c.weight, c.n_valid))
        finite &= ok > 0
        new_top = np.maximum(top, t)
        with np.errstate(divide="ignore", invalid="ignore"):
            ss = (np.where(new_top > 0, ss * (top / new_top) ** 2, 0.0)
                  + np.where(new_top > 0, s * (t / new_top) ** 2, 0.0))
        top, n = new_top, n + int(c.n_valid)
    rms = top * np.sqrt(ss / max(n, 1))
    return np.where(finite, rms, np.nan)
