"""Simulated multitau results (g2 per q bin) in the APS-U layout, for tests, benchmarks and the
``g2`` config template: Γ(q) = D·q^exponent, g2 = baseline + contrast·f(τ)² plus Gaussian noise of
the σ written as ``normalized_g2_err``. Rank 0 only (NumPy, h5py through the writer)."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..models.g2 import g2_model
from .layouts import multitau_delays, write_multitau


def simulate_g2(path, *, q, D: float, exponent: float = 2.0, form: str = "single", contrast=0.2, baseline=1.0,
                beta: float = 1.0, gamma2_ratio: float = 0.1, fraction: float = 0.5, noise: float = 0.002,
                n_delays: int = 61, frame_time: float = 2e-5, phi=(0.0,), seed: int = 0):
    """Write a multitau file of ``len(q) × len(phi)`` bins: delays as the beamline's correlator makes
    them (:func:`~.layouts.multitau_delays`), τ = delay × ``frame_time``; Γ = D·q^exponent per bin
    (φ does not change it); σ = ``noise`` at the first delay, growing to 3× at the last (fewer frame
    pairs at long delays). ``contrast`` and ``baseline`` may be one value or one per bin.
    Returns the true parameters per bin, (bins, p), in :data:`hpcfit.models.g2.PARAMETERS` order."""
    q = np.asarray(q, dtype=float).reshape(-1)
    phi = np.asarray(phi, dtype=float).reshape(-1)
    n_bins = q.size * phi.size
    if q.size == 0 or np.any(q <= 0) or not D > 0:
        raise InputError(f"simulate_g2: `q` must be positive values and `D` positive; got q={q[:4]}, D={D}")
    delays = multitau_delays(n_delays)
    tau = delays * frame_time
    gamma = np.repeat(D * q ** exponent, phi.size)
    contrast = np.broadcast_to(np.asarray(contrast, float), (n_bins,))
    baseline = np.broadcast_to(np.asarray(baseline, float), (n_bins,))
    rest = {"single": [], "stretched": [np.full(n_bins, beta)],
            "double": [gamma * gamma2_ratio, np.full(n_bins, fraction)]}[form]
    truth = np.stack([contrast, gamma, *rest, baseline], axis=1)
    g2 = np.stack([np.asarray(g2_model(form, tau, truth[k])) for k in range(n_bins)], axis=1)
    sigma = noise * (1.0 + 2.0 * np.arange(n_delays) / max(n_delays - 1, 1))[:, None] * np.ones((1, n_bins))
    g2 = g2 + sigma * np.random.default_rng(seed).standard_normal(g2.shape)
    write_multitau(path, g2, sigma, delays, q, phi, frame_time=frame_time)
    return truth
