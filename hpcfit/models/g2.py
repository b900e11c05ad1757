"""One-time correlation models g2(τ) (issue 21): a decay of the intermediate scattering function
f(τ) seen through the speckle contrast, g2 = baseline + contrast·f(τ)² (Siegert relation).

Rates Γ are in 1/s when τ is in seconds. The forms and their parameters, in order:

* ``single``:    f = exp(−Γτ)                               (contrast, gamma, baseline)
* ``stretched``: f = exp(−(Γτ)^β)  (KWW; β < 1 stretched)    (contrast, gamma, beta, baseline)
* ``double``:    f = a·exp(−Γ₁τ) + (1 − a)·exp(−Γ₂τ)         (contrast, gamma, gamma2, fraction, baseline)

pyXpcsViewer's single and stretched forms are these with its τ₀ = 1/(2Γ) (it writes
exp(−2τ/τ₀)), so Γ here is the field's relaxation rate, the one that goes as D·q² for diffusion.
"""
from __future__ import annotations

import jax.numpy as jnp

FORMS = ("single", "stretched", "double")
PARAMETERS = {"single": ("contrast", "gamma", "baseline"),
              "stretched": ("contrast", "gamma", "beta", "baseline"),
              "double": ("contrast", "gamma", "gamma2", "fraction", "baseline")}


def field_decay(form: str, tau, p):
    """f(τ) of ``form`` with its parameters ``p`` (without contrast and baseline, in PARAMETERS order)."""
    if form == "single":
        (gamma,) = p
        return jnp.exp(-gamma * tau)
    if form == "stretched":
        gamma, beta = p
        return jnp.exp(-(gamma * tau) ** beta)
    if form == "double":
        gamma, gamma2, fraction = p
        return fraction * jnp.exp(-gamma * tau) + (1.0 - fraction) * jnp.exp(-gamma2 * tau)
    raise ValueError(f"unknown g2 form {form!r}; one of {FORMS}")


def g2_model(form: str, tau, params):
    """g2(τ) = baseline + contrast·f(τ)² with ``params`` in :data:`PARAMETERS` order."""
    contrast, *decay, baseline = params
    f = field_decay(form, tau, decay)
    return baseline + contrast * f * f


def global_g2_model(form: str, n_bins: int, n_decay: int):
    """g2 of every bin at once with Γ(q) = D·qⁿ: ``model(x, D, n, *decay, *contrasts, *baselines)``
    with x = (τ, q, bin) rows (3, points); ``decay`` are the form's shared shape parameters (β for
    ``stretched``); contrast and baseline per bin, by parameter (the order of
    :class:`hpcfit.ParameterGroups` ``layout="by_parameter"``)."""

    def model(x, D, n, *rest):
        tau, q, b = x[0], x[1], x[2].astype(jnp.int32)
        decay = rest[:n_decay]
        contrast = jnp.stack(rest[n_decay:n_decay + n_bins])[b]
        baseline = jnp.stack(rest[n_decay + n_bins:n_decay + 2 * n_bins])[b]
        f = field_decay(form, tau, (D * q ** n, *decay))
        return baseline + contrast * f * f

    return model
