"""The pseudo-inverse of a symmetric positive semi-definite JᵀWJ, taken where its conditioning, not
the parameters' units, decides what is dropped. Pure numpy; shared by the covariance and by LM's
convergence test."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class PseudoInverse(NamedTuple):
    inverse: np.ndarray     # D·(D·A·D)⁺·D, D = diag(A)^(-1/2) (0 where the diagonal is not positive)
    kept: np.ndarray        # which eigenvalues of D·A·D were kept
    vectors: np.ndarray     # its eigenvectors (columns), the dropped ones included


def equilibrated_pseudo_inverse(a: np.ndarray, rcond: float) -> PseudoInverse:
    """Jacobi-equilibrate A (unit diagonal), drop eigenvalues at or below ``rcond`` times the
    largest, and map the inverse back: a generalized inverse independent of the parameters' units.
    ``a`` may be a stack (..., p, p) of such matrices (many small fits at once); then ``kept`` is
    (..., p)."""
    diag = np.diagonal(a, axis1=-2, axis2=-1)
    d = np.where(diag > 0.0, 1.0 / np.sqrt(np.where(diag > 0.0, diag, 1.0)), 0.0)
    w, v = np.linalg.eigh(d[..., :, None] * a * d[..., None, :])
    keep = w > rcond * np.maximum(w.max(axis=-1, initial=0.0), 0.0)[..., None]
    if a.ndim == 2:
        inverse = (v[:, keep] / w[keep]) @ v[:, keep].T
    else:
        inverse = np.einsum("...ik,...k,...jk->...ij", v, np.where(keep, 1.0 / np.where(keep, w, 1.0), 0.0), v)
    return PseudoInverse(d[..., :, None] * inverse * d[..., None, :], keep, v)


def undetermined(pinv: PseudoInverse) -> np.ndarray:
    """The parameters a dropped eigenvector leans on (a component above 0.1): those the data do not
    determine. Booleans (..., p)."""
    return np.any((np.abs(pinv.vectors) > 0.1) & ~pinv.kept[..., None, :], axis=-1)
