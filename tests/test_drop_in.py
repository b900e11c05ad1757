"""hpcfit.curve_fit as a drop-in for scipy.optimize.curve_fit: the call forms, checked against
scipy's own outputs on the same data."""
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import curve_fit as scipy_curve_fit

import hpcfit


def model(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def np_model(x, a, b, c):
    return a * np.exp(-b * x) + c


def _data(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 4.0, n)
    sigma = 0.05 * (1.0 + rng.random(n))
    return x, np_model(x, 2.5, 1.3, 0.5) + sigma * rng.standard_normal(n), sigma


TIGHT = dict(ftol=1e-12, xtol=1e-12, gtol=1e-12)


def _scipy(x, y, sigma, **kw):
    return scipy_curve_fit(np_model, x, y, p0=[1.0, 1.0, 0.0], sigma=sigma, **TIGHT, **kw)


def test_indexing_and_len_as_scipys_tuple():
    x, y, sigma = _data()
    res = hpcfit.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0], sigma=sigma, verbose=0, **TIGHT)
    popt, pcov = _scipy(x, y, sigma)
    assert len(res) == 2 and res[0] is res.popt and res[1] is res.pcov and res[-1] is res.pcov
    np.testing.assert_allclose(hpcfit.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0], sigma=sigma, verbose=0,
                                                **TIGHT)[0], popt, rtol=1e-7)
    np.testing.assert_allclose(res[1], pcov, rtol=1e-5)


def test_full_output_is_scipys_five_tuple():
    x, y, sigma = _data()
    ours = hpcfit.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0], sigma=sigma, verbose=0, full_output=True, **TIGHT)
    theirs = _scipy(x, y, sigma, full_output=True)
    assert len(ours) == len(theirs) == 5
    popt, pcov, info, mesg, ier = ours
    np.testing.assert_allclose(popt, theirs[0], rtol=1e-7)
    np.testing.assert_allclose(pcov, theirs[1], rtol=1e-5)
    np.testing.assert_allclose(info["fvec"], theirs[2]["fvec"], rtol=1e-5, atol=1e-8)   # (f − y)/σ at popt
    assert info["nfev"] >= 1 and isinstance(mesg, str) and ier in (1, 2, 3, 4) and theirs[4] in (1, 2, 3, 4)


def test_maxfev_limits_the_passes_over_the_data():
    x, y, sigma = _data()
    res = hpcfit.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0], sigma=sigma, verbose=0, maxfev=3, method="gn")
    assert res.status == hpcfit.Status.MAX_NFEV and not res.success and not res.trustworthy
    assert res.nfev <= 3 and "max_nfev" in res.message
    *_, ier = hpcfit.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0], sigma=sigma, verbose=0, maxfev=3, method="gn",
                               full_output=True)
    assert ier == 5                                  # scipy's leastsq: maxfev reached


def test_nan_policy_omit_drops_the_points_as_scipy_does():
    x, y, sigma = _data()
    y = y.copy()
    y[[5, 700, 2999]] = np.nan
    x = x.copy()
    x[1234] = np.nan
    theirs, _ = _scipy(x, y, sigma, nan_policy="omit")
    res = hpcfit.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0], sigma=sigma, verbose=0, nan_policy="omit", **TIGHT)
    np.testing.assert_allclose(res.popt, theirs, rtol=1e-7)
    assert res.info["n_omitted"] == 4 and res.n_points == x.size - 4
    with pytest.raises(hpcfit.InputError, match=r"`xdata` contains NaN or Inf"):
        hpcfit.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0], verbose=0)
    with pytest.raises(hpcfit.InputError, match=r"`nan_policy` must be 'raise' .* or 'omit'"):
        hpcfit.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0], verbose=0, nan_policy="propagate")


def test_a_jac_callable_is_used_and_scipy_strings_are_accepted():
    x, y, sigma = _data()
    calls = []

    def jac(x, a, b, c):
        calls.append(1)                     # traced once per kernel
        e = jnp.exp(-b * x)
        return jnp.stack([e, -a * x * e, jnp.ones_like(x)], axis=1)

    ref = hpcfit.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0], sigma=sigma, verbose=0, **TIGHT)
    res = hpcfit.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0], sigma=sigma, verbose=0, jac=jac, **TIGHT)
    assert calls and res.names == ["a", "b", "c"]
    np.testing.assert_allclose(res.popt, ref.popt, rtol=1e-10)
    np.testing.assert_allclose(res.pcov, ref.pcov, rtol=1e-8)

    def wrong_jac(x, a, b, c):               # a wrong Jacobian must change the answer: it is really used
        return jnp.stack([jnp.ones_like(x), jnp.ones_like(x), jnp.ones_like(x)], axis=1)

    with pytest.warns(hpcfit.RankDeficientWarning):
        wrong = hpcfit.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0], sigma=sigma, verbose=0, jac=wrong_jac, method="gn")
    assert not np.allclose(wrong.popt, ref.popt, rtol=1e-3)
    same = hpcfit.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0], sigma=sigma, verbose=0, jac="3-point", **TIGHT)
    assert same.popt.tobytes() == ref.popt.tobytes()
    with pytest.raises(hpcfit.InputError, match=r"`jac` must be None, one of"):
        hpcfit.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0], verbose=0, jac="4-point")


@pytest.mark.parametrize("method", ["lm", "trf", "dogbox"])
def test_scipy_methods_are_refused_naming_hpcfits(method):
    x, y, _ = _data(200)
    with pytest.raises(hpcfit.InputError, match=r"`method` must be one of 'hybrid', 'gn'.*scipy's methods"):
        hpcfit.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0], method=method, verbose=0)


def test_equal_bounds_fix_a_parameter_as_a_fit_of_the_reduced_model():
    x, y, sigma = _data()
    res = hpcfit.curve_fit(model, x, y, p0=[1.0, 1.3, 0.0], sigma=sigma, verbose=0,
                           bounds=([-np.inf, 1.3, -np.inf], [np.inf, 1.3, np.inf]), **TIGHT)
    reduced, pcov = scipy_curve_fit(lambda x, a, c: np_model(x, a, 1.3, c), x, y, p0=[1.0, 0.0], sigma=sigma,
                                    **TIGHT)
    np.testing.assert_allclose(res.popt[[0, 2]], reduced, rtol=1e-7)
    assert res.popt[1] == 1.3 and res.perr[1] == 0.0 and res.pcov[1].tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(res.pcov[np.ix_([0, 2], [0, 2])], pcov, rtol=1e-5)
    assert res.fixed.tolist() == [False, True, False] and res.n_params == 3 and res.dof == x.size - 2
    assert res.names == ["a", "b", "c"] and "fixed" in res.report()
    with pytest.raises(hpcfit.InputError, match=r"every parameter is fixed"):
        hpcfit.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0], verbose=0, bounds=([1.0, 1.0, 0.0], [1.0, 1.0, 0.0]))
