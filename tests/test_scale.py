"""Data of any magnitude fit as scipy fits them: y of order 1e-300 or 1e300 (whose squares leave
float64's range) give the parameters and uncertainties of the same data at order 1, scaled."""
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import curve_fit as scipy_curve_fit

import hpcfit
from hpcfit.data.scale import LIMIT


def model(x, a, b, c):
    return a * jnp.exp(-b * x) + c


X = np.linspace(0.0, 4.0, 5000)
Y1 = 2.5 * np.exp(-1.3 * X) + 0.5 + 0.05 * np.random.default_rng(0).standard_normal(X.size)


@pytest.mark.parametrize("magnitude", [1e-300, 1e-200, 1e200, 1e300])
def test_tiny_and_huge_data_fit_as_at_order_one(magnitude):
    unit = hpcfit.curve_fit(model, X, Y1, p0=[1.0, 1.0, 0.1], verbose=0)
    scaled = np.array([magnitude, 1.0, magnitude])
    with np.errstate(all="ignore"):
        res = hpcfit.curve_fit(model, X, magnitude * Y1, p0=[magnitude, 1.0, 0.1 * magnitude], verbose=0)
        ref, _ = scipy_curve_fit(lambda x, a, b, c: a * np.exp(-b * x) + c, X, magnitude * Y1,
                                 p0=[magnitude, 1.0, 0.1 * magnitude])
    assert res.success and res.trustworthy
    np.testing.assert_allclose(res.popt / scaled, unit.popt, rtol=1e-6)
    np.testing.assert_allclose(res.popt / scaled, ref / scaled, rtol=1e-6)
    np.testing.assert_allclose(res.perr / scaled, unit.perr, rtol=1e-5)
    assert res.info["residual_scale"] != 1.0


def test_ordinary_data_are_not_rescaled():
    res = hpcfit.curve_fit(model, X, 1e20 * Y1, p0=[1e20, 1.0, 1e19], verbose=0)
    assert res.info["residual_scale"] == 1.0 and 2.0 ** LIMIT > 1e20
