"""XPCS fits on simulated two-time data: the truth is recovered within 3σ for every parameter."""
import warnings
import numpy as np
import pytest

import hpcfit
from hpcfit.models.xpcs import two_time_c2
from hpcfit.xpcs.fit import fit, fit_points, initial_scaling
from hpcfit.xpcs.load import TwoTimeData

PHI = np.array([-10.0, 0.0, 15.0, 45.0, 90.0, 135.0, 180.0])
N_T, DT, Q, L = 160, 0.5, 0.0054, 2e6
TRUTH = [1500.0, -0.25, 20.0, 3e-4, 0.35, 1e-5, 5.0]
CONTRAST = 0.2 + 0.02 * np.arange(PHI.size)
OFFSET = 1.0 + 0.001 * np.arange(PHI.size)
NOISE = 0.002


def simulated(mode="laminar_flow", seed=1):
    params = TRUTH if mode == "laminar_flow" else TRUTH[:3]
    c2 = np.asarray(two_time_c2(params, phi=PHI, n_t=N_T, dt=DT, q=Q, L=L, contrast=CONTRAST, offset=OFFSET,
                                mode=mode))
    noise = np.random.default_rng(seed).standard_normal(c2.shape) * NOISE
    c2 = c2 + (noise + noise.transpose(0, 2, 1)) / np.sqrt(2)        # symmetric, sd NOISE off the diagonal
    return TwoTimeData(c2=c2, phi=PHI, q=Q, dt=DT, frames=(1, N_T), path="<simulated>", layout="simulated",
                       source_stamp=(0, 0))


@pytest.fixture(scope="module")
def laminar():
    return fit(simulated(), mode="laminar_flow", L=L, p0=[1000.0, 0.0, 0.0, 1e-3, 0.0, 0.0, 0.0], verbose=0)


def test_laminar_flow_fit_recovers_the_truth_within_3_sigma(laminar):
    res = laminar
    assert res.success, res.message
    truth = np.concatenate([TRUTH, CONTRAST, OFFSET])
    pulls = (res.popt - truth) / res.perr
    assert np.all(np.abs(pulls) < 3.0), dict(zip(res.names, np.round(pulls, 2)))
    assert res.names[:7] == ["D0", "alpha", "D_offset", "gamma_dot_t0", "beta", "gamma_dot_t_offset", "phi0"]
    assert res.names[7] == "contrast_0" and res.names[-1] == f"offset_{PHI.size - 1}"
    # σ estimated from the data (the default): reduced chi2 ≈ 1 when the estimate is NOISE
    assert abs(res.reduced_chi2 - 1.0) < 0.05
    assert np.allclose(res.info["xpcs"]["noise"]["sigma"], NOISE, rtol=0.15)


def test_result_records_the_model_form(laminar):
    info = laminar.info["xpcs"]
    assert info["form"] == "homodyne" and info["mode"] == "laminar_flow" and info["triangle"] == "upper"
    assert info["n_t"] == N_T and info["phi"] == PHI.tolist()


def test_static_shared_scaling():
    data = simulated("static", seed=2)
    c2 = data.c2
    shared = TwoTimeData(c2=np.asarray(two_time_c2(TRUTH[:3], phi=PHI, n_t=N_T, dt=DT, q=Q, L=L, contrast=0.25,
                                                   offset=1.002, mode="static")) + (c2 - np.asarray(
        two_time_c2(TRUTH[:3], phi=PHI, n_t=N_T, dt=DT, q=Q, L=L, contrast=CONTRAST, offset=OFFSET, mode="static"))),
        phi=PHI, q=Q, dt=DT, frames=(1, N_T), path="<sim>", layout="simulated", source_stamp=(0, 0))
    res = fit(shared, mode="static", scaling="shared", verbose=0)
    assert res.success and res.names == ["D0", "alpha", "D_offset", "contrast", "offset"]
    pulls = (res.popt - np.array(TRUTH[:3] + [0.25, 1.002])) / res.perr
    assert np.all(np.abs(pulls) < 3.0), pulls


def test_counting_every_pair_twice_shrinks_errors_by_sqrt2():
    """triangle='both' fits the same minimum but claims √2 smaller uncertainties (documented)."""
    data = simulated("static", seed=3)
    # Same route to the minimum for both (no warm-up on different samples), so only n differs.
    strict = dict(verbose=0, ftol=1e-12, xtol=1e-12, method="gn")
    upper = fit(data, mode="static", scaling="shared", **strict)
    both = fit(data, mode="static", scaling="shared", triangle="both", **strict)
    np.testing.assert_allclose(both.popt, upper.popt, rtol=1e-7)
    np.testing.assert_allclose(upper.perr / both.perr, np.sqrt(2.0), rtol=1e-3)
    assert both.n_points == 2 * upper.n_points


