"""Robust losses as row scalings, with scipy.optimize.least_squares semantics.

Each loss maps z = (r / f_scale)² to (ρ, ρ', ρ''). The cost is ½·f_scale²·Σρ(z); Gauss–Newton
sees the rows of J and r rescaled as in scipy's ``scale_for_robust_loss_function``, so JᵀWJ,
JᵀWr, the covariance and the result all match scipy's for the same loss.
"""
from __future__ import annotations

import jax.numpy as jnp


# scipy clips the Jacobian scale at machine epsilon (optimize/_lsq/common.py).
_EPS = float(jnp.finfo(jnp.float64).eps)


def _rho(loss: str, z):
    if loss == "soft_l1":
        t = 1.0 + z
        return 2.0 * (jnp.sqrt(t) - 1.0), 1.0 / jnp.sqrt(t), -0.5 * t ** -1.5
    if loss == "huber":
        small = z <= 1.0
        zs = jnp.where(small, 1.0, z)  # keeps the unused branch finite
        return (jnp.where(small, z, 2.0 * jnp.sqrt(zs) - 1.0),
                jnp.where(small, 1.0, 1.0 / jnp.sqrt(zs)),
                jnp.where(small, 0.0, -0.5 * zs ** -1.5))
    if loss == "cauchy":
        t = 1.0 + z
        return jnp.log1p(z), 1.0 / t, -1.0 / t ** 2
    if loss == "arctan":
        t = 1.0 + z * z
        return jnp.arctan(z), 1.0 / t, -2.0 * z / t ** 2
    raise ValueError(f"unknown loss {loss!r}")


def loss_cost_terms(loss: str, r, f_scale):
    """Per-point cost contributions ½·f_scale²·ρ(z) (½·r² for the linear loss)."""
    if loss == "linear":
        return 0.5 * r * r
    rho0, _, _ = _rho(loss, (r / f_scale) ** 2)
    return 0.5 * f_scale ** 2 * rho0


def scale_rows(loss: str, r, f_scale):
    """(row scale for J, scaled residual, per-point cost) for the Gauss–Newton model of the loss."""
    if loss == "linear":
        return jnp.ones_like(r), r, 0.5 * r * r
    rho0, rho1, rho2 = _rho(loss, (r / f_scale) ** 2)
    rho2 = rho2 / f_scale ** 2
    j_scale = jnp.sqrt(jnp.maximum(rho1 + 2.0 * rho2 * r * r, _EPS))
    return j_scale, r * rho1 / j_scale, 0.5 * f_scale ** 2 * rho0
