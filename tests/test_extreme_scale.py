"""Data of one extreme magnitude fit as the same data at order 1 (docs/usage.md), whatever their
first chunk holds and whichever parameter starts at 0: popt and perr equal scipy's fit of the
order-1 data times the amplitude. Where no scale can work, one error names the scale and the
data's range. Reproducers: b-extreme-magnitude-overflow.py, b-extreme-data-zero-p0.py,
b-scale-first-chunk.py."""
import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import curve_fit as scipy_curve_fit

import hpcfit
from hpcfit.data.sample import Sample
from hpcfit.data.scale import residual_scale

RNG = np.random.default_rng(24)


def decay(x, a, b):
    return a * jnp.exp(-b * x)


def decay_np(x, a, b):
    return a * np.exp(-b * x)


def offset_decay(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def offset_decay_np(x, a, b, c):
    return a * np.exp(-b * x) + c


def gauss(x, a, x0, w):
    return a * jnp.exp(-0.5 * ((x - x0) / w) ** 2)


def gauss_np(x, a, x0, w):
    return a * np.exp(-0.5 * ((x - x0) / w) ** 2)


def _quiet_fit(*args, **kw):
    with np.errstate(all="ignore"):          # the data's own squares underflow/overflow in user units
        return hpcfit.curve_fit(*args, verbose=0, **kw)


# -- b-extreme-magnitude-overflow: a median |y/σ| below 2^-1024 ------------------------------------------

X50 = np.linspace(0.0, 50.0, 1000)            # 50 decay lengths: the median point is ~1e-311, subnormal
Y50 = np.exp(-X50) * (1.0 + 0.01 * RNG.standard_normal(X50.size))


@pytest.mark.parametrize("amp", [1e-300, 1e300])
def test_a_decay_with_a_subnormal_median_fits_as_at_order_one(amp):
    ref, ref_cov = scipy_curve_fit(decay_np, X50, Y50, p0=[1.5, 0.8])
    res = _quiet_fit(decay, X50, amp * Y50, p0=[1.5 * amp, 0.8])
    units = np.array([amp, 1.0])
    assert res.success and res.trustworthy
    np.testing.assert_allclose(res.popt / units, ref, rtol=1e-6)
    np.testing.assert_allclose(res.perr / units, np.sqrt(np.diag(ref_cov)), rtol=1e-4)
    if amp < 1:      # median 2^-1033: the largest scale that keeps 1/sigma·scale a normal float64, 2^1023
        assert res.info["residual_scale"] == 2.0 ** 1023


def test_the_cli_fits_a_decay_with_a_subnormal_median(tmp_path, monkeypatch):
    """`python -m hpcfit fit` on the 1e-300 data (once a bare OverflowError traceback)."""
    from hpcfit.cli import main

    np.savez(tmp_path / "data.npz", x=X50, y=1e-300 * Y50)
    (tmp_path / "model.py").write_text("import jax.numpy as jnp\n\ndef decay(x, a, b):\n"
                                       "    return a * jnp.exp(-b * x)\n")
    (tmp_path / "run.toml").write_text(f'[data]\nfile = "data.npz"\n[model]\nfunction = "{tmp_path}/model.py:decay"\n'
                                       '[parameters]\na = 1.5e-300\nb = 0.8\n[fit]\nverbose = 0\n'
                                       '[output]\ndirectory = "out"\nplots = false\n')
    monkeypatch.chdir(tmp_path)
    ref, _ = scipy_curve_fit(decay_np, X50, Y50, p0=[1.5, 0.8])
    with np.errstate(all="ignore"):
        code = main(["fit", str(tmp_path / "run.toml")])
    assert code == 0
    saved = hpcfit.load_result(tmp_path / "out" / "result.json")
    np.testing.assert_allclose(saved.popt / [1e-300, 1.0], ref, rtol=1e-6)


# -- b-extreme-data-zero-p0: a parameter that starts at 0 ----------------------------------------------

X10 = np.linspace(0.0, 10.0, 2000)
Y10 = np.exp(-0.7 * X10) + 0.1 + 0.01 * RNG.standard_normal(X10.size)
XG = np.linspace(-5.0, 5.0, 2000)
YG = np.exp(-0.5 * ((XG - 0.3) / 1.2) ** 2) + 0.01 * RNG.standard_normal(XG.size)


@pytest.mark.parametrize("amp", [1e-300, 1e300])
def test_an_offset_that_starts_at_zero_fits_as_at_order_one(amp):
    """c's column of J was 1e±300 with scale 1: JᵀWJ overflowed (an error blaming the model's
    derivatives) or c's column underflowed to 0 ("the data do not determine c")."""
    ref, ref_cov = scipy_curve_fit(offset_decay_np, X10, Y10, p0=[2.0, 0.3, 0.0])
    res = _quiet_fit(offset_decay, X10, amp * Y10, p0=[2.0 * amp, 0.3, 0.0])
    units = np.array([amp, 1.0, amp])
    assert res.success and res.trustworthy, res.trust_issues
    np.testing.assert_allclose(res.popt / units, ref, rtol=1e-6)
    np.testing.assert_allclose(res.perr / units, np.sqrt(np.diag(ref_cov)), rtol=1e-4)


@pytest.mark.parametrize("amp", [1e-300, 1e300])
def test_an_offset_that_starts_at_zero_with_sigma_of_the_datas_magnitude(amp):
    """|y/σ| is of order 1 (no residual scale), but y and c are 1e±300: c's scale still follows the data."""
    sigma = np.full(X10.size, 0.01)
    ref, ref_cov = scipy_curve_fit(offset_decay_np, X10, Y10, p0=[2.0, 0.3, 0.0], sigma=sigma, absolute_sigma=True)
    res = _quiet_fit(offset_decay, X10, amp * Y10, p0=[2.0 * amp, 0.3, 0.0], sigma=amp * sigma, absolute_sigma=True)
    units = np.array([amp, 1.0, amp])
    assert res.success and res.trustworthy, res.trust_issues
    assert res.info["residual_scale"] == 1.0
    np.testing.assert_allclose(res.popt / units, ref, rtol=1e-6)
    np.testing.assert_allclose(res.perr / units, np.sqrt(np.diag(ref_cov)), rtol=1e-4)


@pytest.mark.parametrize("amp", [1e-300, 1e300])
def test_a_position_that_starts_at_zero_keeps_its_own_units(amp):
    """A peak's centre x0 = 0 is measured in x's units, not the data's: its column is of order 1."""
    ref, _ = scipy_curve_fit(gauss_np, XG, YG, p0=[2.0, 0.0, 1.0])
    res = _quiet_fit(gauss, XG, amp * YG, p0=[2.0 * amp, 0.0, 1.0])
    assert res.success and res.trustworthy, res.trust_issues
    np.testing.assert_allclose(res.popt / [amp, 1.0, 1.0], ref, rtol=1e-6)


# -- b-scale-first-chunk: the scale comes from the whole data, not from chunk 0 ------------------------

CS = 4096
XC = np.linspace(10.0, 0.0, 4 * CS)           # chunk 0 is the decay's tail, where zeros are nearly right
YC = np.exp(-0.7 * XC) * (1.0 + 0.01 * RNG.standard_normal(XC.size))


@pytest.mark.parametrize("amp, fill", [(1e-300, 0.0), (1e300, 0.0), (1.0, 1e-200)])
def test_a_first_chunk_of_zeros_or_tiny_values_changes_nothing(amp, fill):
    y1 = YC.copy()
    y1[:CS] = 0.0
    ref, _ = scipy_curve_fit(decay_np, XC, y1, p0=[2.0, 0.3])      # the order-1 data, zeros in chunk 0
    y = amp * y1
    y[:CS] = fill
    res = _quiet_fit(decay, XC, y, p0=[2.0 * amp, 0.3], chunk_size=CS)
    assert res.success and res.trustworthy, res.trust_issues
    np.testing.assert_allclose(res.popt / [amp, 1.0], ref, rtol=1e-6)
    assert (res.info["residual_scale"] == 1.0) == (amp == 1.0)


# -- where no scale can work --------------------------------------------------------------------------

def test_data_spanning_more_than_float64_name_the_scale_and_the_range():
    y = 1e-300 * Y10
    y[::2] = 1e300 * Y10[::2]
    message = (r"the data's \|y/sigma\| span 2\^-\d+\.\d to 2\^\d+\.\d .*: no power-of-two residual scale "
               r"brings them into float64's range \(at the median's scale 2\^-?\d+, \d+ sampled values exceed")
    with pytest.raises(hpcfit.InputError, match=message) as info:
        _quiet_fit(offset_decay, X10, y, p0=[2e-300, 0.3, 1e-301])
    assert "derivative" not in str(info.value) and "\n" not in str(info.value)


def test_an_overflowing_column_names_the_scale_not_the_models_derivatives():
    """normalize='none' measures a and c in units of 1 on data of order 1e-300."""
    with pytest.raises(hpcfit.InputError, match=r"JᵀWJ overflowed at p0 = .* with the residuals scaled by 2\^\d+ "
                                                r"\(the data's median \|y/sigma\| is about 2\^-\d+") as info:
        _quiet_fit(offset_decay, X10, 1e-300 * Y10, p0=[2e-300, 0.3, 0.0], normalize="none")
    assert "derivatives are NaN" not in str(info.value)


def test_one_wild_value_among_tiny_data_is_named_with_the_scale():
    y = 1e-300 * Y10
    y[1234] = 1e-100
    with pytest.raises(hpcfit.InputError, match=r"1 point\(s\) of the data \(arrays\) .* global point index 1234 "
                                                r"\(the fit scales the residuals by 2\^\d+"):
        _quiet_fit(offset_decay, X10, y, p0=[2e-300, 0.3, 1e-301])


# -- the residual scale itself (pure function of the sample) ---------------------------------------------

def _sample(y, weight):
    y, weight = np.asarray(y, dtype=float), np.asarray(weight, dtype=float)
    return Sample(np.arange(y.size), np.arange(y.size, dtype=float), y, weight, None)


@pytest.mark.parametrize("median_exponent", [-1000, -200, -101, 101, 200, 1000])
def test_the_scale_brings_the_median_into_one_half_to_one(median_exponent):
    y = np.ldexp(np.array([0.75, 0.6, 0.9, 0.0, 0.55]), median_exponent)     # the zero does not count
    scale = residual_scale(_sample(y, np.ones(5)))
    assert scale == math.ldexp(1.0, -median_exponent)
    assert 0.5 <= np.median(y[y != 0]) * scale < 1.0


@pytest.mark.parametrize("median_exponent", [-100, 0, 100])
def test_ordinary_magnitudes_and_all_zeros_keep_scale_one(median_exponent):
    assert residual_scale(_sample(np.ldexp([0.7, 0.8, 0.9], median_exponent), np.ones(3))) == 1.0
    assert residual_scale(_sample(np.zeros(4), np.ones(4))) == 1.0


def test_a_subnormal_median_gets_the_largest_exact_scale():
    y = np.array([1e-311, 2e-311, 3e-311])                      # subnormal: 2^-1033 and so on
    assert residual_scale(_sample(y, np.ones(3))) == 2.0 ** 1023
    # with a weight of 0.75·2^10 the scale stops where 1/sigma·scale is still finite: 0.75·2^1024
    assert residual_scale(_sample(y, [1.0, 0.75 * 2.0 ** 10, 1.0])) == 2.0 ** 1014
