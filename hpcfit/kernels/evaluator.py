"""One pass over this rank's chunks, ending in the pass's single collective.

Chunk kernels are dispatched one ahead of the chunk being read back, so JAX computes chunk k+1
while Python folds chunk k into its tree block. Each block of the global chunk tree is summed in
canonical order (:class:`~hpcfit.data.grid.TreeAccumulator`), written into this rank's rows of
the slot buffer, reduced once, and combined over the global tree on every rank: the same bits
whatever the rank count.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import jax.numpy as jnp
import numpy as np

from ..comm import Communicator
from ..data.arrays import LocalChunks
from ..data.grid import TreeAccumulator, combine_blocks
from ..errors import FitError
from .chunk import cost_kernel, jacobian_kernel


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Leaf/block combination: sums, except the last entry (first bad index), which takes the min."""
    out = a + b
    out[-1] = min(a[-1], b[-1])
    return out


@dataclass(frozen=True)
class PassResult:
    """Reduced values of one pass, identical on every rank."""

    cost: float
    n_bad: int
    first_bad: int | None           # global point index of the first non-finite residual
    jtj: np.ndarray | None = None   # (p, p) JᵀWJ in normalized space (Jacobian pass only)
    jtr: np.ndarray | None = None   # (p,)  JᵀWr


@dataclass
class PassStats:
    jacobian_passes: int = 0
    cost_passes: int = 0
    jacobian_seconds: float = 0.0
    cost_seconds: float = 0.0
    reduction_seconds: float = 0.0
    per_pass: list = field(default_factory=list)


class PassEvaluator:
    """Runs Jacobian and cost passes of one fit on this rank's chunks (each call is collective)."""

    def __init__(self, comm: Communicator, local: LocalChunks, model: Callable, loss: str,
                 f_scale: float, offset: np.ndarray, scale: np.ndarray, jacobian_mode: str = "forward"):
        self.comm = comm
        self.local = local
        self.p = offset.shape[0]
        self._jac = jacobian_kernel(model, loss, jacobian_mode)
        self._cost = cost_kernel(model, loss)
        self._offset = jnp.asarray(offset)
        self._scale = jnp.asarray(scale)
        self._f_scale = jnp.asarray(float(f_scale))
        self._chunks = [(jnp.asarray(c.x), jnp.asarray(c.y), jnp.asarray(c.weight), jnp.asarray(c.n_valid))
                        for c in local.chunks]
        self._starts = [c.global_start for c in local.chunks]
        self._blocks = local.local_blocks
        self._slot0 = local.slots.index(self._blocks[0]) if self._blocks else 0
        self.stats = PassStats()

    def jacobian_pass(self, u: np.ndarray) -> PassResult:
        """Collective: JᵀWJ, JᵀWr and cost at ``u`` (normalized parameters)."""
        t0 = time.perf_counter()
        vec = self._run(self._jac, u, self.p * (self.p + 1) // 2 + self.p + 3)
        self.stats.jacobian_passes += 1
        self.stats.jacobian_seconds += time.perf_counter() - t0
        jtj = np.zeros((self.p, self.p))
        rows, cols = np.triu_indices(self.p)
        jtj[rows, cols] = vec[: rows.size]
        jtj[cols, rows] = vec[: rows.size]
        return PassResult(*self._flags(vec), jtj=jtj, jtr=vec[rows.size: rows.size + self.p].copy())

    def cost_pass(self, u: np.ndarray) -> PassResult:
        """Collective: cost at ``u``."""
        t0 = time.perf_counter()
        vec = self._run(self._cost, u, 3)
        self.stats.cost_passes += 1
        self.stats.cost_seconds += time.perf_counter() - t0
        return PassResult(*self._flags(vec))

    @staticmethod
    def _flags(vec: np.ndarray):
        n_bad = int(vec[-2])
        return float(vec[-3]), n_bad, (int(vec[-1]) if n_bad else None)

    def _run(self, kernel, u: np.ndarray, width: int) -> np.ndarray:
        slots = np.zeros((len(self.local.slots), width))
        local_error = None
        try:
            self._fill_blocks(kernel, jnp.asarray(u, dtype=jnp.float64), slots)
        except Exception as exc:  # a failure on this rank must not leave the others waiting
            local_error = FitError(f"evaluating the model failed: {type(exc).__name__}: {exc}")
        t0 = time.perf_counter()
        reduced = self.comm.reduce_slots(slots, local_error)
        self.stats.reduction_seconds += time.perf_counter() - t0
        values = {blk: reduced[i] for i, blk in enumerate(self.local.slots)}
        return combine_blocks(values, self.local.n_leaves, _add)

    def _fill_blocks(self, kernel, u, slots: np.ndarray) -> None:
        args = (u, self._offset, self._scale)
        n_leaves = self.local.n_leaves
        chunk_iter = iter(range(len(self._chunks)))
        pending = None

        def dispatch(i):
            return kernel(*args, *self._chunks[i], self._f_scale)

        next_i = next(chunk_iter, None)
        if next_i is not None:
            pending = dispatch(next_i)
        for b, (level, index) in enumerate(self._blocks):
            first = (index << level) - self.local.first_leaf
            stop = min((index + 1) << level, n_leaves) - self.local.first_leaf
            acc = TreeAccumulator(_add)
            for i in range(first, stop):
                current = pending
                nxt = next(chunk_iter, None)
                if nxt is not None:
                    pending = dispatch(nxt)  # overlap: chunk i+1 runs while chunk i is read back
                leaf = np.array(current, dtype=np.float64)
                if leaf[-2] > 0:
                    leaf[-1] += self._starts[i]
                else:
                    leaf[-1] = np.inf
                acc.push(leaf)
            slots[self._slot0 + b] = acc.result()