def test_initial_scaling_from_quantiles():
    data = simulated()
    contrast, offset = initial_scaling(fit_points(data, "upper"), "individual")
    np.testing.assert_allclose(offset, OFFSET, atol=0.01)
    # g1 has already decayed somewhat at lag 1…3 here, so the guess is low but of the right size
    assert np.all(contrast > 0.5 * CONTRAST) and np.all(contrast < 1.1 * CONTRAST)


def test_bad_arguments():
    data = simulated("static")
    with pytest.raises(hpcfit.InputError, match="`L`"):
        fit(data, mode="laminar_flow")
    with pytest.raises(hpcfit.InputError, match="`triangle`"):
        fit(data, mode="static", triangle="lower")
    with pytest.raises(hpcfit.InputError, match=r"`p0` must be a sequence of 3 \(physical: D0, alpha, D_offset\)"):
        fit(data, mode="static", p0=[1.0, 2.0])
    with pytest.raises(hpcfit.InputError, match="`p0` must be a sequence"):
        fit(data, mode="static", p0=1000.0)
    with pytest.raises(hpcfit.InputError, match="`bounds` must be"):
        fit(data, mode="static", bounds=([0, 0], [1, 1]))
    with pytest.raises(hpcfit.InputError, match="`data` must be a TwoTimeData"):
        fit(np.zeros((2, 3, 3)), mode="static")


def test_stream_file_fit_is_bitwise_the_in_memory_fit(tmp_path):
    from hpcfit.xpcs import convert_to_stream
    data = simulated("static", seed=4)
    path = convert_to_stream(data, tmp_path / "s.h5")
    mem = fit(data, mode="static", scaling="shared", verbose=0)
    streamed = fit(str(path), mode="static", scaling="shared", verbose=0)
    assert streamed.popt.tobytes() == mem.popt.tobytes() and streamed.pcov.tobytes() == mem.pcov.tobytes()
    assert streamed.info["source"].startswith("HDF5")


def test_prepare_stream_converts_once_and_reuses(tmp_path):
    import os

    import h5py

    from hpcfit.xpcs import convert_to_stream, load, prepare_stream, simulate
    src = tmp_path / "raw.h5"
    simulate(src, layout="aps-u", n_phi=3, n_t=40, mode="static", dt=0.5, q=Q, L=L, params=TRUTH[:3],
             contrast=0.25, offset=1.0, noise=0.002, seed=5)
    first = prepare_stream(src, q=Q, dt=DT, phi_ranges=[(0, 200)])
    assert first.parent == tmp_path and first.exists()
    stamp = os.stat(first).st_mtime_ns
    assert prepare_stream(src, q=Q, dt=DT, phi_ranges=[(0, 200)]) == first
    assert os.stat(first).st_mtime_ns == stamp                          # reused, not rewritten
    ref = convert_to_stream(load(src, q=Q, dt=DT, phi_ranges=[(0, 200)]), tmp_path / "ref.h5")
    with h5py.File(first) as a, h5py.File(ref) as b:
        assert np.array_equal(a["y"][:], b["y"][:]) and np.array_equal(a["phi"][:], b["phi"][:])
    os.utime(src, ns=(stamp + 10**9, stamp + 10**9))                   # the source changed: convert again
    prepare_stream(src, q=Q, dt=DT, phi_ranges=[(0, 200)])
    assert os.stat(first).st_mtime_ns != stamp
    res = fit(str(first), mode="static", scaling="shared", verbose=0)
    assert res.success


def test_physical_bounds_only_and_start_values_kept_in_the_box():
    """g2 − 1 data (baseline 0): the data-driven offset (≈ 0) is outside the default offset box
    [0.5, 1.5] and must be clipped into it, not reported as a bad p0; physical-only bounds work."""
    data = simulated("static", seed=6)
    shifted = TwoTimeData(c2=data.c2 - 1.0, phi=PHI, q=Q, dt=DT, frames=(1, N_T), path="<sim>", layout="simulated",
                          source_stamp=(0, 0))
    with warnings.catch_warnings():    # 3 iterations with the offset held on its bound: may be degenerate
        warnings.simplefilter("ignore", hpcfit.RankDeficientWarning)
        res = fit(shifted, mode="static", scaling="shared", bounds=([1.0, -2.0, -1e4], [1e6, 2.0, 1e4]), verbose=0,
                  max_iterations=3)
    assert res.n_params == 5 and res.popt[4] >= 0.5                     # offset kept in its default box


