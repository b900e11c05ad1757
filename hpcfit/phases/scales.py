"""Phase 0's data-dependent scales, from one fixed sample of the whole data.

* The residual scale (:func:`hpcfit.data.scale.residual_scale`): a power of two that brings the
  median |y/σ| near 1 when the data are of an extreme magnitude.
* The scale of a parameter that starts at 0 (it has no scale of its own, and
  :func:`~hpcfit.phases.normalize.make_normalization` gives it 1): on data of an extreme magnitude,
  a power of two that brings its Jacobian column at p0, in the fit's scaled units, near 1 — so an
  offset c of data of order 1e-300 is measured in units of about 1e-300 (its column neither
  overflows JᵀWJ nor underflows to 0), while a rate or a position that starts at 0 keeps a scale
  fitting its own units. Nothing changes for data of ordinary magnitude, so their fits keep their bits.

The sample is drawn by global point index (one gather), so both scales are the same on any rank count.
"""
from __future__ import annotations

import math

import numpy as np

from ..comm import Communicator
from ..data.chunks import LocalChunks
from ..data.sample import Sample, gather_sample, sample_chunks
from ..data.scale import LIMIT, SAMPLE_POINTS, residual_scale
from ..kernels.columns import column_rms
from ..kernels.coords import IndexedX
from .normalize import Normalization, with_scales, zero_starts

#: A power of two a parameter's scale may take (normal float64 with room for the map θ = scale·u).
EXPONENT_RANGE = 1000


def _extreme(sample: Sample, weight_scale: float) -> bool:
    """The data are of an extreme magnitude: |y/σ| (rescaled) or |y| itself beyond 2^±LIMIT."""
    if weight_scale != 1.0:
        return True
    with np.errstate(divide="ignore"):
        logs = np.log2(np.abs(sample.y.astype(float)))
    logs = logs[np.isfinite(logs)]
    return bool(logs.size) and abs(math.floor(float(np.median(logs))) + 1) > LIMIT


def zero_start_scales(model, sample: Sample, chunk_size: int, p0: np.ndarray, which: np.ndarray,
                      weight_scale: float) -> np.ndarray:
    """Scales for the parameters ``which``: 2^-e with e the binary exponent of the parameter's
    Jacobian column's root mean square on the sample at p0 (times ``weight_scale``), or 1 where
    |e| <= LIMIT or the column is 0 or not finite there. Local, the same on every rank."""
    columns = np.flatnonzero(which)
    f = model if sample.coords is None else IndexedX(model, sample.coords)
    rms = column_rms(f, sample_chunks(sample, chunk_size), p0, columns)
    shift = math.frexp(weight_scale)[1] - 1                 # weight_scale = 2^shift
    out = np.ones(p0.size)
    for j, value in zip(columns, rms):
        if not (np.isfinite(value) and value > 0):
            continue
        e = math.frexp(float(value))[1] + shift
        if abs(e) > LIMIT:
            out[j] = math.ldexp(1.0, -min(max(e, -EXPONENT_RANGE), EXPONENT_RANGE))
    return out


def data_scales(comm: Communicator, local: LocalChunks, model, strategy: str, norm: Normalization,
                p0: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[float, Normalization]:
    """Collective (one gather of the sample, and agreement on its local results): the residual
    scale, and ``norm`` with scales for the parameters that start at 0 on data of an extreme magnitude."""
    sample = gather_sample(comm, local, SAMPLE_POINTS, 0)
    weight_scale = comm.agree(residual_scale, sample)
    which = zero_starts(strategy, p0, lower, upper)
    if not which.any() or not _extreme(sample, weight_scale):
        return weight_scale, norm
    scales = comm.agree(zero_start_scales, model, sample, local.chunk_size, p0, which, weight_scale)
    return weight_scale, with_scales(norm, which, scales)
