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
    largest, and map the inverse back: a generalized inverse independent of the parameters' units."""
    diag = np.diag(a)
    d = np.where(diag > 0.0, 1.0 / np.sqrt(np.where(diag > 0.0, diag, 1.0)), 0.0)
    w, v = np.linalg.eigh(d[:, None] * a * d[None, :])
    keep = w > rcond * max(w.max(initial=0.0), 0.0)
    inverse = (v[:, keep] / w[keep]) @ v[:, keep].T
    return PseudoInverse(d[:, None] * inverse * d[None, :], keep, v)
