"""A power of two that brings the weighted data |y/σ| near 1, for data far outside float64's
comfortable range (1e-300 or 1e300): their squares would underflow to 0 or overflow to inf.

Scaling the weights by a power of two is exact, so the fit's decisions do not change; it is
applied only when needed (|y/σ| beyond 2^±100), so ordinary fits are untouched. The scale comes
from a fixed sample of the whole data, drawn by global point index (hpcfit.data.sample), so it is
the same on any rank count and no single chunk (a first chunk of zeros, say) decides it. Pure numpy.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from .sample import Sample

#: Rescale only when the data's magnitude is beyond 2^±LIMIT (about 1e±30).
LIMIT = 100
#: Points of the fixed sample the scales are taken from (all points when n is smaller).
SAMPLE_POINTS = 4096
#: A scaled |y/σ| above 2^SQUARE_LIMIT cannot be squared in float64 (2^1024 overflows).
SQUARE_LIMIT = 511
#: More than this fraction of the sample beyond 2^SQUARE_LIMIT at the median's scale: no scale works.
WILD_FRACTION = 0.01


def _log2_magnitudes(sample: Sample) -> np.ndarray:
    """log2 |y·w| of the sample's nonzero finite values, without forming y·w (which can overflow)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.log2(np.abs(sample.y.astype(float))) + np.log2(sample.weight.astype(float))
    return values[np.isfinite(values)]


def residual_scale(sample: Sample) -> float:
    """2^-k with k the binary exponent of the median |y·w| over the sample's nonzero finite values
    (the median, so that one wild value does not set the scale), or 1.0 when |k| <= :data:`LIMIT`.

    Local, the same on every rank (every rank holds the same sample). The scale is kept where every
    sampled weight times it is a normal float64 (so the scaling stays exact): data whose median is
    subnormal (below 2^-1022) get the largest such scale. Raises :class:`InputError`, naming the
    scale and the data's range, when no power of two brings the data into float64's range: more
    than :data:`WILD_FRACTION` of the sample cannot be squared at the median's scale (a few wild
    values are left to the passes, which name the first one's global index).
    """
    logs = _log2_magnitudes(sample)
    if not logs.size:
        return 1.0
    median = float(np.median(logs))
    k = math.floor(median) + 1                            # median·2^-k in [0.5, 1)
    j = 0 if abs(k) <= LIMIT else -k
    w = sample.weight[np.isfinite(sample.weight) & (sample.weight > 0)]
    lo, hi = -1021 - math.frexp(float(np.min(w)))[1], 1024 - math.frexp(float(np.max(w)))[1]
    if j:                                                 # w·2^j normal and finite for every sampled w
        j = min(max(j, lo), hi)
    over = logs + j > SQUARE_LIMIT
    if (j and lo > hi) or np.mean(over) > WILD_FRACTION:
        raise InputError(
            f"the data's |y/sigma| span 2^{float(np.min(logs)):.1f} to 2^{float(np.max(logs)):.1f} (median "
            f"2^{median:.1f}; 1/sigma from {float(np.min(w)):.3g} to {float(np.max(w)):.3g}) over a sample of "
            f"{sample.size} points: no power-of-two residual scale brings them into float64's range (at the "
            f"median's scale 2^{j}, {int(np.sum(over))} sampled values exceed 2^{SQUARE_LIMIT} and cannot be "
            "squared); rescale ydata and sigma, or fit the parts of the data separately")
    return math.ldexp(1.0, j)
