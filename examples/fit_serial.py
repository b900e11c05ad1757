"""Serial fit, exactly like scipy.optimize.curve_fit but with a jax.numpy model.

    python examples/fit_serial.py
"""
import jax.numpy as jnp
import numpy as np

import hpcfit


def model(x, amplitude, rate, offset):
    return amplitude * jnp.exp(-rate * x) + offset


rng = np.random.default_rng(0)
x = np.linspace(0.0, 5.0, 2_000_000)
y = 2.5 * np.exp(-1.3 * x) + 0.5 + 0.05 * rng.standard_normal(x.size)

popt, pcov = hpcfit.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0])
print("popt", popt)
print("perr", np.sqrt(np.diag(pcov)))