def test_prepare_stream_reconverts_for_another_selection_or_a_corrupt_file(tmp_path):
    import h5py

    from hpcfit.xpcs import prepare_stream, read_stream_meta, simulate
    src = tmp_path / "raw.h5"
    simulate(src, layout="aps-u", n_phi=3, n_t=30, mode="static", dt=0.5, q=Q, L=L, params=TRUTH[:3],
             contrast=0.25, offset=1.0, noise=0.002, seed=5)
    out = tmp_path / "s.h5"
    prepare_stream(src, q=Q, dt=0.5, out=out)
    assert read_stream_meta(out).dt == 0.5
    prepare_stream(src, q=Q, dt=2.0, out=out)                              # another dt: converted again
    assert read_stream_meta(out).dt == 2.0
    prepare_stream(src, q=Q, dt=2.0, frames=(1, 10), out=out)              # another frame window
    assert read_stream_meta(out).n_t == 10
    with h5py.File(out, "a") as f:
        f.attrs["n_t"] = "thirty"                                          # a corrupt file is not reused
    prepare_stream(src, q=Q, dt=2.0, frames=(1, 10), out=out)
    assert read_stream_meta(out).n_t == 10


def test_phase_1_scans_the_start_and_the_scan_can_be_replaced_or_switched_off(laminar):
    from hpcfit.xpcs.fit import SCAN, scan_starts
    # from this start LM on the sample settles (a warm start, relative loss 0.003): Adam is skipped and the scan
    # held to the budget, floor(89040 points / 32768 sampled) = 2 starts, and the report says so
    assert [c["origin"] for c in laminar.explore.candidates] == ["p0", "scan 1", "scan 2"]
    assert laminar.explore.reason == "warm_start" and not laminar.warmup.ran
    assert laminar.explore.skipped == (f"scan 3 … scan {len(SCAN)} ({len(SCAN) - 2}): beyond explore_budget (LM from "
                                       f"p0 settled; 1 × 89040 points / 32768 sampled allows 2 of {len(SCAN)})",)
    model = hpcfit.xpcs.TwoTimeModel(tuple(PHI), N_T, DT, Q, L, mode="laminar_flow")
    rows = scan_starts(model, np.array([1000.0, 0.0, 0.0, 1e-3, 0.0, 0.0, 10.0]))
    assert len(rows) == len(SCAN) and rows[0][6] == 40.0 and rows[-1][6] == 100.0
    assert rows[1] == [1000.0, -0.5, 0.0, 1e-3, 0.0, 0.0, 10.0] and rows[2][0] == 1e4
    static = hpcfit.xpcs.TwoTimeModel(tuple(PHI), N_T, DT, Q, L, mode="static")
    np.testing.assert_allclose(scan_starts(static, np.array([1000.0, 0.0, 0.0])),
                               [[1000.0, -0.5, 0.0], [1e4, 0.0, 0.0], [1000.0, 0.5, 0.0], [100.0, 0.0, 0.0]])
    data = simulated()
    # two iterations do not settle LM from p0: a rescue, so every scan start is polished, in SCAN's order
    kw = dict(mode="laminar_flow", L=L, verbose=0, max_iterations=2, warmup_max_steps=0, multistart=0)
    with warnings.catch_warnings():           # stopped after 2 iterations: not what is tested here
        warnings.simplefilter("ignore", hpcfit.RankDeficientWarning)
        cut = fit(data, **kw)
        own = fit(data, explore_starts=[TRUTH], **kw)
        off = fit(data, scan=False, **kw)
    assert [c["origin"] for c in cut.explore.candidates] == ["p0"] + [f"scan {k + 1}" for k in range(len(SCAN))]
    assert [c["origin"] for c in own.explore.candidates] == ["p0", "start 1"]
    assert [c["origin"] for c in off.explore.candidates] == ["p0"]
    with pytest.raises(hpcfit.InputError, match=r"`explore_starts`: each start must have 7 \(physical\) or 21"):
        fit(data, mode="laminar_flow", L=L, verbose=0, explore_starts=[[1.0, 2.0]])


