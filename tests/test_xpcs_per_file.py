"""A series of files with some physical parameters fitted once per file (issue 20, item 5: e.g. D0 of
each temperature, the shear shared): the model against two_time_c2 with each file's parameters and
its Jacobian against autodiff, a joint fit against the simulations' truth and scipy's least_squares
on the same points, and the config path."""
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import least_squares

from hpcfit.errors import InputError
from hpcfit.models.xpcs import TwoTimeModel, two_time_c2
from hpcfit.pairs import pair_frames
from hpcfit.xpcs import beamline, fit, load, simulate

TRUTH = [1500.0, -0.25, 20.0, 3e-4, 0.35, 1e-5, 5.0]
D0_FILES = [1200.0, 2400.0]
PHI = [-30.0, 20.0, 75.0]
N_T = 50


def physical(d0, phi0=5.0):
    return [d0, *TRUTH[1:6], phi0]


@pytest.mark.parametrize("mode", ["laminar_flow", "static"])
def test_the_model_with_parameters_per_file_is_each_files_own_model(mode):
    n_t, phi = 12, (10.0, 100.0)
    t1, t2 = pair_frames(n_t, "upper")
    per_file = ("D0", "phi0") if mode == "laminar_flow" else ("D0",)
    model = TwoTimeModel(phi * 2, n_t, 0.5, (0.004, 0.004, 0.007, 0.007), 2e6, mode=mode, per_file=per_file,
                         file_of_map=(0, 0, 1, 1))
    if mode == "laminar_flow":
        assert model.fitted_physical_names == ["D0_file1", "D0_file2", "alpha", "D_offset", "gamma_dot_t0", "beta",
                                               "gamma_dot_t_offset", "phi0_file1", "phi0_file2"]
        files = [physical(1200.0, 5.0), physical(2400.0, -20.0)]
        shared = [1200.0, 2400.0, *TRUTH[1:6], 5.0, -20.0]
    else:
        assert model.fitted_physical_names == ["D0_file1", "D0_file2", "alpha", "D_offset"]
        files = [[1200.0, *TRUTH[1:3]], [2400.0, *TRUTH[1:3]]]
        shared = [1200.0, 2400.0, *TRUTH[1:3]]
    contrast, offset = [0.2, 0.25, 0.3, 0.35], [1.0, 1.01, 0.99, 1.02]
    x = np.stack([np.repeat(np.arange(4), t1.size), np.tile(t1, 4), np.tile(t2, 4)]).astype(float)
    got = np.asarray(model(x, *shared, *contrast, *offset))
    want = [np.asarray(two_time_c2(files[f], phi=phi, n_t=n_t, dt=0.5, q=q, L=2e6, mode=mode,
                                   contrast=contrast[2 * f:2 * f + 2], offset=offset[2 * f:2 * f + 2]))[:, t1, t2].ravel()
            for f, q in enumerate((0.004, 0.007))]
    np.testing.assert_allclose(got, np.concatenate(want), rtol=1e-13)
    params = jnp.asarray(shared + contrast + offset)
    value, d_shared, d_own = model.grouped_jacobian(x, *params)
    auto = jax.jacfwd(lambda p: model(x, *p))(params)
    n = len(shared)
    np.testing.assert_allclose(value, got, rtol=1e-13)
    np.testing.assert_allclose(d_shared, auto[:, :n], rtol=1e-7, atol=1e-12 * float(jnp.max(jnp.abs(auto[:, :n]))))
    own = auto[:, n:]                       # each point's own contrast and offset columns
    np.testing.assert_allclose(d_own[:, 0], own[np.arange(x.shape[1]), x[0].astype(int)], rtol=1e-13)
    assert model.parameter_groups.n_shared == n
    np.testing.assert_array_equal(model.expand_physical(files[0]),
                                  [v if "_file" not in name else files[0][0] if name.startswith("D0") else files[0][-1]
                                   for name, v in zip(model.fitted_physical_names, shared)])


def test_parameters_per_file_are_checked():
    with pytest.raises(InputError, match=r"`per_file` must name physical parameters of mode 'static' "
                                         r"\(D0, alpha, D_offset\), each once; got \['phi0'\]"):
        TwoTimeModel((0.0, 1.0), 10, 0.5, 0.004, 2e6, mode="static", per_file=("phi0",), file_of_map=(0, 1))
    with pytest.raises(InputError, match=r"`per_file` \(D0\) needs a series of files: `file_of_map`"):
        TwoTimeModel((0.0, 1.0), 10, 0.5, 0.004, 2e6, per_file=("D0",))
    with pytest.raises(InputError, match=r"every file used, at least two"):
        TwoTimeModel((0.0, 1.0), 10, 0.5, 0.004, 2e6, per_file=("D0",), file_of_map=(0, 0))
    # without per_file the model is the one of every earlier fit (file_of_map is not kept)
    assert TwoTimeModel((0.0, 1.0), 10, 0.5, 0.004, 2e6, file_of_map=(0, 1)) == TwoTimeModel((0.0, 1.0), 10, 0.5,
                                                                                               0.004, 2e6)


