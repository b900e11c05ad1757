"""Several q rings in one fit (issue 20): the model with one q per map, ring selection from a beamline
file (all, a list, a range; rings with different angles), the simulator's rings, and a joint fit
against the simulation's truth and scipy's least_squares on the same points."""
import json
import os
import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import least_squares

from hpcfit.errors import InputError
from hpcfit.models.xpcs import TwoTimeModel, two_time_c2
from hpcfit.pairs import pair_frames
from hpcfit.xpcs import beamline, fit, load, simulate
from hpcfit.xpcs.layouts import write_aps_u
from hpcfit.xpcs.load import QRange, QRings, q_request, select

TRUTH = [1500.0, -0.25, 20.0, 3e-4, 0.35, 1e-5, 5.0]
RINGS = [0.004, 0.0055, 0.007]


def test_the_model_with_one_q_per_map_is_each_rings_own_model():
    phi, n_t = (10.0, 100.0), 12
    t1, t2 = pair_frames(n_t, "upper")
    q_maps = (0.004, 0.004, 0.007, 0.007)
    model = TwoTimeModel(phi * 2, n_t, 0.5, q_maps, 2e6, scaling="individual")
    contrast, offset = [0.2, 0.25, 0.3, 0.35], [1.0, 1.01, 0.99, 1.02]
    x = np.stack([np.repeat(np.arange(4), t1.size), np.tile(t1, 4), np.tile(t2, 4)]).astype(float)
    got = np.asarray(model(x, *TRUTH, *contrast, *offset))
    want = [np.asarray(two_time_c2(TRUTH, phi=phi, n_t=n_t, dt=0.5, q=q, L=2e6, contrast=contrast[2 * r:2 * r + 2],
                                   offset=offset[2 * r:2 * r + 2]))[:, t1, t2].ravel() for r, q in enumerate((0.004, 0.007))]
    np.testing.assert_allclose(got, np.concatenate(want), rtol=1e-13)
    # the hand-written Jacobian against autodiff of the model, with q per map
    params = jnp.asarray(TRUTH + contrast + offset)
    value, d_shared, d_own = model.grouped_jacobian(x, *params)
    auto = jax.jacfwd(lambda p: model(x, *p))(params)
    np.testing.assert_allclose(value, got, rtol=1e-13)
    np.testing.assert_allclose(d_shared, auto[:, :7], rtol=1e-7, atol=1e-12 * float(jnp.max(jnp.abs(auto[:, :7]))))
    assert model.parameter_names[7] == "contrast_q0.004_phi10" and model.parameter_names[-1] == "offset_q0.007_phi100"
    assert TwoTimeModel(phi, n_t, 0.5, 0.004, 2e6).parameter_names[7:] == ["contrast_0", "contrast_1", "offset_0",
                                                                          "offset_1"]
    with pytest.raises(InputError, match=r"`q` must be one number per map \(4\)"):
        TwoTimeModel(phi * 2, n_t, 0.5, (0.004, 0.007), 2e6)


def test_q_requests():
    assert q_request(0.005) == 0.005 and q_request("all") == "all"
    assert q_request([0.004, 0.007]) == QRings((0.004, 0.007))
    assert q_request((0.004, 0.007)) == QRange(0.004, 0.007) == q_request({"min": 0.004, "max": 0.007})
    for bad, message in [("some", "`q` must be a number, 'all'"), ((1.0, 2.0, 3.0), "a range"),
                         ((0.007, 0.004), "q_min <= q_max"), ([], "at least one ring"), ([0.1, -1], "`q`")]:
        with pytest.raises(InputError, match=message):
            q_request(bad)


@pytest.fixture(scope="module")
def ragged_file(tmp_path_factory):
    """3 rings x 4 angles, ring 1 without its angle 2 (no pixels there), in the APS-U layout."""
    path = tmp_path_factory.mktemp("rings") / "ragged.h5"
    c2 = np.random.default_rng(1).uniform(1.0, 1.3, size=(3, 4, 10, 10))
    c2 = c2 + np.swapaxes(c2, -1, -2)
    write_aps_u(path, c2, RINGS, [0.0, 90.0, 180.0, 270.0], empty=[(1, 2)])
    return path