@pytest.mark.parametrize("half", ["upper", "lower"])
def test_a_beamline_file_fitted_directly_gives_the_converted_files_bits(tmp_path, half):
    """Streaming the maps (no conversion) reads the same float32 values as a converted stream file, so
    the fit is the same to the bit: chunks cross rows and angles; a frame window; either stored half."""
    import h5py

    from hpcfit.xpcs import beamline, prepare_stream, simulate

    src = tmp_path / "raw.h5"
    simulate(src, layout="aps-u", n_phi=4, n_t=70, mode="static", dt=DT, q=Q, L=L, params=TRUTH[:3],
             contrast=0.25, offset=1.0, noise=0.002, seed=5)
    if half == "lower":                                   # as h5py reads the MATLAB writer's maps
        with h5py.File(src, "r+") as f:
            for name in f["xpcs/twotime/correlation_map"]:
                ds = f["xpcs/twotime/correlation_map"][name]
                ds[...] = ds[()].T
    kw = dict(q=Q, phi_ranges=[(-1, 200)], frames=(3, 66))
    before = (src.read_bytes(), src.stat().st_mtime_ns)
    converted = prepare_stream(src, dt=DT, out=tmp_path / "stream.h5", **kw)
    with h5py.File(converted) as f:
        assert f["y"].dtype == np.float32                 # half the source's size, not twice it
    options = dict(mode="static", scaling="individual", chunk_size=97, verbose=0)
    direct = fit(beamline(src, dt=DT, **kw), **options)
    streamed = fit(str(converted), **options)
    assert direct.popt.tobytes() == streamed.popt.tobytes() and direct.pcov.tobytes() == streamed.pcov.tobytes()
    assert direct.info["source"].startswith("two-time file") and direct.success
    assert direct.info["xpcs"]["n_t"] == 64
    assert (src.read_bytes(), src.stat().st_mtime_ns) == before        # the source was only read


def test_a_beamline_file_needs_dt_or_records_it_and_nan_is_named(tmp_path):
    import h5py

    from hpcfit.xpcs import beamline, simulate

    src = tmp_path / "raw.h5"
    simulate(src, layout="aps-u", n_phi=2, n_t=30, mode="static", dt=DT, q=Q, L=L, params=TRUTH[:3],
             contrast=0.25, offset=1.0, noise=0.002, seed=5)
    with pytest.raises(hpcfit.InputError, match="`dt` is required"):
        beamline(src, q=Q)
    with pytest.raises(hpcfit.InputError, match="triangle='upper'"):
        fit(beamline(src, q=Q, dt=DT), mode="static", triangle="both", verbose=0)
    with h5py.File(src, "r+") as f:
        name = sorted(f["xpcs/twotime/correlation_map"])[1]
        f["xpcs/twotime/correlation_map"][name][4, 20] = np.nan
    with pytest.raises(hpcfit.InputError, match=rf"map '.*{name}' \(angle index 1.*frames \(5, 21\)"):
        fit(beamline(src, q=Q, dt=DT), mode="static", scan=False, verbose=0, chunk_size=64)


def test_angles_in_two_directions_90_degrees_apart_leave_phi0_ambiguous_and_say_so():
    from hpcfit.xpcs.fit import mirror_axis

    phi = np.array([-170.0, -80.0, 10.0, 100.0])
    assert mirror_axis(phi) == 10.0 and mirror_axis([30.0, 210.0]) == 30.0 and mirror_axis(PHI) is None
    assert mirror_axis([-170.0, -80.0, 10.0, 55.0]) is None
    # closed form: φ0 and its mirror 2·10 − φ0 give the same c2 at these angles
    kw = dict(phi=phi, n_t=20, dt=DT, q=Q, L=L, contrast=0.25, offset=1.0)
    same = [np.asarray(two_time_c2(TRUTH[:6] + [p0], **kw)) for p0 in (5.0, 15.0)]
    np.testing.assert_allclose(same[0], same[1], rtol=1e-12)
    c2 = np.asarray(two_time_c2(TRUTH, **{**kw, "n_t": 60}))
    z = np.random.default_rng(0).standard_normal(c2.shape) * NOISE
    c2 = c2 + (z + z.transpose(0, 2, 1)) / np.sqrt(2)
    data = TwoTimeData(c2=c2, phi=phi, q=Q, dt=DT, frames=(1, 60), path="<simulated>", layout="simulated",
                       source_stamp=(0, 0))
    res = fit(data, L=L, verbose=0)
    assert not res.trustworthy
    assert any("phi0 is ambiguous" in issue and "10° or 100°" in issue for issue in res.trust_issues)
    from hpcfit.xpcs.defaults import DEFAULT_BOUNDS

    names = ["D0", "alpha", "D_offset", "gamma_dot_t0", "beta", "gamma_dot_t_offset"]
    lower, upper = [DEFAULT_BOUNDS[n][0] for n in names] + [5.0], [DEFAULT_BOUNDS[n][1] for n in names] + [5.0]
    fixed = fit(data, L=L, verbose=0, p0=TRUTH, bounds=(lower, upper))      # phi0 held: nothing ambiguous
    assert not any("phi0 is ambiguous" in issue for issue in fixed.trust_issues)
