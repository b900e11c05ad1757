"""The kinds of prepared data of a run (hpcfit.app.kinds): each one's parameters, fit, per-point
source and fingerprint; fits checked against scipy.optimize.curve_fit."""
import hashlib
import os
import tomllib
from dataclasses import replace

import h5py
import numpy as np
import pytest
from scipy.optimize import curve_fit as scipy_curve_fit

from hpcfit.app.config import DATA_KINDS, validate
from hpcfit.app.kinds import CONFIG_KINDS, HDF5Data, Table, TwoTime
from hpcfit.app.run import ordered_parameters, prepare
from hpcfit.app.templates import TEMPLATES
from hpcfit.xpcs.defaults import DEFAULT_BOUNDS, DEFAULT_P0

QUIET = {"verbose": 0}


def _decay(x, a, b, c):
    return a * np.exp(-b * x) + c


def _exp_data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 4.0, n)
    sigma = 0.02 + 0.01 * rng.random(n)
    y = _decay(x, 2.0, 1.3, 0.4) + sigma * rng.standard_normal(n)
    return x, y, sigma


def _config(tmp_path, data, model=None, parameters=None):
    raw = {"data": data, "model": model if model is not None else {"name": "exponential_decay"},
           "parameters": parameters if parameters is not None else {"a": 1.0, "b": 1.0, "c": 0.0},
           "output": {"directory": "out", "plots": False}}
    return validate(raw, str(tmp_path / "run.toml"))


def _fit(prepared, cfg):
    p0, lower, upper = ordered_parameters(cfg, *prepared.parameters(cfg))
    return prepared.fit(cfg, p0, lower, upper, dict(QUIET), None), p0


def test_every_config_kind_of_the_schema_is_prepared():
    from hpcfit.app.config import G2_KINDS
    # the g2 kinds are many small fits, not one: hpcfit.app.g2_run runs them
    assert set(CONFIG_KINDS) | set(G2_KINDS) == set(DATA_KINDS) and not set(CONFIG_KINDS) & set(G2_KINDS)


def test_a_table_fits_as_scipy_and_is_fingerprinted_by_its_values(tmp_path):
    x, y, sigma = _exp_data()
    np.savez(tmp_path / "data.npz", x=x, y=y, sigma=sigma)
    cfg = _config(tmp_path, {"kind": "file", "file": "data.npz"})
    table = prepare(cfg)
    assert isinstance(table, Table) and table.names == ["a", "b", "c"] and table.parameters(cfg) == (["a", "b", "c"],
                                                                                                      None)
    res, p0 = _fit(table, cfg)
    popt, pcov = scipy_curve_fit(_decay, x, y, p0=p0, sigma=sigma)
    np.testing.assert_allclose(res.popt, popt, rtol=1e-6)
    np.testing.assert_allclose(res.pcov, pcov, rtol=1e-4)

    src = table.per_point_source(cfg)
    assert np.array_equal(src.ydata, y) and np.array_equal(src.sigma, sigma)
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(a, dtype=np.float64).tobytes() for a in (x, y, sigma)))
    fp = table.fingerprint(cfg, res)
    assert fp["kind"] == "file" and fp["n_points"] == x.size and fp["sha256"] == digest.hexdigest()
    assert fp["file"]["path"] == str(tmp_path / "data.npz")
    assert fp["file"]["size"] == (tmp_path / "data.npz").stat().st_size
    curve, xpcs = table.plot_data()["curve"], table.plot_data()["xpcs"]
    assert xpcs is None and [np.array_equal(b[1], y) for b in curve()] == [True]


def test_the_demo_is_a_table_with_absolute_sigma(tmp_path):
    cfg = validate({"data": {"kind": "demo", "n_points": 500}}, str(tmp_path / "run.toml"))
    demo = prepare(cfg)
    assert isinstance(demo, Table) and demo.absolute_sigma and len(demo.names) == 9
    assert "file" not in demo.fingerprint(cfg, type("R", (), {"info": {}, "n_points": 500})())


