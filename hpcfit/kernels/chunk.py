"""JIT-compiled chunk kernels.

Each kernel sees one fixed-shape chunk and the normalized parameters ``u`` as arrays, so a fit
compiles each kernel once, and a second fit with the same model, loss and shapes compiles
nothing (:data:`TRACE_COUNTS` counts traces, i.e. compilations).

Output layout of one chunk (the leaf of the reduction tree):

* Jacobian kernel: ``[upper(JᵀWJ) (p(p+1)/2), JᵀWr (p), cost, n_bad, first_bad]``
* cost kernel:     ``[cost, n_bad, first_bad]``

``n_bad`` counts real (unpadded) points whose residual is not finite or whose cost term
overflows float64 (|r| beyond ~1e154: garbage in the data, not a scale the fit can use); those
points are zeroed in the sums and ``first_bad`` is the first one's index within the chunk (chunk
size when there is none).
"""
from __future__ import annotations

import collections
import hashlib
from typing import Callable

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from .losses import loss_cost_terms, scale_rows  # noqa: E402
from .sums import gram, point_sum  # noqa: E402

#: Number of times each kernel kind was traced (each trace is a compilation).
TRACE_COUNTS: collections.Counter = collections.Counter()


# Jitted kernels by (kind, model, loss, mode), least recently used first. Bounded, because every
# new model object (e.g. a lambda written inside a loop) is a new entry holding its compilation.
_CACHE: collections.OrderedDict = collections.OrderedDict()
_CACHE_SIZE = 32


def _cached(key: tuple, build: Callable):
    """The jitted kernel for ``key``; an unhashable model (a dataclass with __call__, say) is
    compiled for this fit only."""
    try:
        hash(key)
    except TypeError:
        return build()
    if key in _CACHE:
        _CACHE.move_to_end(key)
    else:
        _CACHE[key] = build()
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return _CACHE[key]


def _model_residual(model: Callable, x, y, w, offset, scale):
    """r(u) = w·(f(x, θ) − y) with θ = offset + scale·u (scipy's sign convention)."""

    def residual(u):
        theta = offset + scale * u
        f = model(x, *(theta[i] for i in range(theta.shape[0])))
        return (jnp.asarray(f, dtype=y.dtype) - y) * w

    return residual


def _jacobian(model, mode, u, x, y, w, offset, scale):
    """(r, J) of one chunk, J = ∂r/∂u, by the chosen differentiation mode."""
    residual = _model_residual(model, x, y, w, offset, scale)
    if mode == "forward":
        # Forward mode through the vectorised model: the primal once, then p JVPs (one per
        # parameter, vectorised) through the whole chunk; the same maths as jacfwd.
        r, jvp = jax.linearize(residual, u)
        jac = jax.vmap(jvp, out_axes=1)(jnp.eye(u.shape[0], dtype=u.dtype))
        return r, jac

    # per_point_reverse: one reverse pass per point, vectorised with vmap.
    def point(xi, yi, wi):
        return _model_residual(model, xi, yi, wi, offset, scale)(u)

    x_axis = x.ndim - 1
    r = jax.vmap(point, in_axes=(x_axis, 0, 0))(x, y, w)
    jac = jax.vmap(jax.jacrev(lambda v, xi, yi, wi: _model_residual(model, xi, yi, wi, offset, scale)(v)),
                   in_axes=(None, x_axis, 0, 0))(u, x, y, w)
    return r, jac


def _bad_points(mask, finite_r, cost_terms):
    """Real points whose residual is not finite or whose cost term overflows: their mask, count and
    first index in the chunk."""
    bad = mask & ~(finite_r & jnp.isfinite(cost_terms))
    first = jnp.min(jnp.where(bad, jnp.arange(bad.shape[0]), bad.shape[0]))
    # a count is exact in any order of addition, so XLA may split it over threads
    return bad, jnp.sum(bad).astype(cost_terms.dtype), first.astype(cost_terms.dtype)


def scaled_rows(loss: str, r, n_valid, f_scale):
    """A chunk's residuals after the robust loss: (row scale of J, scaled r, the points kept, cost,
    n_bad, first_bad) — padding and bad points left out of every sum."""
    mask = jnp.arange(r.shape[0]) < n_valid
    finite = jnp.isfinite(r)
    j_scale, r_scaled, cost_terms = scale_rows(loss, jnp.where(mask & finite, r, 0.0), f_scale)
    bad, n_bad, first = _bad_points(mask, finite, cost_terms)
    keep = mask & ~bad
    return j_scale, r_scaled, keep, point_sum(jnp.where(keep, cost_terms, 0.0)), n_bad, first