@pytest.fixture(scope="module")
def two_temperatures(tmp_path_factory):
    """Two files of one sample at two temperatures: D0 differs, everything else is shared."""
    folder = tmp_path_factory.mktemp("per_file")
    paths = []
    for k, d0 in enumerate(D0_FILES):
        path = folder / f"temperature{k + 1}.h5"
        simulate(path, n_phi=3, n_t=N_T, q=0.0055, dt=0.5, L=2e6, params=physical(d0), contrast=[0.2, 0.25, 0.3],
                 offset=1.0, noise=0.002, seed=40 + k, phi=PHI)
        paths.append(path)
    return paths


def test_a_series_with_d0_per_file_finds_each_files_d0_and_scipys_minimum(two_temperatures):
    kw = dict(mode="laminar_flow", L=2e6, verbose=0)
    data = beamline(two_temperatures, q="all", dt=0.5)
    res = fit(data, per_file=("D0",), **kw)
    assert res.success and res.trustworthy and res.n_params == 8 + 2 * 6
    assert res.names[:3] == ["D0_file1", "D0_file2", "alpha"] and res.names[8] == "contrast_file1_q0.0055_phi-30"
    assert res.info["xpcs"]["per_file"] == ["D0"]
    truth = np.array(D0_FILES + TRUTH[1:])
    pulls = (res.popt[:8] - truth) / res.perr[:8]
    assert np.all(np.abs(pulls) < 4), pulls
    assert 0.9 < res.reduced_chi2 < 1.1
    # one D0 for both files cannot describe them: with one parameter less, χ² grows by far more than the
    # ~1 a superfluous parameter would explain
    shared = fit(data, **kw)
    assert shared.chi2 - res.chi2 > 100
    # unweighted, against scipy on the same points: each file's maps through two_time_c2 with its own D0
    t1, t2 = pair_frames(N_T, "upper")
    y = np.concatenate([load(p, q=0.0055, dt=0.5).c2[:, t1, t2].ravel() for p in two_temperatures])

    def residuals(p):
        maps = [np.asarray(two_time_c2([p[f], *p[2:8]], phi=PHI, n_t=N_T, dt=0.5, q=0.0055, L=2e6,
                                       contrast=p[8 + 3 * f:11 + 3 * f], offset=p[14 + 3 * f:17 + 3 * f]))
                for f in range(2)]
        return np.concatenate([m[:, t1, t2].ravel() for m in maps]) - y

    flat = fit(data, per_file=("D0",), noise=None, **kw)
    ref = least_squares(residuals, flat.popt, x_scale="jac", ftol=1e-15, xtol=1e-15, gtol=1e-15, max_nfev=200)
    assert flat.cost <= ref.cost * (1 + 1e-6)
    np.testing.assert_allclose(flat.popt[:8], ref.x[:8], rtol=1e-5)
    # p0 and bounds still give each physical parameter once; every file starts alike
    held = fit(data, per_file=("D0",), p0=physical(1800.0), bounds=([1000.0, -2, 0, 0, -2, 0, -180],
                                                                    [3000.0, 2, 1e3, 1, 2, 1, 180]), **kw)
    np.testing.assert_allclose(held.popt[:2], res.popt[:2], rtol=1e-4)
    with pytest.raises(InputError, match=r"`per_file` \(D0\) fits physical parameters once per file of a "
                                         r"series: `data` must be hpcfit.xpcs.beamline\(\[path1, path2, ...\]\)"):
        fit(beamline(two_temperatures[0], q="all", dt=0.5), per_file=("D0",), **kw)


CONFIG = """
[data]
kind = "xpcs"
file = {files}
q = "all"
dt = 0.5
[model]
name = "xpcs"
L = 2e6
per_file = ["D0"]
[output]
directory = "out"
plots = false
"""


def test_a_config_with_d0_per_file_fits_as_the_api_does(tmp_path, two_temperatures):
    from hpcfit import load_result

    files = "[" + ", ".join(f'"{p}"' for p in two_temperatures) + "]"
    (tmp_path / "run.toml").write_text(CONFIG.format(files=files))

    def hpcfit(*args):
        return subprocess.run([sys.executable, "-m", "hpcfit", "fit", "run.toml", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=600)

    dry = hpcfit("--dry-run")
    assert dry.returncode == 0 and f"points: {6 * 1225}\nparameters: {8 + 2 * 6}" in dry.stdout, dry.stdout
    run = hpcfit("--quiet")
    assert run.returncode == 0, run.stdout + run.stderr
    res = load_result(tmp_path / "out" / "result.json")
    api = fit(beamline(two_temperatures, q="all", dt=0.5), per_file=("D0",), mode="laminar_flow", L=2e6, verbose=0)
    assert res.popt.tobytes() == api.popt.tobytes() and res.names == api.names
    one = hpcfit("--dry-run", "--set", f'data.file="{two_temperatures[0]}"')
    assert one.returncode == 1 and "[model] `per_file` (D0) fits parameters once per file of a series" in one.stderr
    bad = hpcfit("--dry-run", "--set", 'model.per_file=["D9"]')
    assert bad.returncode == 1 and "[model] `per_file` must name physical parameters of the mode" in bad.stderr
