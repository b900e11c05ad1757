"""One pass over this rank's chunks, ending in the pass's single collective.

Chunk kernels are dispatched one ahead of the chunk being read back, so JAX computes chunk k+1
while Python folds chunk k into its tree block. Each block of the global chunk tree is summed in
canonical order (:class:`~hpcfit.data.grid.TreeAccumulator`), written into this rank's rows of
the slot buffer, reduced once, and combined over the global tree on every rank: the same bits
whatever the rank count.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import jax.numpy as jnp
import numpy as np

from ..comm import Communicator
from ..data.chunks import LocalChunks, chunk_checksum
from ..data.grid import TreeAccumulator, combine_blocks
from ..errors import FitError, HpcfitError, InputError
from ..groups import DenseLayout
from ..progress import Progress
from .chunk import cost_kernel, jacobian_kernel
from .coords import IndexedX, implicit_model
from .grouped import grouped_jacobian_kernel


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
    flags: np.ndarray = ()          # the callers' flags, summed over ranks by the same reduction


@dataclass
class PassStats:
    jacobian_passes: int = 0
    cost_passes: int = 0
    jacobian_seconds: float = 0.0
    cost_seconds: float = 0.0
    reduction_seconds: float = 0.0
    read_seconds: float = 0.0       # reading chunks from the source (on the reader thread, overlapping compute)


def fill_and_reduce(comm: Communicator, slots: np.ndarray, fill: Callable[[], None], what: str,
                    stats: PassStats | None = None, flags=()) -> tuple[np.ndarray, np.ndarray]:
    """Collective: run this rank's ``fill`` of its rows of ``slots``, then the single reduction, which
    also sums ``flags``; returns (reduced slots, summed flags). A failure in ``fill`` (a NaN read
    from a file, a model error) travels with the reduction, so every rank raises it and none is
    left waiting."""
    local_error = None
    try:
        fill()
    except HpcfitError as exc:
        local_error = exc
    except Exception as exc:  # noqa: BLE001 - a failure on this rank must not leave the others waiting
        local_error = FitError(f"evaluating {what} failed: {type(exc).__name__}: {exc}")
    t0 = time.perf_counter()
    reduced, summed = comm.reduce_slots(slots, local_error, flags)
    if stats is not None:
        stats.reduction_seconds += time.perf_counter() - t0
    return reduced, summed


class PassEvaluator:
    """Runs Jacobian and cost passes of one fit on this rank's chunks (each call is collective).

    Chunks are read on demand, one ahead on a background thread, so a streaming source holds
    about three chunks at a time; a cacheable source keeps its device copies after the first pass.
    With ``groups`` (a :class:`~hpcfit.groups.GroupLayout`) the Jacobian pass is block-sparse and
    its reduction carries the arrow-shaped JᵀWJ.
    """

    def __init__(self, comm: Communicator, local: LocalChunks, model: Callable, loss: str,
                 f_scale: float, offset: np.ndarray, scale: np.ndarray, jacobian_mode: str = "forward",
                 weight_scale: float = 1.0, groups=None):
        self.comm = comm
        self.local = local
        self.p = offset.shape[0]
        self.groups = groups
        if groups is None:
            self._jac = jacobian_kernel(implicit_model(model, local), loss, jacobian_mode)
        elif isinstance(model, IndexedX):     # a sample's chunks: global indices the model maps to coordinates
            self._jac = grouped_jacobian_kernel(model.model, loss, groups, model.coords, local.chunk_size, True)
        else:
            self._jac = grouped_jacobian_kernel(model, loss, groups, local.coords, local.chunk_size)
        self._cost = cost_kernel(implicit_model(model, local), loss)
        self._offset = jnp.asarray(offset)
        self._scale = jnp.asarray(scale)
        # residuals (f − y)·w are scaled by weight_scale (an exact power of two, hpcfit.data.scale),
        # and the robust loss's f_scale with them
        self._weight_scale = float(weight_scale)
        self._f_scale = jnp.asarray(float(f_scale) * self._weight_scale)
        self._cache: dict[int, tuple] = {}
        self._starts = [0] * local.n_local
        blocks = local.local_blocks
        self._slot0 = local.slots.index(blocks[0]) if blocks else 0
        # local chunk range [first, stop) of each tree block, and the block of each chunk
        self._block_range = [((index << level) - local.first_leaf,
                              min((index + 1) << level, local.n_leaves) - local.first_leaf)
                             for level, index in blocks]
        self._block_of = [b for b, (lo, hi) in enumerate(self._block_range) for _ in range(lo, hi)]
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hpcfit-read") \
            if not local.cacheable else None
        self.stats = PassStats()
        self.chunk_checksums: dict[int, int] | None = None   # global chunk → CRC32, when tracked
        self.show_progress = False       # rank 0 of a verbose fit: progress lines for long passes
        self._ahead: threading.Thread | None = None

    @classmethod
    def for_problem(cls, problem) -> "PassEvaluator":
        """The evaluator of ``problem`` (a :class:`~hpcfit.problem.Problem`) over all its data: its
        model, loss, normalization, residual scale and Jacobian layout."""
        return cls._of(problem, problem.comm, problem.local, problem.model, problem.groups)

    @classmethod
    def for_sample(cls, problem, local: LocalChunks, model: Callable, groups=None) -> "PassEvaluator":
        """Phase 1's evaluator: ``problem``'s loss, normalization and residual scale over a sample's
        ``local`` chunks, held whole on each rank (a serial communicator), with the sample's
        ``model`` and ``groups`` (None: dense passes)."""
        return cls._of(problem, Communicator(None), local, model, groups)

    @classmethod
    def _of(cls, problem, comm, local, model, groups) -> "PassEvaluator":
        opts, norm = problem.options, problem.norm
        return cls(comm, local, model, opts.loss, opts.f_scale, norm.offset, norm.scale, opts.jacobian_mode,
                   problem.weight_scale, groups)

    def compile_ahead(self, u: np.ndarray) -> None:
        """Compile this evaluator's kernels on a background thread, on this rank's first chunk at
        ``u``, while the caller does other work (phase 1 on the sample): a first call then pays
        phase 2's compilation in parallel, not after phase 1. Nothing here is collective and its
        values are not used: the next pass waits for it, and any error is left to that pass."""
        if self.local.n_local == 0 or self._ahead is not None:
            return

        def work():
            try:
                chunk = self._to_device(0)
                if self.local.cacheable:
                    self._cache[0] = chunk
                args = (jnp.asarray(u, dtype=jnp.float64), self._offset, self._scale)
                for kernel in (self._jac, self._cost):
                    extra = chunk[4:] if self.groups is not None and kernel is self._jac else ()
                    np.asarray(kernel(*args, *chunk[:4], self._f_scale, *extra))
            except Exception:  # noqa: BLE001 - the pass that needs the kernel reports it
                self._cache.pop(0, None)

        self._ahead = threading.Thread(target=work, name="hpcfit-compile", daemon=True)
        self._ahead.start()

    def _wait_ahead(self) -> None:
        if self._ahead is not None:
            self._ahead.join()
            self._ahead = None

    def track_checksums(self) -> None:
        """From now on, checksum every chunk as it is read (no extra read); a chunk read again
        (streaming sources re-read each pass) must give the same checksum."""
        self.chunk_checksums = {}

    def close(self) -> None:
        self._wait_ahead()
        if self._reader is not None:
            self._reader.shutdown(wait=True)
        self._cache.clear()

    def evaluate(self, cmd, flags=()) -> PassResult:
        """Collective: the pass a driver command asks for ("jacobian" or "cost") at ``cmd.u``."""
        return (self.jacobian_pass if cmd.kind == "jacobian" else self.cost_pass)(cmd.u, flags)

    def counters(self) -> tuple[int, int]:
        return self.stats.jacobian_passes, self.stats.cost_passes

    def restore_counters(self, counters) -> None:
        self.stats.jacobian_passes, self.stats.cost_passes = (int(c) for c in counters)

    def jacobian_pass(self, u: np.ndarray, flags=()) -> PassResult:
        """Collective: JᵀWJ, JᵀWr and cost at ``u`` (normalized parameters)."""
        t0 = time.perf_counter()
        layout = self.groups if self.groups is not None else DenseLayout(self.p)
        vec, summed = self._run(self._jac, u, layout.width, flags)
        self.stats.jacobian_passes += 1
        self.stats.jacobian_seconds += time.perf_counter() - t0
        jtj, jtr = layout.unpack(vec)
        return PassResult(*self._flags(vec), jtj=jtj, jtr=jtr, flags=summed)

    def cost_pass(self, u: np.ndarray, flags=()) -> PassResult:
        """Collective: cost at ``u``."""
        t0 = time.perf_counter()
        vec, summed = self._run(self._cost, u, 3, flags)
        self.stats.cost_passes += 1
        self.stats.cost_seconds += time.perf_counter() - t0
        return PassResult(*self._flags(vec), flags=summed)

    @staticmethod
    def _flags(vec: np.ndarray):
        n_bad = int(vec[-2])
        return float(vec[-3]), n_bad, (int(vec[-1]) if n_bad else None)

    def _run(self, kernel, u: np.ndarray, width: int, flags) -> tuple[np.ndarray, np.ndarray]:
        self._wait_ahead()
        slots = np.zeros((len(self.local.slots), width))
        reduced, summed = fill_and_reduce(self.comm, slots, lambda: self._fill_blocks(
            kernel, jnp.asarray(u, dtype=jnp.float64), slots), "the model", self.stats, flags)
        values = {blk: reduced[i] for i, blk in enumerate(self.local.slots)}
        return combine_blocks(values, self.local.n_leaves, _add), summed

    def _to_device(self, i: int) -> tuple:
        t0 = time.perf_counter()
        c = self.local.read(i)
        self.stats.read_seconds += time.perf_counter() - t0
        self._starts[i] = c.global_start
        if self.chunk_checksums is not None:
            crc, k = chunk_checksum(c), self.local.first_leaf + i
            if self.chunk_checksums.setdefault(k, crc) != crc:
                raise InputError(f"the data of chunk {k} (global points from {c.global_start}) changed between two "
                                 f"passes of the fit ({self.local.describe}): its answer would mix two versions of "
                                 "the data")
        weight = c.weight if self._weight_scale == 1.0 else c.weight * self._weight_scale
        chunk = (jnp.asarray(c.x), jnp.asarray(c.y), jnp.asarray(weight), jnp.asarray(c.n_valid))
        # the block-sparse kernel finds its points' groups from the global start (explicit x)
        return chunk if self.groups is None else chunk + (jnp.asarray(c.global_start, dtype=jnp.int64),)

    def _device_chunks(self):
        """This rank's chunks as device arrays, in order: cached, or read one ahead on a thread."""
        n = self.local.n_local
        if self.local.cacheable:
            for i in range(n):
                if i not in self._cache:
                    self._cache[i] = self._to_device(i)
                yield self._cache[i]
            return
        future = self._reader.submit(self._to_device, 0) if n else None
        for i in range(n):
            current = future.result()
            future = self._reader.submit(self._to_device, i + 1) if i + 1 < n else None
            yield current

    def _fill_blocks(self, kernel, u, slots: np.ndarray) -> None:
        verify = self.local.verify or (lambda: None)
        verify()                  # a file changed since the last pass: an error on every rank, not mixed data
        args = (u, self._offset, self._scale)
        acc = None

        grouped = self.groups is not None and kernel is self._jac

        def consume(i, out):
            nonlocal acc
            b = self._block_of[i]
            if i == self._block_range[b][0]:
                acc = TreeAccumulator(_add)
            leaf = np.array(out, dtype=np.float64)
            if grouped:
                q = self.groups.n_shared + self.groups.span * self.groups.per_group + 1
                leaf = self.groups.leaf(leaf[:-4].reshape(q, q), int(leaf[-4]), leaf[-3:])
            leaf[-1] = leaf[-1] + self._starts[i] if leaf[-2] > 0 else np.inf
            acc.push(leaf)
            if i == self._block_range[b][1] - 1:
                slots[self._slot0 + b] = acc.result()

        progress = None
        if self.show_progress:                     # this rank's chunks stand for the pass: ranks keep pace
            progress = Progress(f"{'Jacobian' if kernel is self._jac else 'cost'} pass (rank 0's chunks)",
                                self.local.n_local, "chunks", self.local.chunk_size)
        pending = None
        for i, chunk in enumerate(self._device_chunks()):
            extra = chunk[4:] if grouped else ()
            out = kernel(*args, *chunk[:4], self._f_scale, *extra)    # dispatched asynchronously
            if pending is not None:
                consume(*pending)                          # reads back chunk i-1 while chunk i runs
                if progress is not None:
                    progress.update(i)
            pending = (i, out)
        if pending is not None:
            consume(*pending)
        if progress is not None:
            progress.close()
        verify()                  # ... or changed during this one
