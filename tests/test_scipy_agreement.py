"""hpcfit against scipy.optimize.curve_fit / least_squares (given the exact Jacobian).

Independent reference: scipy's TRF solver on the same residuals. popt must agree to 1e-8 and pcov
to 1e-6 relative, for unbounded, bounded, weighted, absolute-sigma, 2-D-x and robust-loss fits.
"""
import numpy as np
import pytest
from scipy.optimize import curve_fit as scipy_curve_fit

import hpcfit
from models import problems

PROBLEMS = problems()
TIGHT = dict(ftol=1e-14, xtol=1e-14, gtol=1e-14)


def scipy_reference(pr):
    popt, pcov = scipy_curve_fit(pr.f_np, pr.x, pr.y, p0=pr.p0, sigma=pr.sigma, absolute_sigma=pr.absolute_sigma,
                                 bounds=pr.bounds, jac=pr.jac_np, method="trf", loss=pr.loss, f_scale=pr.f_scale,
                                 max_nfev=2000, **TIGHT)
    return popt, pcov


@pytest.mark.parametrize("pr", PROBLEMS, ids=[p.name for p in PROBLEMS])
@pytest.mark.parametrize("chunk_size", [1024, 100000])
def test_agrees_with_scipy(pr, chunk_size):
    ref_popt, ref_pcov = scipy_reference(pr)
    res = hpcfit.curve_fit(pr.f_jax, pr.x, pr.y, p0=pr.p0, sigma=pr.sigma, absolute_sigma=pr.absolute_sigma,
                           bounds=pr.bounds, loss=pr.loss, f_scale=pr.f_scale, chunk_size=chunk_size,
                           verbose=0, max_iterations=200, ftol=1e-14, xtol=1e-14, gtol=1e-12)
    assert res.success, res.message
    popt, pcov = res
    np.testing.assert_allclose(popt, ref_popt, rtol=1e-8, atol=0)
    np.testing.assert_allclose(pcov, ref_pcov, rtol=1e-6, atol=1e-6 * np.sqrt(np.outer(np.diag(ref_pcov),
                                                                                          np.diag(ref_pcov))).max())
    np.testing.assert_allclose(res.perr, np.sqrt(np.diag(ref_pcov)), rtol=1e-6)
    assert res.dof == pr.x.shape[-1] - len(pr.p0)
    assert res.n_points == pr.x.shape[-1]


def test_active_bound_matches_constrained_reference():
    """With c capped below its free optimum, popt[2] sits on the bound and (a, b) are the optimum
    of the 2-parameter fit with c fixed there (reference: scipy with c fixed)."""
    pr = PROBLEMS[0]
    c_max = 0.3
    res = hpcfit.curve_fit(pr.f_jax, pr.x, pr.y, p0=[1.0, 1.0, 0.0], bounds=([-np.inf, 0, -1], [np.inf, 10, c_max]),
                           verbose=0, ftol=1e-14, xtol=1e-14, gtol=1e-12)
    ref, _ = scipy_curve_fit(lambda x, a, b: pr.f_np(x, a, b, c_max), pr.x, pr.y, p0=[1.0, 1.0],
                             jac=lambda x, a, b: pr.jac_np(x, a, b, c_max)[:, :2], method="trf", **TIGHT)
    assert res.popt[2] == c_max
    assert list(res.active_mask) == [0, 0, 1]
    np.testing.assert_allclose(res.popt[:2], ref, rtol=1e-8)
    assert res.success
