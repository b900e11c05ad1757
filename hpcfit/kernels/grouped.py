"""The block-sparse Jacobian kernel for models with per-group parameters (:mod:`hpcfit.groups`).

A point's Jacobian row is non-zero only on the shared parameters and its own group's, so the
kernel differentiates those alone: ``n_shared + span·per_group`` directions (``span``, the most
groups a chunk touches, is 1 or 2 for chunks no larger than a group) instead of p. A model may
give these derivatives itself — ``model.grouped_jacobian(x, *params)`` returning (f, ∂f/∂shared
(n, n_shared), ∂f/∂own (n, per_group)) — which the XPCS model does from its per-frame integrals;
otherwise forward-mode JVPs along those directions give them.

Output of one chunk: ``[AᵀA (Q², Q = n_shared + span·per_group + 1), first_group, cost, n_bad,
first_bad]``
with A = [J_shared | J_own of slot 0 | … | J_own of slot span−1 | r], slot t's columns being zero
outside the rows of group ``first_group + t``; the evaluator packs AᵀA into the arrow layout on the
host (:meth:`hpcfit.groups.GroupLayout.leaf`).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .chunk import TRACE_COUNTS, _cached, _model_residual, scaled_rows
from .coords import coordinates_at, split_contiguous
from .sums import gram


def _point_groups(layout, index, start=None):
    """Group of each global point index (JAX); with ``start``, ``index`` is the contiguous run from
    there (a chunk), whose groups need only one division."""
    per = layout.uniform
    if per is not None:
        if start is not None:
            return split_contiguous(start, index.shape[0], layout.starts[-1] - 1, per)[0]
        return index // per
    return jnp.searchsorted(jnp.asarray(layout.starts[1:-1]), index, side="right")


def _own_columns(layout, groups, scale):
    """∂θ/∂u of each point's own parameters: (n, per_group)."""
    j = jnp.arange(layout.per_group)
    return scale[layout.own_index(groups[:, None], j[None, :])]


def _derivatives(model, layout, u, offset, scale, x, y, w, groups, first_group):
    """r and the block-sparse J = ∂r/∂u of one chunk: (r, J_shared (n, s), J_own (n, k))."""
    s, k = layout.n_shared, layout.per_group
    own = getattr(model, "grouped_jacobian", None)
    if own is not None:
        theta = offset + scale * u
        f, d_shared, d_own = own(x, *(theta[i] for i in range(theta.shape[0])))
        r = (jnp.asarray(f, dtype=y.dtype) - y) * w
        return r, d_shared * (scale[None, :s] * w[:, None]), d_own * (_own_columns(layout, groups, scale) * w[:, None])
    # Forward mode along the shared directions and those of each group the chunk touches.
    p = u.shape[0]
    slot_groups = jnp.minimum(first_group + jnp.arange(layout.span), layout.n_groups - 1)
    own_idx = layout.own_index(slot_groups[:, None], jnp.arange(k)[None, :]).reshape(-1)
    directions = jnp.concatenate([jnp.eye(s, p, dtype=u.dtype),
                                  jax.nn.one_hot(own_idx, p, dtype=u.dtype)], axis=0)
    r, jvp = jax.linearize(_model_residual(model, x, y, w, offset, scale), u)
    jac = jax.vmap(jvp, out_axes=1)(directions)
    slot = groups - first_group
    d_own = sum(jnp.where((slot == t)[:, None], jac[:, s + t * k: s + (t + 1) * k], 0.0) for t in range(layout.span))
    return r, jac[:, :s], d_own


