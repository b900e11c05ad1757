"""Noise from the data (issue 20): σ per map and lag estimated from two-time maps against the σ
the simulation used, robust to outliers; σ from a function of the point index (WeightedSource)
against scipy's weighted least squares; the default XPCS fit's reduced χ² on heteroscedastic data."""
import numpy as np
import pytest
from scipy.optimize import curve_fit as scipy_curve_fit

import hpcfit
from hpcfit.data import ArraySource
from hpcfit.data.weighted import WeightedSource
from hpcfit.errors import InputError
from hpcfit.pairs import pair_at, pair_frames
from hpcfit.xpcs import beamline, fit, simulate
from hpcfit.xpcs.noise import PairNoise, estimate_noise, lag_bands

TRUTH = [1500.0, -0.25, 20.0, 3e-4, 0.35, 1e-5, 5.0]


def noisy_maps(sigma0, growth, n_t=200, seed=0, outliers=0.0):
    """Maps of a slowly aging signal plus symmetric noise of σ(τ) = σ0·(1 + growth·τ/(n_t − 1))."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_t)
    lag = np.abs(t[:, None] - t[None, :])
    maps = []
    for s0 in sigma0:
        signal = 1.0 + 0.3 * np.exp(-lag / 40.0) * (1 + 0.001 * t[:, None])
        z = rng.standard_normal((n_t, n_t))
        noise = (z + z.T) / np.sqrt(2) * s0 * (1 + growth * lag / (n_t - 1))
        m = signal + noise
        if outliers:
            hit = rng.random(m.shape) < outliers
            m[hit] += 50 * s0
        maps.append(m)
    return np.stack(maps)


def sample_of(maps):
    return lambda a, t1, t2: maps[a, t1, t2]


def test_lag_bands_hold_about_equal_numbers_of_pairs():
    bands = lag_bands(200)
    assert len(bands) == 8 and np.concatenate(bands).tolist() == list(range(1, 198))
    counts = [np.sum(200 - b) for b in bands]
    assert max(counts) < 1.3 * min(counts)
    assert [b.tolist() for b in lag_bands(6)] == [[1], [2], [3]]
    with pytest.raises(InputError, match="at least 4 frames"):
        lag_bands(3)


@pytest.mark.parametrize("n_t", [60, 200, 2583, 4800])
def test_each_band_reads_about_a_thousand_runs_of_a_map_whatever_its_size(n_t):
    """The sample per map stays ~8·1024 runs of three pairs (a 2583-frame map once read 200 000,
    with the short diagonals of the last band taken in full), spread over each band's lags."""
    from hpcfit.xpcs.noise import SAMPLES_PER_BAND, _sampled_pairs
    bands = lag_bands(n_t)
    t1, lag, band = _sampled_pairs(bands, n_t)
    assert np.all(t1 >= 0) and np.all(t1 + 2 + lag <= n_t - 1)         # three pairs inside the map
    for b, lags in enumerate(bands):
        runs = np.count_nonzero(band == b)
        available = int(np.sum(np.minimum(256, n_t - lags - 2)))
        assert min(SAMPLES_PER_BAND, available) <= runs <= 1.5 * SAMPLES_PER_BAND, (b, runs)
        used = np.unique(lag[band == b])
        assert used[0] == lags[0] and used[-1] == lags[-1]                # both ends of the band


@pytest.mark.parametrize("outliers", [0.0, 0.01])
def test_sigma_per_map_and_lag_is_the_simulated_one(outliers):
    sigma0, growth, n_t = [0.002, 0.01, 0.005], 1.0, 200
    maps = noisy_maps(sigma0, growth, n_t, outliers=outliers)
    est = estimate_noise(sample_of(maps), 3, n_t)
    lags = np.arange(5, n_t - 5)
    for m, s0 in enumerate(sigma0):
        truth = s0 * (1 + growth * lags / (n_t - 1))
        ratio = est.by_lag[m, lags] / truth
        # ~1000 differences per band: a MAD is good to ~4 %; outliers (1 %, 50 σ) lift it ~2 %
        assert np.all(np.abs(ratio - 1) < 0.15), (m, ratio.min(), ratio.max(), np.argmax(np.abs(ratio - 1)))
        assert abs(np.median(ratio) - 1) < 0.06


