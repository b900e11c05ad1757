"""Phase 0: the affine map θ = offset + scale ⊙ u between user parameters θ and normalized u.

Later phases work in u, where every parameter is O(1): box bounds map to [0, 1] (``bounds``),
or each parameter is measured in units of its start value (``p0``). Pure numpy.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..options import STRATEGIES


@dataclass(frozen=True)
class Normalization:
    offset: np.ndarray
    scale: np.ndarray
    strategy: str

    def to_u(self, theta: np.ndarray) -> np.ndarray:
        return (np.asarray(theta, dtype=float) - self.offset) / self.scale

    def to_theta(self, u: np.ndarray) -> np.ndarray:
        return self.offset + self.scale * np.asarray(u, dtype=float)


def _p0_scale(p0: np.ndarray) -> np.ndarray:
    # A zero start value gives no scale of its own: use 1 there (on data of an extreme magnitude
    # hpcfit.phases.scales replaces it by one from the parameter's Jacobian column).
    return np.where(p0 != 0.0, np.abs(p0), 1.0)


def make_normalization(strategy: str, p0: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> Normalization:
    """Build the map for ``strategy``; ``auto`` uses the bounds where both are finite, else p0."""
    p0 = np.asarray(p0, dtype=float)
    # a box so wide that its width overflows is treated as unbounded for scaling
    with np.errstate(over="ignore", invalid="ignore"):
        finite_box = np.isfinite(lower) & np.isfinite(upper) & np.isfinite(upper - lower)
    if strategy == "bounds" and not finite_box.all():
        bad = [int(i) for i in np.flatnonzero(~finite_box)]
        raise ValueError(f"normalize='bounds' needs finite lower and upper bounds for every parameter; "
                         f"parameters {bad} have an infinite bound (use 'auto' or 'p0')")
    if strategy == "none":
        offset, scale = np.zeros_like(p0), np.ones_like(p0)
    elif strategy == "p0":
        offset, scale = np.zeros_like(p0), _p0_scale(p0)
    elif strategy in ("bounds", "auto"):
        box = finite_box if strategy == "auto" else np.ones_like(p0, dtype=bool)
        width = np.where(box, upper - lower, 1.0)
        offset = np.where(box, lower, 0.0)
        scale = np.where(box, width, _p0_scale(p0))
    else:
        raise ValueError(f"normalize must be one of {STRATEGIES}; got {strategy!r}")
    return Normalization(offset.astype(float), scale.astype(float), strategy)


def zero_starts(strategy: str, p0: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Mask of the parameters :func:`make_normalization` gave scale 1 only because p0 is 0 there
    (``p0``, or ``auto`` without a finite box); ``bounds`` and ``none`` have none."""
    p0 = np.asarray(p0, dtype=float)
    if strategy not in ("p0", "auto"):
        return np.zeros(p0.shape, dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        finite_box = np.isfinite(lower) & np.isfinite(upper) & np.isfinite(upper - lower)
    return (p0 == 0.0) & ~(finite_box if strategy == "auto" else np.zeros(p0.shape, dtype=bool))


def with_scales(norm: Normalization, which: np.ndarray, scales: np.ndarray) -> Normalization:
    """``norm`` with ``scales`` for the parameters ``which`` (a mask), the others as they were."""
    return replace(norm, scale=np.where(which, scales, norm.scale).astype(float))
