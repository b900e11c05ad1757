"""Phase 3: the parameter covariance from the reduced JᵀWJ. Pure numpy.

pcov = s²·S·(JᵀWJ)⁺·S in user parameters, with s² = 2·cost/(n − p) unless ``absolute_sigma``.
The pseudo-inverse is taken of the Jacobi-equilibrated matrix (unit diagonal) with an eigenvalue
cutoff relative to its largest eigenvalue: the cutoff depends on conditioning only, not on n
(scipy's curve_fit cutoff ε·max(n, p)·σ₁ grows with n); Ceres' dense-SVD covariance likewise cuts
on a reciprocal condition number. When directions are dropped, pcov is D·(D·A·D)⁺·D with
D = diag(A)^(-1/2): a generalized inverse that does not depend on the parameters' units.
A parameter with a sizeable share in a dropped direction is not determined by the data: its
variance is reported as inf and the rest of its row and column of pcov as NaN (scipy's
convention for a covariance that cannot be estimated), never as a misleading 0.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..solvers.pseudo_inverse import equilibrated_pseudo_inverse, undetermined


class Covariance(NamedTuple):
    pcov: np.ndarray
    rank: int
    null_parameters: list[int]   # parameters with a sizeable share in a dropped direction
    perr: np.ndarray             # √diag(pcov), computed so that it holds where pcov's squares do not
                                 # (parameters of order 1e-300 have variances below float64's range)


def covariance(jtj_u: np.ndarray, scale: np.ndarray, cost: float, n_points: int, absolute_sigma: bool,
               rcond: float) -> Covariance:
    """Covariance of θ = offset + scale·u from JᵀWJ in normalized space."""
    p = jtj_u.shape[0]
    pinv = equilibrated_pseudo_inverse(jtj_u, rcond)
    inv_u, keep = pinv.inverse, pinv.kept
    factor = 1.0 if absolute_sigma else 2.0 * cost / (n_points - p)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        pcov = scale[:, None] * (inv_u * factor) * scale[None, :]
        perr = scale * np.sqrt(np.maximum(np.diag(inv_u) * factor, 0.0))
    null = np.flatnonzero(undetermined(pinv)).tolist()
    pcov[null, :] = np.nan
    pcov[:, null] = np.nan
    pcov[null, null] = np.inf
    perr[null] = np.inf
    return Covariance(pcov, int(keep.sum()), null, perr)
