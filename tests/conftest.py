"""Strict settings for every test: float64 in JAX, NumPy errors raised, warnings are errors (pyproject)."""
import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)


@pytest.fixture(autouse=True)
def _numpy_errors():
    with np.errstate(all="raise", under="ignore"):
        yield
