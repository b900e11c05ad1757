"""Test problems: each model in jax.numpy (for hpcfit), numpy with an exact Jacobian (for scipy).

The benchmarks import the numpy references from here too (``exp_np``, ``gauss3_np`` and their Jacobians).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import jax.numpy as jnp
import numpy as np


@dataclass
class Problem:
    name: str
    f_jax: Callable
    f_np: Callable
    jac_np: Callable
    x: np.ndarray
    y: np.ndarray
    p0: list
    sigma: np.ndarray | None = None
    bounds: tuple = (-np.inf, np.inf)
    loss: str = "linear"
    f_scale: float = 1.0
    absolute_sigma: bool = False
    extra: dict = field(default_factory=dict)


def _exp_jax(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def exp_np(x, a, b, c):
    return a * np.exp(-b * x) + c


def exp_jac(x, a, b, c):
    e = np.exp(-b * x)
    return np.stack([e, -a * x * e, np.ones_like(x)], axis=1)


def _gauss3_jax(x, *p):
    out = 0.0
    for i in range(3):
        a, m, s = p[3 * i: 3 * i + 3]
        out = out + a * jnp.exp(-0.5 * ((x - m) / s) ** 2)
    return out


def gauss3_np(x, *p):
    out = np.zeros_like(x)
    for i in range(3):
        a, m, s = p[3 * i: 3 * i + 3]
        out = out + a * np.exp(-0.5 * ((x - m) / s) ** 2)
    return out


def gauss3_jac(x, *p):
    cols = []
    for i in range(3):
        a, m, s = p[3 * i: 3 * i + 3]
        z = (x - m) / s
        e = np.exp(-0.5 * z * z)
        cols += [e, a * e * z / s, a * e * z * z / s]
    return np.stack(cols, axis=1)


def _mm_jax(x, vmax, km):            # Michaelis–Menten (rational)
    return vmax * x / (km + x)


def _mm_np(x, vmax, km):
    return vmax * x / (km + x)


def _mm_jac(x, vmax, km):
    return np.stack([x / (km + x), -vmax * x / (km + x) ** 2], axis=1)


def _logistic_jax(x, k, r, t0):
    return k / (1.0 + jnp.exp(-r * (x - t0)))


def _logistic_np(x, k, r, t0):
    return k / (1.0 + np.exp(-r * (x - t0)))


def _logistic_jac(x, k, r, t0):
    e = np.exp(-r * (x - t0))
    d = (1.0 + e) ** 2
    return np.stack([1.0 / (1.0 + e), k * (x - t0) * e / d, -k * r * e / d], axis=1)


def _sine_jax(x, a, w, ph, c):
    return a * jnp.sin(w * x + ph) + c


def _sine_np(x, a, w, ph, c):
    return a * np.sin(w * x + ph) + c


def _sine_jac(x, a, w, ph, c):
    s, co = np.sin(w * x + ph), np.cos(w * x + ph)
    return np.stack([s, a * x * co, a * co, np.ones_like(x)], axis=1)


def _power_jax(x, a, b):
    return a * x ** b


def _power_np(x, a, b):
    return a * x ** b


def _power_jac(x, a, b):
    return np.stack([x ** b, a * x ** b * np.log(x)], axis=1)


def _surface_jax(x, a, b, c, d):     # x has shape (2, n)
    return a * jnp.exp(-b * x[0]) * jnp.cos(c * x[1]) + d


def _surface_np(x, a, b, c, d):
    return a * np.exp(-b * x[0]) * np.cos(c * x[1]) + d


def _surface_jac(x, a, b, c, d):
    e, co, si = np.exp(-b * x[0]), np.cos(c * x[1]), np.sin(c * x[1])
    return np.stack([e * co, -a * x[0] * e * co, -a * e * si * x[1], np.ones(x.shape[1])], axis=1)


def _outliers(rng, y, fraction, size):
    idx = rng.choice(y.size, int(fraction * y.size), replace=False)
    y = y.copy()
    y[idx] += size * rng.standard_normal(idx.size)
    return y


def problems() -> list[Problem]:
    rng = np.random.default_rng(12345)
    out = []
    x = np.linspace(0.0, 4.0, 5000)
    out.append(Problem("exp", _exp_jax, exp_np, exp_jac, x,
                       exp_np(x, 2.5, 1.3, 0.5) + 0.05 * rng.standard_normal(x.size), [1.0, 1.0, 0.0]))
    x = np.linspace(-6.0, 6.0, 8000)
    sigma = 0.05 + 0.02 * np.abs(x)
    truth = [3.0, -2.0, 0.6, 1.5, 0.5, 0.9, 2.2, 3.1, 0.4]
    out.append(Problem("gauss3_weighted", _gauss3_jax, gauss3_np, gauss3_jac, x,
                       gauss3_np(x, *truth) + sigma * rng.standard_normal(x.size),
                       [2.5, -1.8, 0.8, 1.2, 0.7, 1.0, 2.0, 3.0, 0.5], sigma=sigma))
    out.append(Problem("gauss3_absolute_sigma", _gauss3_jax, gauss3_np, gauss3_jac, x,
                       gauss3_np(x, *truth) + sigma * rng.standard_normal(x.size),
                       [2.5, -1.8, 0.8, 1.2, 0.7, 1.0, 2.0, 3.0, 0.5], sigma=sigma, absolute_sigma=True))
    x = np.linspace(0.05, 10.0, 3000)
    out.append(Problem("michaelis_menten_bounded", _mm_jax, _mm_np, _mm_jac, x,
                       _mm_np(x, 2.0, 1.5) + 0.03 * rng.standard_normal(x.size), [1.0, 0.5],
                       bounds=([0.0, 0.1], [10.0, 10.0])))
    x = np.linspace(0.0, 10.0, 4000)
    out.append(Problem("logistic_soft_l1", _logistic_jax, _logistic_np, _logistic_jac, x,
                       _outliers(rng, _logistic_np(x, 3.0, 1.2, 5.0) + 0.05 * rng.standard_normal(x.size), 0.05, 1.0),
                       [2.0, 1.0, 4.0], loss="soft_l1", f_scale=0.1))
    x = np.linspace(0.0, 12.0, 6000)
    out.append(Problem("sine_huber_bounded", _sine_jax, _sine_np, _sine_jac, x,
                       _outliers(rng, _sine_np(x, 1.5, 2.0, 0.3, 0.2) + 0.1 * rng.standard_normal(x.size), 0.03, 2.0),
                       [1.0, 1.95, 0.0, 0.0], bounds=([0.0, 1.5, -np.pi, -1.0], [5.0, 2.5, np.pi, 1.0]),
                       loss="huber", f_scale=0.2))
    x = np.linspace(0.5, 20.0, 3000)
    out.append(Problem("power_cauchy", _power_jax, _power_np, _power_jac, x,
                       _outliers(rng, _power_np(x, 2.0, 0.7) + 0.1 * rng.standard_normal(x.size), 0.05, 3.0),
                       [1.0, 1.0], loss="cauchy", f_scale=0.3))
    x = np.linspace(0.0, 4.0, 5000)
    out.append(Problem("exp_arctan", _exp_jax, exp_np, exp_jac, x,
                       _outliers(rng, exp_np(x, 2.5, 1.3, 0.5) + 0.05 * rng.standard_normal(x.size), 0.02, 1.0),
                       [2.0, 1.0, 0.3], loss="arctan", f_scale=0.1))
    x2 = np.stack([rng.uniform(0.0, 3.0, 6000), rng.uniform(-2.0, 2.0, 6000)])
    out.append(Problem("surface_2d_x", _surface_jax, _surface_np, _surface_jac, x2,
                       _surface_np(x2, 1.7, 0.8, 1.3, 0.1) + 0.02 * rng.standard_normal(6000), [1.0, 1.0, 1.0, 0.0]))
    return out