def _slot_products(layout, a, d_own, slot):
    """AᵀA of A = [J_shared | J_own of slot 0 | … | r] without forming A when a chunk spans many
    groups (a sample): the shared block by one GEMM of [J_shared | r], each slot's own and coupling
    blocks by segment sums over the points — work per point independent of the span — placed with
    a few scatters whose indices are static (no per-slot operations to trace)."""
    s, k, span = layout.n_shared, layout.per_group, layout.span
    q = s + span * k + 1
    shared = gram(a)                                                  # a = [J_shared | r]: (s+1)²
    own_own = jax.ops.segment_sum((d_own[:, :, None] * d_own[:, None, :]).reshape(-1, k * k), slot, span)
    with_own = jax.ops.segment_sum((a[:, :, None] * d_own[:, None, :]).reshape(-1, (s + 1) * k), slot, span)
    # where each summed value goes in the (q, q) product; row s of `shared`/`with_own` is r's
    place = np.r_[np.arange(s), q - 1]
    t, i, j = np.meshgrid(np.arange(span), np.arange(k), np.arange(k), indexing="ij")
    t2, row, j2 = np.meshgrid(np.arange(span), np.arange(s + 1), np.arange(k), indexing="ij")
    own_rows, own_cols = (s + t * k + i).reshape(-1), (s + t * k + j).reshape(-1)
    cpl_rows, cpl_cols = place[row].reshape(-1), (s + t2 * k + j2).reshape(-1)
    out = jnp.zeros((q, q), dtype=a.dtype).at[np.ix_(place, place)].set(shared)
    out = out.at[own_rows, own_cols].set(own_own.reshape(-1))
    return out.at[cpl_rows, cpl_cols].set(with_own.reshape(-1)).at[cpl_cols, cpl_rows].set(with_own.reshape(-1))


#: Above this many groups per chunk the per-slot blocks come from segment sums, not one wide GEMM.
GEMM_SPAN = 2


def grouped_jacobian_kernel(model: Callable, loss: str, layout, coords=None, chunk_size: int = 0,
                            indexed: bool = False):
    """The fused block-sparse kernel of ``model`` (the user's model). ``coords`` rebuild x from the
    chunk's start index when the source has implicit coordinates, or with ``indexed`` from the
    global indices the chunk's x holds (phase 1's sample, sorted by index)."""

    def build():
        def kernel(u, offset, scale, x, y, w, n_valid, f_scale, start):
            TRACE_COUNTS["jacobian"] += 1
            y = y.astype(offset.dtype)            # float32 data arrive as float32; the sums are float64
            n = y.shape[0]
            last = layout.starts[-1] - 1
            if indexed:
                index = x.astype(jnp.int64)
                points = coords(index)
                groups = _point_groups(layout, index)
            else:
                index = jnp.minimum(start + jnp.arange(n), last)                         # padding → last
                points = x if coords is None else coordinates_at(coords, start, n)
                groups = _point_groups(layout, index, start)
            first_group = groups[0]
            r, d_shared, d_own = _derivatives(model, layout, u, offset, scale, points, y, w, groups, first_group)
            j_scale, r_scaled, keep, cost, n_bad, first = scaled_rows(loss, r, n_valid, f_scale)
            slot = groups - first_group
            if loss != "linear":
                d_shared, d_own = d_shared * j_scale[:, None], d_own * j_scale[:, None]
            tail = jnp.stack([first_group.astype(cost.dtype), cost, n_bad, first])
            if layout.span > GEMM_SPAN:
                a = jnp.where(keep[:, None], jnp.concatenate([d_shared, r_scaled[:, None]], axis=1), 0.0)
                d_own = jnp.where(keep[:, None], d_own, 0.0)
                a, d_own = jax.lax.optimization_barrier((a, d_own))
                return jnp.concatenate([_slot_products(layout, a, d_own, slot).reshape(-1), tail])
            # one GEMM: each slot's own columns are zero outside its group's rows
            own = [jnp.where((slot == t)[:, None], d_own, 0.0) for t in range(layout.span)] if layout.span > 1 \
                else [d_own]
            a = jnp.where(keep[:, None], jnp.concatenate([d_shared, *own, r_scaled[:, None]], axis=1), 0.0)
            # materialize A: fused into the product's operands, XLA would recompute the model per read
            a = jax.lax.optimization_barrier(a)
            return jnp.concatenate([gram(a).reshape(-1), tail])

        return jax.jit(kernel)

    return _cached(("grouped", model, loss, layout, coords, chunk_size, indexed), build)
