"""A power of two that brings the weighted data |y/σ| near 1, for data far outside float64's
comfortable range (1e-300 or 1e300): their squares would underflow to 0 or overflow to inf.

Scaling the weights by a power of two is exact, so the fit's decisions do not change; it is
applied only when needed (|y/σ| beyond 2^±100), so ordinary fits are untouched. Pure numpy; the
one gather is the communicator's.
"""
from __future__ import annotations

import math

import numpy as np

from ..comm import Communicator
from .chunks import LocalChunks

#: Rescale only when the data's magnitude is beyond 2^±LIMIT (about 1e±30).
LIMIT = 100


def residual_scale(comm: Communicator, local: LocalChunks) -> float:
    """Collective: 2^-k with k the binary exponent of the median |y·w| over global chunk 0 (read by
    the rank that owns it, the same whatever the rank count; the median, so that one wild value does
    not set the scale), or 1.0 when |k| <= :data:`LIMIT`."""
    def mine():
        if local.first_leaf != 0 or local.n_local == 0:
            return None
        chunk = local.read(0)
        values = np.abs(chunk.y[: chunk.n_valid] * chunk.weight[: chunk.n_valid])
        values = values[np.isfinite(values) & (values > 0)]
        return float(np.median(values)) if values.size else 0.0

    found = [m for m in comm.allgather(comm.agree(mine)) if m is not None]
    top = found[0] if found else 0.0
    if top == 0.0:
        return 1.0
    k = math.frexp(top)[1]
    return 1.0 if abs(k) <= LIMIT else math.ldexp(1.0, -k)