def test_selecting_rings_with_different_angles(ragged_file):
    every = select(ragged_file, q="all")
    assert every.phi.size == 11 and every.rings == tuple(RINGS)
    np.testing.assert_array_equal(every.q_maps, [0.004] * 4 + [0.0055] * 3 + [0.007] * 4)
    np.testing.assert_array_equal(every.phi, [0, 90, 180, 270, 0, 90, 270, 0, 90, 180, 270])
    two = select(ragged_file, q=[0.0071, 0.0039])
    assert two.rings == (0.004, 0.007) and two.phi.size == 8
    ranged = select(ragged_file, q=(0.005, 0.0075), phi_ranges=[(80, 190)])
    np.testing.assert_array_equal(ranged.phi, [90, 90, 180])
    assert ranged.rings == (0.0055, 0.007)
    assert select(ragged_file, q=0.0055).q == 0.0055 and select(ragged_file, q=0.0055).phi.size == 3
    with pytest.raises(InputError, match=r"no q ring in `q` = \(0.01, 0.02\); the file's rings are"):
        select(ragged_file, q=(0.01, 0.02))
    with pytest.raises(InputError, match=r"no angle is left after `phi_ranges`=\[\(170.0, 190.0\)\] at q=0.0055"):
        select(ragged_file, q=[0.004, 0.0055], phi_ranges=[(170, 190)])
    # with "all", a ring without angles in the ranges is left out; the others stay
    assert select(ragged_file, q="all", phi_ranges=[(170, 190)]).rings == (0.004, 0.007)
    with pytest.raises(InputError, match=r"`q`: hpcfit.xpcs.load takes one q ring \(a number\); got 'all'"):
        load(ragged_file, q="all", dt=0.1)


def test_the_simulator_writes_rings_with_their_own_noise(tmp_path):
    path = tmp_path / "rings.h5"
    summary = simulate(path, n_phi=2, n_t=30, q=[0.004, 0.007], dt=0.5, L=2e6, params=TRUTH, contrast=0.3,
                       offset=1.0, noise=[0.001, 0.004], seed=5)
    assert summary.n_q == 2 and summary.n_points == 4 * 435
    with h5py.File(path) as f:
        truth = json.loads(f.attrs["hpcfit_simulation"])
    assert truth["q"] == [0.004, 0.007] and truth["noise"] == [0.001, 0.004]
    t1, t2 = pair_frames(30, "upper")
    for ring, (q, sigma) in enumerate(zip((0.004, 0.007), (0.001, 0.004))):
        data = load(path, q=q, dt=0.5)
        clean = np.asarray(two_time_c2(TRUTH, phi=data.phi, n_t=30, dt=0.5, q=q, L=2e6, contrast=0.3, offset=1.0))
        noise = (data.c2 - clean)[:, t1, t2]
        assert 0.85 * sigma < noise.std() < 1.15 * sigma        # float32 storage adds ~1e-7
    one = simulate(tmp_path / "one.h5", n_phi=2, n_t=30, q=0.004, dt=0.5, L=2e6, params=TRUTH, contrast=0.3,
                   offset=1.0, noise=0.001, seed=5)
    assert one.n_q == 1
    # ring 0 of the two-ring file is the one-ring file's map, bit for bit
    np.testing.assert_array_equal(load(path, q=0.004, dt=0.5).c2, load(one.path, q=0.004, dt=0.5).c2)
    with pytest.raises(InputError, match="a stream file holds one q ring"):
        simulate(tmp_path / "s.h5", layout="stream", n_phi=2, n_t=30, q=[0.004, 0.007], dt=0.5, L=2e6, params=TRUTH,
                 contrast=0.3, offset=1.0, noise=0.0, seed=5)
    with pytest.raises(InputError, match=r"`noise` must be a number or one number per q ring \(2\)"):
        simulate(tmp_path / "n.h5", n_phi=2, n_t=30, q=[0.004, 0.007], dt=0.5, L=2e6, params=TRUTH, contrast=0.3,
                 offset=1.0, noise=[0.1, 0.1, 0.1], seed=5)


@pytest.fixture(scope="module")
def three_rings(tmp_path_factory):
    path = tmp_path_factory.mktemp("joint") / "three.h5"
    simulate(path, n_phi=3, n_t=50, q=RINGS, dt=0.5, L=2e6, params=TRUTH, contrast=[0.2, 0.25, 0.3], offset=1.0,
             noise=0.002, seed=11, phi=[-30.0, 20.0, 75.0])
    return path


