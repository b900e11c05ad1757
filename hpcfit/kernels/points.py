"""Sampled points: per-point gradient and loss rows, summed over a canonical tree (the warm-up).

The warm-up works on random global points, not on chunks. Every rank draws the same sorted
sample (:mod:`hpcfit.data.sampling`), reads the points it owns and computes one row per point:
``[∂cost_i/∂u (p), cost_i, bad_i]``. Rows are summed over a binary tree on the *sample position*
(rank r owns a contiguous run of positions), so — as for chunk passes — the reduced sum does not
depend on the rank count; each step ends in one reduction.

Kernels take a fixed number of points (the capacity: 1.25× the rank's expected share of a batch),
so each compiles once per fit; a rank with more sampled points than that runs several slices.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..comm import Communicator
from ..data.chunks import LocalChunks, pad_chunk, reduction_slots
from ..data.grid import block_sums, combine_blocks
from ..data.sampling import evaluation_points, position_runs, sample_points
from .chunk import TRACE_COUNTS, _cached, _jacobian, _model_residual
from .coords import IndexedX
from .evaluator import fill_and_reduce
from .losses import loss_cost_terms, scale_rows


def point_kernel(model: Callable, loss: str, gradient: bool, dtype: str = "float64"):
    """Rows ``[g_i (p), J_i² (p), cost_i, bad_i]`` (gradient) or ``[cost_i, bad_i]`` per point, float64.

    ``g_i = ρ'·r_i·J_i`` is the gradient of point i's cost and ``J_i²`` the squares of its
    (loss-scaled) Jacobian row, the diagonal of its Gauss–Newton matrix. A real point whose row is not finite is
    flagged in ``bad_i`` and zeroed; padding (index ≥ n_valid) is zero. With ``dtype="float32"``
    the model runs in single precision (phase 1 only); rows are returned in float64.
    """
    kind = "point_gradient" if gradient else "point_cost"

    def build():
        def kernel(u, offset, scale, x, y, w, n_valid, f_scale):
            TRACE_COUNTS[kind] += 1
            real = jnp.dtype(dtype)
            u, offset, scale, y, w, f_scale = (a.astype(real) for a in (u, offset, scale, y, w, f_scale))
            if jnp.issubdtype(x.dtype, jnp.floating):
                x = x.astype(real)
            if gradient:
                r, jac = _jacobian(model, "forward", u, x, y, w, offset, scale)
                j_scale, r_scaled, cost = scale_rows(loss, r, f_scale)
                jac = jac * j_scale[:, None]
                values = jnp.concatenate([jac * r_scaled[:, None], jac * jac, cost[:, None]], axis=1)
            else:
                r = _model_residual(model, x, y, w, offset, scale)(u)
                values = loss_cost_terms(loss, r, f_scale)[:, None]
            real_point = jnp.arange(values.shape[0]) < n_valid
            bad = real_point & ~jnp.all(jnp.isfinite(values), axis=1)
            values = jnp.where((real_point & ~bad)[:, None], values, 0.0).astype(jnp.float64)
            return jnp.concatenate([values, bad[:, None].astype(jnp.float64)], axis=1)

        return jax.jit(kernel)

    return _cached((kind, model, loss, dtype), build)


def _capacity(expected: float, limit: int) -> int:
    """Kernel width: 1.25× the expected point count (room for the sample's spread), but no more
    than ``limit``, rounded up to a multiple of 128."""
    width = max(1.0, min(1.25 * expected, limit))
    return 128 * int(np.ceil(width / 128))


class PointSet(NamedTuple):
    """This rank's part of a sample: every rank's run of sample positions, and this rank's points
    as padded device slices (None until read)."""

    size: int                        # sample size over all ranks
    runs: list[tuple[int, int]]      # every rank's run of sample positions
    first: int                       # this rank's first position
    indices: np.ndarray              # this rank's sampled global indices
    slices: list[tuple] | None = None  # (x, y, w, n_valid) device arrays per kernel call
    y: np.ndarray | None = None      # this rank's y values and weights (host)
    w: np.ndarray | None = None


class PointResult(NamedTuple):
    """Reduced values of one sampled-points evaluation, identical on every rank (means per point)."""

    loss: float
    grad: np.ndarray | None         # ("gradient" only)
    curvature: np.ndarray | None    # mean diagonal of JᵀWJ ("gradient" only)
    n_bad: int
    flags: np.ndarray = ()


class PointEvaluator:
    """Collective evaluations on sampled points: minibatch gradients and the evaluation-subset loss.

    A minibatch is read inside its step's evaluation, so a read error on one rank travels with the
    step's single reduction; the evaluation subset is read once (:meth:`evaluation_set`).
    """

    def __init__(self, comm: Communicator, local: LocalChunks, model: Callable, loss: str, f_scale: float,
                 offset: np.ndarray, scale: np.ndarray, dtype: str, batch_size: int, seed: int,
                 weight_scale: float = 1.0):
        self.comm, self.local = comm, local
        self.p = offset.shape[0]
        model = model if local.coords is None else IndexedX(model, local.coords)
        self._gradient = point_kernel(model, loss, True, dtype)
        self._cost = point_kernel(model, loss, False, dtype)
        self._args = (jnp.asarray(offset), jnp.asarray(scale))
        self._weight_scale = float(weight_scale)         # as PassEvaluator's
        self._f_scale = jnp.asarray(float(f_scale) * self._weight_scale)
        lo, hi = local.point_runs[comm.rank]
        share = (hi - lo) / local.n_points
        self.batch_size, self.seed = batch_size, seed
        self._batch_capacity = _capacity(batch_size * share, batch_size)
        self.subset: PointSet | None = None      # the evaluation subset of "loss" commands
        self.steps = 0                           # minibatch gradients evaluated

    @classmethod
    def for_problem(cls, problem) -> "PointEvaluator":
        """The warm-up's evaluator of ``problem`` (a :class:`~hpcfit.problem.Problem`): its data, model,
        loss, normalization and residual scale, and the warm-up's dtype, batch size and seed."""
        opts, norm = problem.options, problem.norm
        return cls(problem.comm, problem.local, problem.model, opts.loss, opts.f_scale, norm.offset, norm.scale,
                   opts.warmup_dtype, opts.warmup_batch_size, opts.warmup_seed, problem.weight_scale)

    # -- samples -------------------------------------------------------------------------------

    def _layout(self, sample: np.ndarray) -> PointSet:
        runs = position_runs(sample, self.local.point_runs)
        first, stop = runs[self.comm.rank]
        return PointSet(sample.size, runs, first, sample[first:stop])

    def _read(self, points: PointSet, capacity: int) -> PointSet:
        """Read this rank's points and lay them out for the kernels (local; may raise)."""
        mine = points.indices
        if not mine.size:
            return points._replace(slices=[], y=np.zeros(0), w=np.zeros(0))
        x, y, w = self.local.take(mine)
        w = w * self._weight_scale
        x = mine if x is None else x
        slices = [_padded(x[..., lo:lo + capacity], y[lo:lo + capacity], w[lo:lo + capacity], capacity)
                  for lo in range(0, mine.size, capacity)]
        return points._replace(slices=slices, y=y, w=w)

    def minibatch(self, step: int) -> PointSet:
        """The layout of step ``step``'s minibatch (its points are read when it is evaluated)."""
        return self._layout(sample_points(self.seed, step, self.batch_size, self.local.n_points))

    def evaluation_set(self, size: int) -> PointSet:
        """Collective: the fixed evaluation subset (all points when ``size`` >= n), read once; it is
        what "loss" commands evaluate."""
        points = self._layout(evaluation_points(self.seed, size, self.local.n_points))
        self.subset = self.comm.agree(self._read, points, _capacity(points.indices.size, points.indices.size))
        return self.subset

    # -- collective evaluations ------------------------------------------------------------------

    def evaluate(self, cmd, flags=()) -> PointResult:
        """Collective: a driver command: "gradient" on step ``cmd.payload``'s minibatch, or "loss" on
        the evaluation subset, at ``cmd.u``."""
        if cmd.kind == "gradient":
            self.steps += 1
            return self._gradient_result(cmd.u, self.minibatch(cmd.payload), flags)
        total, summed = self._run(self._cost, cmd.u, self.subset, 2, flags)
        return PointResult(total[0] / self.subset.size, None, None, int(total[-1]), summed)

    def counters(self) -> tuple[int]:
        return (self.steps,)

    def restore_counters(self, counters) -> None:
        self.steps = int(counters[0])

    def _gradient_result(self, u, points: PointSet, flags=()) -> PointResult:
        p = self.p
        total, summed = self._run(self._gradient, u, points, 2 * p + 2, flags)
        return PointResult(total[2 * p] / points.size, total[:p] / points.size, total[p:2 * p] / points.size,
                           int(total[-1]), summed)

    def gradient(self, u: np.ndarray, points: PointSet) -> tuple[float, np.ndarray, np.ndarray, int]:
        """Collective: mean cost, mean gradient in u, mean diagonal of JᵀWJ in u, and the number
        of bad points, over the sample."""
        return tuple(self._gradient_result(u, points)[:4])

    def loss(self, u: np.ndarray, points: PointSet) -> tuple[float, int]:
        """Collective: (mean cost, number of bad points) over the sample."""
        total, _ = self._run(self._cost, u, points, 2)
        return total[0] / points.size, int(total[-1])

    def weighted_variance(self, points: PointSet) -> float:
        """Collective: Σw²(y − ȳ)²/size with ȳ the w²-weighted mean — what a constant model leaves
        (two reductions, so a large mean does not cancel the variance)."""
        w2 = points.w * points.w
        sums, _ = self._reduce(points, lambda: np.stack([w2, w2 * points.y], axis=1), 2)
        mean = sums[1] / sums[0]
        return self._reduce(points, lambda: (w2 * (points.y - mean) ** 2)[:, None], 1)[0][0] / points.size

    def _run(self, kernel, u: np.ndarray, points: PointSet, width: int, flags=()) -> tuple[np.ndarray, np.ndarray]:
        def rows():
            ready = points if points.slices is not None else self._read(points, self._batch_capacity)
            u_dev = jnp.asarray(u, dtype=jnp.float64)
            outs = [kernel(u_dev, *self._args, *s, self._f_scale) for s in ready.slices]
            if not outs:
                return np.zeros((0, width))
            return np.concatenate([np.asarray(o)[: int(s[3])] for o, s in zip(outs, ready.slices)])

        return self._reduce(points, rows, width, flags)

    def _reduce(self, points: PointSet, rows: Callable[[], np.ndarray], width: int,
                flags=()) -> tuple[np.ndarray, np.ndarray]:
        """Collective: the canonical tree sum over all sample positions of this rank's ``rows()``,
        and the summed ``flags``."""
        layout = reduction_slots(points.runs, points.size)
        slots = np.zeros((len(layout), width))

        def fill():
            local = rows()
            if local.shape[0]:
                index = {blk: i for i, blk in enumerate(layout)}
                for blk, value in block_sums(local, points.first, points.size).items():
                    slots[index[blk]] = value

        reduced, summed = fill_and_reduce(self.comm, slots, fill, "the model on sampled points", flags=flags)
        return combine_blocks(dict(zip(layout, reduced)), points.size, np.add), summed


def _padded(x: np.ndarray, y: np.ndarray, w: np.ndarray, capacity: int) -> tuple:
    """Device arrays of one kernel call: the points padded to ``capacity`` (weight 0, masked)."""
    n_valid = y.size
    x, y, w = pad_chunk(x, y, w, capacity)
    return jnp.asarray(x), jnp.asarray(y), jnp.asarray(w), jnp.asarray(n_valid)
