"""Small general-purpose models used by the demo, the tests and the benchmarks."""
from __future__ import annotations

import jax.numpy as jnp


def exponential_decay(x, a, b, c):
    """a·exp(−b·x) + c."""
    return a * jnp.exp(-b * x) + c


def gaussian_peaks(x, a1, m1, s1, a2, m2, s2, a3, m3, s3):
    """Three Gaussian peaks: Σ aₖ·exp(−(x − mₖ)² / (2sₖ²)) (9 parameters)."""
    out = 0.0
    for a, m, s in ((a1, m1, s1), (a2, m2, s2), (a3, m3, s3)):
        out = out + a * jnp.exp(-0.5 * ((x - m) / s) ** 2)
    return out