def test_a_joint_fit_of_three_rings_finds_the_truth_and_scipys_minimum(three_rings):
    kw = dict(mode="laminar_flow", L=2e6, verbose=0)
    joint = fit(beamline(three_rings, q="all", dt=0.5), **kw)
    assert joint.success and joint.n_params == 7 + 2 * 9
    assert joint.info["xpcs"]["rings"] == RINGS and len(joint.info["xpcs"]["q"]) == 9
    assert joint.names[7] == "contrast_q0.004_phi-30" and joint.names[-1] == "offset_q0.007_phi75"
    pulls = (joint.popt[:7] - TRUTH) / joint.perr[:7]
    assert np.all(np.abs(pulls) < 4), pulls
    assert 0.9 < joint.reduced_chi2 < 1.1              # σ estimated from the data (the default)
    # unweighted, against scipy on the same points, the model evaluated map by map through two_time_c2 with one q each
    t1, t2 = pair_frames(50, "upper")
    y = np.concatenate([load(three_rings, q=q, dt=0.5).c2[:, t1, t2].ravel() for q in RINGS])

    def residuals(p):
        maps = [np.asarray(two_time_c2(p[:7], phi=[-30.0, 20.0, 75.0], n_t=50, dt=0.5, q=q, L=2e6,
                                       contrast=p[7 + 3 * r:10 + 3 * r], offset=p[16 + 3 * r:19 + 3 * r]))
                for r, q in enumerate(RINGS)]
        return np.concatenate([m[:, t1, t2].ravel() for m in maps]) - y

    flat = fit(beamline(three_rings, q="all", dt=0.5), noise=None, **kw)
    ref = least_squares(residuals, flat.popt, x_scale="jac", ftol=1e-15, xtol=1e-15, gtol=1e-15, max_nfev=200)
    assert flat.cost <= ref.cost * (1 + 1e-6)
    assert np.all(np.abs(flat.popt[:7] - joint.popt[:7]) < 2 * joint.perr[:7])
    # each ring alone knows less: the joint fit's D0 error is smaller than every ring's own
    for q in RINGS:
        alone = fit(beamline(three_rings, q=q, dt=0.5), **kw)
        assert joint.perr[0] < alone.perr[0]


RINGS_CONFIG = """
[data]
kind = "xpcs-simulated"
n_phi = 3
n_t = 100
mode = "laminar_flow"
dt = 0.5
q = [0.004, 0.007]
L = 2e6
params = [1500.0, -0.25, 20.0, 3e-4, 0.35, 1e-5, 5.0]
contrast = 0.25
offset = 1.0
noise = [0.002, 0.004]
seed = 3
phi = [-40.0, 10.0, 70.0]
[model]
name = "xpcs"
mode = "laminar_flow"
L = 2e6
[checkpoint]
path = "out/checkpoint.h5"
[output]
directory = "out"
per_point = true
"""


def all_rings_config(file: str, out: str) -> str:
    """kind "xpcs" with every ring of ``file`` (a TOML string or list), into ``out``."""
    return f"""
[data]
kind = "xpcs"
file = {file}
q = "all"
dt = 0.5
[model]
name = "xpcs"
L = 2e6
[output]
directory = "{out}"
"""


