"""A fit runs numpy's OpenBLAS on one thread (n ranks × n busy-waiting BLAS threads on n cores made
phase 1 of a 300-map fit 20× slower on 2 ranks, and the thread count changes a result's bits) and
restores the user's count afterwards; a count the user set is left alone."""
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import curve_fit as scipy_curve_fit

import hpcfit
from hpcfit.threads import USER_SETTINGS, blas_threads, loaded_openblas, one_blas_thread

pytestmark = pytest.mark.skipif(not loaded_openblas(), reason="numpy is not built on OpenBLAS here")


@pytest.fixture
def no_user_setting(monkeypatch):
    for name in USER_SETTINGS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def two_threads(no_user_setting):
    """Every loaded OpenBLAS at 2 threads (whatever this machine's default), restored after."""
    saved = [(s, g()) for s, g in loaded_openblas()]
    for s, _ in saved:
        s(2)
    yield
    for s, count in saved:
        s(count)


def test_one_thread_inside_restored_after(two_threads):
    assert blas_threads() and set(blas_threads()) == {2}
    with one_blas_thread():
        assert set(blas_threads()) == {1}
        with one_blas_thread():
            assert set(blas_threads()) == {1}
        assert set(blas_threads()) == {1}, "the inner use ended, the outer one still holds"
    assert set(blas_threads()) == {2}


def test_restored_after_an_error(two_threads):
    with pytest.raises(RuntimeError):
        with one_blas_thread():
            raise RuntimeError("boom")
    assert set(blas_threads()) == {2}


@pytest.mark.parametrize("name", USER_SETTINGS)
def test_a_users_setting_is_left_alone(two_threads, monkeypatch, name):
    monkeypatch.setenv(name, "2")
    with one_blas_thread():
        assert set(blas_threads()) == {2}


def test_a_fit_runs_on_one_blas_thread_and_restores(two_threads):
    seen = []

    def model(x, a, k, c):
        seen.append(blas_threads())          # runs while the model is traced, inside the fit
        return a * jnp.exp(-k * x) + c

    x = np.linspace(0.0, 4.0, 2000)
    rng = np.random.default_rng(4)
    y = 2.0 * np.exp(-1.3 * x) + 0.5 + 0.01 * rng.standard_normal(x.size)
    popt, pcov = hpcfit.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0])
    ref, ref_cov = scipy_curve_fit(lambda x, a, k, c: a * np.exp(-k * x) + c, x, y, p0=[1.0, 1.0, 0.0])
    assert seen and all(set(s) == {1} for s in seen)
    assert set(blas_threads()) == {2}
    np.testing.assert_allclose(popt, ref, rtol=1e-6)
    np.testing.assert_allclose(np.sqrt(np.diag(pcov)), np.sqrt(np.diag(ref_cov)), rtol=1e-4)