def jacobian_kernel(model: Callable, loss: str, mode: str = "forward"):
    """The fused kernel: JᵀWJ (packed upper triangle), JᵀWr, cost and bad-point counts of a chunk.

    JᵀJ and Jᵀr come from one product AᵀA with A = [J | r]: one GEMM instead of a GEMM and a
    GEMV (measured 1.5x faster for 53 parameters on CPU). Only residuals are checked point by
    point; a non-finite derivative at a finite residual shows up as a non-finite reduced JᵀJ,
    which the caller reports (a per-row check of J cost as much as the rest of the kernel).
    """

    def build():
        def kernel(u, offset, scale, x, y, w, n_valid, f_scale):
            TRACE_COUNTS["jacobian"] += 1
            y = y.astype(offset.dtype)            # float32 data arrive as float32; the sums are float64
            r, jac = _jacobian(model, mode, u, x, y, w, offset, scale)
            j_scale, r_scaled, keep, cost, n_bad, first = scaled_rows(loss, r, n_valid, f_scale)
            if loss != "linear":
                jac = jac * j_scale[:, None]
            a = jnp.where(keep[:, None], jnp.concatenate([jac, r_scaled[:, None]], axis=1), 0.0)
            ata = gram(a)
            p = jac.shape[1]
            rows, cols = jnp.triu_indices(p)
            return jnp.concatenate([ata[:p, :p][rows, cols], ata[:p, p], jnp.stack([cost, n_bad, first])])

        return jax.jit(kernel)

    return _cached(("jacobian", model, loss, mode), build)


def cost_kernel(model: Callable, loss: str):
    """The cost-only kernel used for trial steps: cost and bad-point counts of a chunk."""

    def build():
        def kernel(u, offset, scale, x, y, w, n_valid, f_scale):
            TRACE_COUNTS["cost"] += 1
            y = y.astype(offset.dtype)
            r = _model_residual(model, x, y, w, offset, scale)(u)
            mask = jnp.arange(r.shape[0]) < n_valid
            finite = jnp.isfinite(r)
            terms = loss_cost_terms(loss, jnp.where(mask & finite, r, 0.0), f_scale)
            bad, n_bad, first = _bad_points(mask, finite, terms)
            cost = point_sum(jnp.where(mask & ~bad, terms, 0.0))
            return jnp.stack([cost, n_bad, first])

        return jax.jit(kernel)

    return _cached(("cost", model, loss), build)


def model_output_shape(model: Callable, x_shape: tuple, n_params: int, implicit: bool = False):
    """Shape the model returns for one chunk, found by tracing only (no compilation, no data).
    With implicit coordinates x is the chunk's integer start index."""
    x = jax.ShapeDtypeStruct(x_shape, jnp.int64 if implicit else jnp.float64)
    theta = jax.ShapeDtypeStruct((n_params,), jnp.float64)
    out = jax.eval_shape(lambda xx, th: jnp.asarray(model(xx, *(th[i] for i in range(n_params)))), x, theta)
    return tuple(out.shape)


def model_fingerprint(model: Callable, x_shape: tuple, n_params: int, implicit: bool = False) -> str:
    """SHA-256 of what the model computes on points of shape ``x_shape`` (a few: the chunk size must
    not count): its jaxpr (the operations, with every literal) and the values of the arrays it
    closes over. Two models with the same name but other
    code or other configuration (a built-in model's angles, dt, q, ...) differ; the same model in a
    new process is the same. Found by tracing only."""
    x = jax.ShapeDtypeStruct(x_shape, jnp.int64 if implicit else jnp.float64)
    theta = jax.ShapeDtypeStruct((n_params,), jnp.float64)
    closed = jax.make_jaxpr(lambda xx, th: jnp.asarray(model(xx, *(th[i] for i in range(n_params)))))(x, theta)
    digest = hashlib.sha256(str(closed.jaxpr).encode())
    for const in closed.consts:
        arr = np.asarray(const)
        digest.update(f"{arr.dtype}{arr.shape}".encode())
        digest.update(np.ascontiguousarray(arr).tobytes())
    return digest.hexdigest()


def residuals(model: Callable, x, y, sigma, params, chunk_size: int = 1 << 16) -> np.ndarray:
    """(f(x, *params) − y)/sigma at the given points, as scipy's ``fvec`` (computed a chunk at a
    time so memory stays bounded by the chunk, not by the arrays)."""
    fn = jax.jit(lambda xs, p: model(xs, *p))
    p = tuple(jnp.asarray(v) for v in np.asarray(params, dtype=float))
    out = np.empty(y.shape[0])
    for lo in range(0, y.shape[0], chunk_size):
        hi = min(lo + chunk_size, y.shape[0])
        out[lo:hi] = np.asarray(fn(x[..., lo:hi], p)) - y[lo:hi]
    return out if sigma is None else out / sigma


def prediction_kernel(model: Callable):
    """f(x, θ) on one chunk, in user parameters θ (for per-point outputs: fitted values)."""

    def build():
        def kernel(x, theta):
            TRACE_COUNTS["prediction"] += 1
            return jnp.asarray(model(x, *(theta[i] for i in range(theta.shape[0]))), dtype=jnp.float64)

        return jax.jit(kernel)

    return _cached(("prediction", model), build)