def test_pair_noise_gives_sigma_at_global_indices_of_a_pair_grid():
    n_t = 7
    by_lag = np.arange(2 * n_t, dtype=float).reshape(2, n_t) + 1
    noise = PairNoise(by_lag, np.array([]), np.zeros((2, 0)), "given")
    for triangle in ("upper", "both"):
        t1, t2 = pair_frames(n_t, triangle)
        per_map = t1.size
        index = np.arange(2 * per_map)
        want = by_lag[index // per_map, np.abs(np.tile(t2, 2) - np.tile(t1, 2))]
        np.testing.assert_array_equal(noise.sigma_of(per_map, n_t, triangle)(index), want)
        got_t1, got_t2 = pair_at(index % per_map, n_t, triangle)
        np.testing.assert_array_equal(got_t1, np.tile(t1, 2))


def test_a_weighted_source_fits_as_scipy_with_those_sigma():
    x = np.linspace(0, 5, 3000)
    sigma = 0.01 * (1 + x)
    y = 2 * np.exp(-1.3 * x) + 0.5 + sigma * np.random.default_rng(3).standard_normal(x.size)
    source = WeightedSource(ArraySource(x, y), lambda i: 0.01 * (1 + x[i]))
    res = hpcfit.fit(hpcfit.models.exponential_decay, source, [1.0, 1.0, 0.0], absolute_sigma=True, verbose=0)
    popt, pcov = scipy_curve_fit(lambda x, a, b, c: a * np.exp(-b * x) + c, x, y, p0=[1.0, 1.0, 0.0], sigma=sigma,
                                 absolute_sigma=True)
    np.testing.assert_allclose(res.popt, popt, rtol=1e-7)
    np.testing.assert_allclose(res.pcov, pcov, rtol=1e-5)
    same = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, [1.0, 1.0, 0.0], sigma=sigma, absolute_sigma=True,
                            verbose=0)
    assert same.popt.tobytes() == res.popt.tobytes()


@pytest.fixture(scope="module")
def heteroscedastic(tmp_path_factory):
    """2 rings x 3 angles, σ 0.002 and 0.006, growing 2x over the lags."""
    path = tmp_path_factory.mktemp("noise") / "hetero.h5"
    simulate(path, n_phi=3, n_t=60, q=[0.004, 0.0065], dt=0.5, L=2e6, params=TRUTH, contrast=0.25, offset=1.0,
             noise=[0.002, 0.006], noise_growth=1.0, seed=4, phi=[-40.0, 10.0, 70.0])
    return path


def test_the_default_fit_estimates_the_noise_and_its_chi2_is_one(heteroscedastic):
    data = beamline(heteroscedastic, q="all", dt=0.5)
    res = fit(data, L=2e6, verbose=0)
    info = res.info["xpcs"]["noise"]
    assert info["method"] == "estimated" and len(info["sigma"]) == 6
    assert 0.9 < res.reduced_chi2 < 1.1
    assert np.all(np.abs((res.popt[:7] - TRUTH) / res.perr[:7]) < 4)
    # the σ of ring 2 is about 3x ring 1's, at every band
    ratio = np.asarray(info["sigma"])[3:] / np.asarray(info["sigma"])[:3]
    assert 2.6 < np.median(ratio) < 3.4 and np.all((ratio > 1.8) & (ratio < 4.5)), ratio
    # unweighted, the reduced χ² is the mean variance: nothing to check the noise model with
    flat = fit(data, L=2e6, verbose=0, noise=None)
    assert flat.info["xpcs"]["noise"] is None and flat.reduced_chi2 < 1e-3
    given = fit(data, L=2e6, verbose=0, noise=0.004)
    assert given.info["xpcs"]["noise"]["method"] == "given"
    for bad in ("guess", -1.0, 0):
        with pytest.raises(InputError, match="`noise`"):
            fit(data, L=2e6, verbose=0, noise=bad)


def test_a_model_that_misses_the_data_by_far_more_than_their_noise_says_so(heteroscedastic):
    """Static fits of laminar-flow data: the shear is left unexplained, and the residuals are many
    times the noise."""
    res = fit(beamline(heteroscedastic, q="all", dt=0.5), mode="static", verbose=0)
    assert res.reduced_chi2 > 1.5 and not res.trustworthy
    assert any("the residuals are" in issue and "too small" in issue for issue in res.trust_issues)
    good = fit(beamline(heteroscedastic, q="all", dt=0.5), L=2e6, verbose=0)
    assert not any("the residuals are" in issue for issue in good.trust_issues)