def test_an_hdf5_file_fits_as_scipy_and_is_fingerprinted_by_its_stat(tmp_path):
    x, y, sigma = _exp_data(seed=1)
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x"], f["y"], f["sigma"] = x, y, sigma
    cfg = _config(tmp_path, {"kind": "file", "file": "data.h5", "sigma": "sigma", "absolute_sigma": True})
    data = prepare(cfg)
    assert isinstance(data, HDF5Data) and data.per_point_source(cfg) is data.source
    res, p0 = _fit(data, cfg)
    popt, pcov = scipy_curve_fit(_decay, x, y, p0=p0, sigma=sigma, absolute_sigma=True)
    np.testing.assert_allclose(res.popt, popt, rtol=1e-6)
    np.testing.assert_allclose(res.pcov, pcov, rtol=1e-4)
    fp = data.fingerprint(cfg, res)
    st = os.stat(tmp_path / "data.h5")
    assert "sha256" not in fp and fp["file"] == {"path": str(tmp_path / "data.h5"), "size": st.st_size,
                                                 "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}
    assert data.plot_data()["curve"] == data.source.blocks


@pytest.fixture(scope="module")
def two_time(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("xpcs")
    data = {"kind": "xpcs-simulated", "n_phi": 2, "n_t": 40, "mode": "static", "dt": 0.5, "q": 0.0054, "L": 2e6,
            "params": [1500.0, -0.25, 20.0], "contrast": 0.25, "offset": 1.0, "noise": 0.003, "seed": 4,
            "phi": [0.0, 90.0]}
    cfg = _config(tmp_path, data, model={"name": "xpcs", "mode": "static", "scaling": "individual"}, parameters={})
    return cfg, prepare(cfg, say=lambda *_: None)


def test_xpcs_data_fit_as_scipy_with_the_default_start_and_bounds(two_time):
    from hpcfit.models.xpcs import TwoTimeModel
    from hpcfit.xpcs.fit import fit_points, initial_scaling

    cfg, data = two_time
    assert isinstance(data, TwoTime) and data.plot_data() == {"curve": None, "xpcs": data.data}
    names, defaults = data.parameters(cfg)
    assert names == ["D0", "alpha", "D_offset"]
    assert defaults == {n: (DEFAULT_P0[n], *DEFAULT_BOUNDS[n]) for n in names}
    res, _ = _fit(data, cfg)
    assert res.names[:3] == names and 0.9 < res.reduced_chi2 < 1.1       # σ estimated from the data
    res, _ = _fit(data, replace(cfg, model={**cfg.model, "noise": "none"}))   # every point alike, as scipy here

    points = fit_points(data.data, "upper")
    source = data.per_point_source(cfg)
    n = source.grid.n_points
    with h5py.File(data.data, "r") as f:
        y = f["y"][:]
    assert y.size == n == res.n_points
    model = TwoTimeModel(tuple(points.phi), points.n_t, points.dt, points.q, 1.0, mode="static")
    x = np.asarray(source.grid(np.arange(n)))
    boxes = [DEFAULT_BOUNDS[n] for n in names] + [DEFAULT_BOUNDS["contrast"]] * 2 + [DEFAULT_BOUNDS["offset"]] * 2
    lower, upper = np.array(boxes).T
    # the start the XPCS fit documents: the defaults, and contrast/offset from the data
    start = np.clip([DEFAULT_P0[n] for n in names] + list(np.concatenate(initial_scaling(points, "individual"))),
                    lower, upper)
    popt, _ = scipy_curve_fit(lambda xx, *p: np.asarray(model(xx, *p)), x, y, p0=start, bounds=(lower, upper))
    np.testing.assert_allclose(res.popt, popt, rtol=1e-4)
    fp = data.fingerprint(cfg, res)
    assert fp["kind"] == "xpcs-simulated" and fp["file"]["path"] == os.path.abspath(data.data)


def test_the_xpcs_template_starts_from_the_fit_defaults():
    params = tomllib.loads(TEMPLATES["xpcs"])["parameters"]
    assert {n: p["value"] for n, p in params.items()} == DEFAULT_P0
    assert {n: (p["min"], p["max"]) for n, p in params.items()} == \
        {n: DEFAULT_BOUNDS[n] for n in DEFAULT_P0}


@pytest.mark.parametrize("scaling, extra", [("individual", 2 * 3), ("shared", 2), ("fixed", 0)])
def test_the_dry_run_counts_the_parameters_of_every_angle_of_a_beamline_file(tmp_path, scaling, extra):
    """kind "xpcs" (a beamline file with 3 angles): 7 physical parameters of laminar flow, plus a
    contrast and an offset per angle (individual), one pair (shared) or none (fixed)."""
    from hpcfit.app.plan import plan
    from hpcfit.xpcs import simulate

    path = tmp_path / "three-angles.h5"
    simulate(path, layout="aps-u", n_phi=3, n_t=20, mode="laminar_flow", dt=0.5, q=0.0054, L=2e6,
             params=[1500.0, -0.25, 20.0, 3e-4, 0.35, 1e-5, 5.0], contrast=0.25, offset=1.0, noise=0.003, seed=1)
    cfg = _config(tmp_path, {"kind": "xpcs", "file": str(path), "q": 0.0054, "dt": 0.5},
                  model={"mode": "laminar_flow", "L": 2e6, "scaling": scaling}, parameters={})
    lines = plan(cfg, None)
    assert f"parameters: {7 + extra}" in lines, lines
    assert f"points: {3 * 20 * 19 // 2}" in lines, lines
    assert any("phase 1 on all 570 points with the same kernels" in line for line in lines), lines