def test_a_config_of_two_rings_runs_twice_and_on_two_ranks_with_the_same_bits(tmp_path):
    """The user path: simulate two rings, fit them jointly, rerun (resumed from the checkpoint), and
    under mpiexec -n 2; then kind "xpcs" on the simulated file with q = "all"."""
    import subprocess
    import sys

    from hpcfit import load_result

    (tmp_path / "run.toml").write_text(RINGS_CONFIG)

    def run(*extra, n=None):
        cmd = [sys.executable, "-m", "hpcfit", "fit", "run.toml", "--quiet", *extra]
        if n:
            cmd = [os.path.join(os.path.dirname(sys.executable), "mpiexec"), "-n", str(n), sys.executable, "-m",
                   "mpi4py", "-m", "hpcfit", "fit", "run.toml", "--quiet", *extra]
        out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert out.returncode in (0, 2), out.stdout + out.stderr
        return out, load_result(tmp_path / "out" / "result.json")

    first, res = run()
    assert res.names[7] == "contrast_q0.004_phi-40" and len(res.names) == 7 + 12
    assert np.all(np.abs((res.popt[:7] - TRUTH) / res.perr[:7]) < 4) and 0.85 < res.reduced_chi2 < 1.15
    if "plots" in first.stdout:
        assert (tmp_path / "out" / "xpcs_ring01.png").exists() and (tmp_path / "out" / "xpcs_ring02.png").exists()
    import h5py

    with h5py.File(tmp_path / "out" / "per_point.h5") as f:        # normalized by the σ the fit used
        normalized = f["normalized_residual"][()]
    assert normalized.size == res.n_points and abs(0.5 * normalized @ normalized / res.cost - 1) < 1e-9
    _, res2 = run()                            # resumed from the finished fit's checkpoint
    assert res2.info["checkpoint"]["resumed_from"] is not None
    assert res2.popt.tobytes() == res.popt.tobytes()
    _, res3 = run("--set", "checkpoint.path=\"out/other.h5\"", n=2)
    assert res3.popt.tobytes() == res.popt.tobytes()
    sim = next((tmp_path / "out").glob("simulated-xpcs-*.h5"))
    (tmp_path / "run.toml").write_text(all_rings_config(f'"{sim}"', "out2"))
    _, res4 = run()
    assert res4.popt.tobytes() == res.popt.tobytes()
    bad = subprocess.run([sys.executable, "-m", "hpcfit", "fit", "run.toml", "--set", "data.convert=true"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "takes one q ring" in bad.stderr + bad.stdout


def test_a_series_of_files_is_fitted_jointly(tmp_path, three_rings):
    """Two more files of the same sample (other seeds): shared physical parameters, per-map nuisance
    parameters named by file, q and φ; each file alone knows less."""
    others = []
    for seed in (21, 22):
        path = tmp_path / f"repeat{seed}.h5"
        simulate(path, n_phi=3, n_t=50, q=RINGS[:2], dt=0.5, L=2e6, params=TRUTH, contrast=0.3, offset=1.0,
                 noise=0.002, seed=seed, phi=[-30.0, 20.0, 75.0])
        others.append(path)
    kw = dict(mode="laminar_flow", L=2e6, verbose=0)
    series = fit(beamline([three_rings, *others], q="all", dt=0.5), **kw)
    assert series.n_params == 7 + 2 * (9 + 6 + 6)
    assert series.names[7] == "contrast_file1_q0.004_phi-30" and series.names[-1] == "offset_file3_q0.0055_phi75"
    assert series.info["xpcs"]["files"] == [str(p) for p in (three_rings, *others)]
    assert series.info["xpcs"]["file_of_map"] == [0] * 9 + [1] * 6 + [2] * 6
    assert np.all(np.abs((series.popt[:7] - TRUTH) / series.perr[:7]) < 4) and 0.9 < series.reduced_chi2 < 1.1
    alone = fit(beamline(others[0], q="all", dt=0.5), **kw)
    assert series.perr[0] < alone.perr[0]
    # the same maps in one file's selection and in a series of that one file: the same bits
    single = fit(beamline([others[0]], q="all", dt=0.5), **kw)
    assert single.popt.tobytes() == alone.popt.tobytes()
    short = tmp_path / "short.h5"
    simulate(short, n_phi=3, n_t=40, q=RINGS[:1], dt=0.5, L=2e6, params=TRUTH, contrast=0.3, offset=1.0, noise=0.002,
             seed=1)
    with pytest.raises(InputError, match=r"the same number of frames: .*three.h5 has 50 .*short.h5 has 40"):
        fit(beamline([three_rings, short], q="all", dt=0.5), **kw)
    assert fit(beamline([three_rings, short], q="all", dt=0.5, frames=(1, 40)), **kw).n_params == 7 + 2 * 12


def test_a_series_config_fits_as_the_api_does(tmp_path, three_rings):
    import subprocess
    import sys

    from hpcfit import load_result

    other = tmp_path / "repeat.h5"
    simulate(other, n_phi=3, n_t=50, q=RINGS[:2], dt=0.5, L=2e6, params=TRUTH, contrast=0.3, offset=1.0,
             noise=0.002, seed=31, phi=[-30.0, 20.0, 75.0])
    (tmp_path / "run.toml").write_text(all_rings_config(f'["{three_rings}", "repeat.h5"]', "out"))
    dry = subprocess.run([sys.executable, "-m", "hpcfit", "fit", "run.toml", "--dry-run"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0 and f"points: {15 * 1225}\nparameters: {7 + 2 * 15}" in dry.stdout, dry.stdout
    run = subprocess.run([sys.executable, "-m", "hpcfit", "fit", "run.toml", "--quiet"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode in (0, 2), run.stdout + run.stderr
    res = load_result(tmp_path / "out" / "result.json")
    api = fit(beamline([three_rings, other], q="all", dt=0.5), mode="laminar_flow", L=2e6, verbose=0)
    assert res.popt.tobytes() == api.popt.tobytes() and res.names == api.names
    bad = subprocess.run([sys.executable, "-m", "hpcfit", "fit", "run.toml", "--set", "data.convert=true",
                          "--set", "data.q=0.004"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "takes one file; got a series of 2" in bad.stderr + bad.stdout
