"""Sums over a chunk's points whose rounding is fixed by the chunk's shape alone.

XLA's CPU backend splits a large reduction or a tall matrix product over its thread pool, and
the pool is sized by the cores the process may use: the same chunk then sums in another order on
a rank bound to one core than on a rank with two, and the fit's bits change with the launch
(measured with jaxlib 0.10: jnp.sum over 65536 values and AᵀA of a 8192×12 A both differ between
``taskset -c 0`` and two cores). The global chunk grid makes results independent of the rank
count only if each chunk's sums are, so every kernel reduces over points here: each block of
:data:`BLOCK_ROWS` points is summed (or multiplied, for AᵀA) as one small operation that no
backend splits, and the blocks' results are added by a pairwise tree of whole-array additions,
which give the same bits however they are spread over threads.
"""
from __future__ import annotations

import jax.numpy as jnp

#: Points per block of a sum: well below the sizes XLA's CPU backend splits over threads
#: (measured: from 65536 values).
BLOCK_ROWS = 1024

#: Multiply-adds per block of AᵀA (columns² × rows): the backend's matrix product runs a product
#: this small on one thread (measured: 12²×2048 on one, 12²×4096 split over two), so its rows are
#: added in one order. With many columns the product is split over its columns instead, which keeps
#: the order; blocks keep at least 64 rows, as the measured tall products with >= 100 columns did.
BLOCK_PRODUCT = 1 << 18
MIN_PRODUCT_ROWS = 64

#: Up to this many blocks each is its own operation (fastest); beyond it (chunks of more than
#: 64Ki points, set by hand) the blocks go through one batched product or reduction.
MAX_SEPARATE_BLOCKS = 64


def tree_sum(x):
    """Sum over axis 0 by halving, x[:h] + x[h:] until one row is left (a zero row appended
    where a level has an odd count): the order of additions depends on the shape alone."""
    while x.shape[0] > 1:
        if x.shape[0] % 2:
            x = jnp.concatenate([x, jnp.zeros_like(x[:1])])
        half = x.shape[0] // 2
        x = x[:half] + x[half:]
    return x[0]


def _per_block(x, rows, block_op, batched_op, max_separate=MAX_SEPARATE_BLOCKS):
    """``block_op`` of each block of ``rows`` rows of ``x`` stacked, or ``batched_op`` of the
    blocks at once when there are more than ``max_separate`` (the last block padded with zeros)."""
    n = x.shape[0]
    blocks = -(-n // rows)
    if blocks <= max_separate:
        return jnp.stack([block_op(x[i:i + rows]) for i in range(0, n, rows)])
    pad = blocks * rows - n
    if pad:
        x = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], dtype=x.dtype)])
    return batched_op(x.reshape((blocks, rows) + x.shape[1:]))


def product_rows(columns: int) -> int:
    """Rows per block of AᵀA for A with ``columns`` columns: a power of two, :data:`MIN_PRODUCT_ROWS`
    to :data:`BLOCK_ROWS`, with columns² × rows at most :data:`BLOCK_PRODUCT`."""
    rows = max(1, BLOCK_PRODUCT // max(columns * columns, 1))
    return max(MIN_PRODUCT_ROWS, min(BLOCK_ROWS, 1 << (rows.bit_length() - 1)))


def point_sum(x):
    """Sum over axis 0 (the points) in a fixed order."""
    return tree_sum(_per_block(x, BLOCK_ROWS, lambda b: jnp.sum(b, axis=0), lambda b: jnp.sum(b, axis=1),
                               max_separate=1))


def gram(a):
    """AᵀA of a tall A (points × columns) in a fixed order."""
    return tree_sum(_per_block(a, product_rows(a.shape[1]), lambda b: b.T @ b,
                               lambda b: jnp.einsum("bkp,bkq->bpq", b, b)))
