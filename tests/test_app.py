"""``python -m hpcfit fit CONFIG.toml`` end to end, in subprocesses (serial, mpiexec -n 2 and -n 3):
the result files read back equal the Python API's result bit for bit; config errors are one line,
exit 1, the same whichever rank has the bad value, and never hang; exit codes 0/2/75; --dry-run;
the init templates run as written."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import hpcfit
from hpcfit.app.config import read_config, validate
from hpcfit.app.templates import TEMPLATES
from test_cli_and_processes import MPIEXEC

X = np.linspace(0.0, 5.0, 30_000)
SIGMA = 0.01 + 0.002 * X
Y = 2.0 * np.exp(-1.3 * X) + 0.5 + SIGMA * np.sin(37.0 * X)
CURVE = """
[data]
file = "data.{suffix}"
{keys}
[model]
name = "exponential_decay"

[parameters]
a = 1.0
b = {{value = 0.2, min = 0.0}}
c = 0.0

[fit]
method = "gn"
chunk_size = 4096

[output]
directory = "out"
"""
API = dict(p0=[1.0, 0.2, 0.0], bounds=([-np.inf, 0.0, -np.inf], np.inf), method="gn", chunk_size=4096, verbose=0)


def cli(args, cwd, n=None, timeout=300, ranks_args=None):
    """Run ``python -m hpcfit ARGS`` (under ``mpiexec -n N`` when N is given; ``ranks_args``: one
    argument list per rank, MPMD style, for a bad value on one rank)."""
    base = [sys.executable, "-m", "mpi4py", "-m", "hpcfit"]
    if n is None:
        cmd = [sys.executable, "-m", "hpcfit", *args]
    elif ranks_args is None:
        cmd = [MPIEXEC, "-n", str(n), *base, *args]
    else:
        cmd = [MPIEXEC]
        for i, rank_args in enumerate(ranks_args):
            cmd += ([":"] if i else []) + ["-n", "1", *base, *rank_args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def write_data(folder: Path, suffix: str) -> str:
    """The same points in each format; the [data] keys that read them."""
    if suffix == "h5":
        with h5py.File(folder / "data.h5", "w") as f:
            f["x"], f["y"], f["sigma"] = X, Y, SIGMA
        return 'y = "y"\nx = "x"\nsigma = "sigma"\n'
    if suffix == "npz":
        np.savez(folder / "data.npz", x=X, y=Y, sigma=SIGMA)
        return ""
    np.savetxt(folder / "data.csv", np.column_stack([X, Y, SIGMA]), delimiter=",", header="t,signal,err",
               comments="", fmt="%.17g")
    return 'x = "t"\ny = "signal"\nsigma = "err"\n'


@pytest.mark.parametrize("suffix", ["h5", "npz", "csv"])
def test_a_curve_fit_from_a_config_is_the_api_fit_bit_for_bit(tmp_path, suffix):
    keys = write_data(tmp_path, suffix)
    (tmp_path / "run.toml").write_text(CURVE.format(suffix=suffix, keys=keys))
    run = cli(["fit", "run.toml"], tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"results in {tmp_path / 'out'}" in run.stdout
    api = hpcfit.curve_fit(hpcfit.models.exponential_decay, X, Y, sigma=SIGMA, **API)
    for name in ("result.json", "result.h5"):
        saved = hpcfit.load_result(tmp_path / "out" / name)
        assert saved.popt.tobytes() == api.popt.tobytes() and saved.pcov.tobytes() == api.pcov.tobytes()
        assert saved.cost == api.cost and saved.status == api.status and saved.names == ["a", "b", "c"]
        assert [r.cost for r in saved.history] == [r.cost for r in api.history]
    doc = json.loads((tmp_path / "out" / "result.json").read_text())
    assert doc["config"]["fit"] == {"method": "gn", "chunk_size": 4096}
    assert doc["parameters"]["b"]["value"] == float(api.popt[1]) and doc["data"]["n_points"] == X.size


@pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not installed")
@pytest.mark.parametrize("n", [2, 3])
def test_the_same_config_under_mpiexec_gives_the_serial_bits(tmp_path, n):
    keys = write_data(tmp_path, "h5")
    (tmp_path / "run.toml").write_text(CURVE.format(suffix="h5", keys=keys))
    run = cli(["fit", "run.toml"], tmp_path, n=n)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("results in") == 1                   # rank 0 speaks, once
    api = hpcfit.curve_fit(hpcfit.models.exponential_decay, X, Y, sigma=SIGMA, **API)
    saved = hpcfit.load_result(tmp_path / "out" / "result.json")
    assert saved.popt.tobytes() == api.popt.tobytes() and saved.info["n_ranks"] == n


BAD = {   # (what --set makes wrong, the one line that must say so)
    "unknown_section": ("fitt.ftol=1e-9", r"unknown key 'fitt'; did you mean 'fit'\?"),
    "unknown_key": ("fit.ftoll=1e-9", r"\[fit\]: unknown key 'ftoll'; did you mean 'ftol'\?"),
    "wrong_type": ("fit.ftol=\"small\"", r"\[fit\]: `ftol` must be a finite number >= 0; got 'small'"),
    "missing_file": ("data.file=\"nothing.h5\"", r"nothing\.h5.*does not exist"),
    "missing_dataset": ("data.y=\"counts\"", r"dataset 'counts' does not exist"),
    "bad_model": ("model.name=\"exponential_decy\"", r"unknown model name 'exponential_decy'; did you mean "
                                                     r"'exponential_decay'\?"),
    "bad_function": ("model.function=\"nomodule:f\"", r"give exactly one of `name`"),
    "bad_parameter": ("parameters.k=1.0", r"the model has no parameter 'k'"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_config_error_is_one_line_and_exit_1(tmp_path, name):
    keys = write_data(tmp_path, "h5")
    (tmp_path / "run.toml").write_text(CURVE.format(suffix="h5", keys=keys))
    setting, message = BAD[name]
    run = cli(["fit", "run.toml", "--set", setting], tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpcfit: error: "), run.stderr
    import re
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not installed")
@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("name", sorted(BAD))
def test_a_config_error_on_one_rank_only_is_one_line_and_exit_1_without_a_hang(tmp_path, n, name):
    keys = write_data(tmp_path, "h5")
    (tmp_path / "run.toml").write_text(CURVE.format(suffix="h5", keys=keys))
    setting, message = BAD[name]
    good = ["fit", "run.toml"]
    run = cli([], tmp_path, n=n, ranks_args=[good] * (n - 1) + [good + ["--set", setting]], timeout=200)
    assert run.returncode == 1, run.stdout + run.stderr
    lines = [line for line in run.stderr.strip().splitlines() if line.startswith("hpcfit")]
    assert len(lines) == 1, run.stderr                   # hpcfit's line, once; MPICH adds one for the abort
    assert (run.stderr + run.stdout).count("MPI_Abort") <= 1 and "Traceback" not in run.stderr
    assert f"[found on rank {n - 1}]" in lines[0] or f"differs between ranks (rank 0 and rank {n - 1}" in lines[0]


def test_exit_code_2_when_not_converged_and_75_when_stopped(tmp_path):
    keys = write_data(tmp_path, "h5")
    (tmp_path / "run.toml").write_text(CURVE.format(suffix="h5", keys=keys))
    run = cli(["fit", "run.toml", "--set", "fit.max_iterations=1"], tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "finished but not converged" in run.stderr and "max_iterations" in run.stderr
    assert hpcfit.load_result(tmp_path / "out" / "result.json").status == hpcfit.Status.MAX_ITERATIONS
    # a long warm-up (checkpoints every 300 steps, no early stop) stopped by SIGTERM: 75, no noise
    long = ["fit", "run.toml", "--set", "fit.method=\"hybrid\"", "--set", "fit.warm_start_detection=false",
            "--set", "fit.warmup_max_steps=3000", "--set", "fit.warmup_plateau_window=100000",
            "--set", "fit.warmup_gtol=0.0", "--set", "checkpoint.path=\"ck.h5\"", "--quiet"]
    job = subprocess.Popen([sys.executable, "-m", "hpcfit", *long], cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 120
    while not (tmp_path / "ck.h5").exists() and time.monotonic() < end and job.poll() is None:
        time.sleep(0.05)
    job.send_signal(signal.SIGTERM)
    out, err = job.communicate(timeout=120)
    assert job.returncode == 75, out + err
    assert "Traceback" not in err and "MPI_Abort" not in err + out and "stopped by SIGTERM" in out
    with h5py.File(tmp_path / "ck.h5") as f:
        assert f.attrs["phase"] == "warmup"


def test_dry_run_prints_the_resolved_config_and_the_plan(tmp_path):
    keys = write_data(tmp_path, "h5")
    (tmp_path / "run.toml").write_text(CURVE.format(suffix="h5", keys=keys))
    run = cli(["fit", "run.toml", "--dry-run", "--set", "fit.ftol=1e-10"], tmp_path)
    assert run.returncode == 0, run.stderr
    assert "ftol = 1e-10" in run.stdout and f"points: {X.size}" in run.stdout
    assert "chunk size: 4096 points, 8 chunks on the global grid" in run.stdout
    assert not (tmp_path / "out").exists()


def test_the_curve_template_runs_as_written(tmp_path):
    (tmp_path / "run.toml").write_text(TEMPLATES["curve"])
    run = cli(["fit", "run.toml", "--quiet", "--set", "data.n_points=50000"], tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    from hpcfit.demo import TRUTH
    saved = hpcfit.load_result(tmp_path / "hpcfit-results-curve" / "result.json")
    assert np.all(np.abs(saved.popt - TRUTH) < 5 * saved.perr)


def test_the_xpcs_template_is_valid_and_finds_the_truth_on_a_smaller_set(tmp_path):
    # 4 angles, not all in two directions 90° apart (that would leave phi0 ambiguous: test_xpcs_fit)
    (tmp_path / "run.toml").write_text(TEMPLATES["xpcs"])
    cfg = read_config(tmp_path / "run.toml")
    assert cfg.kind == "xpcs-simulated" and len(cfg.parameters) == 7
    run = cli(["fit", "run.toml", "--quiet", "--set", "data.n_t=100", "--set", "data.n_phi=4",
               "--set", "data.phi=[-170.0, -80.0, 10.0, 55.0]"], tmp_path)
    assert run.returncode in (0, 2), run.stdout + run.stderr
    saved = hpcfit.load_result(tmp_path / "hpcfit-results" / "result.json")
    truth = dict(zip(saved.names, cfg.data["params"]))
    for name in ("D0", "gamma_dot_t0", "beta", "phi0"):
        i = saved.names.index(name)
        assert abs(saved.popt[i] - truth[name]) < 5 * saved.perr[i], (name, saved.popt[i], saved.perr[i])
    streams = list((tmp_path / "hpcfit-results").glob("simulated-xpcs-*.h5"))
    assert len(streams) == 1
    # the Python API on the same data with the same start, bounds and options: the same bits
    from hpcfit.xpcs import fit as xpcs_fit
    p0 = [p.value for p in cfg.parameters]
    bounds = ([p.lower for p in cfg.parameters], [p.upper for p in cfg.parameters])
    api = xpcs_fit(str(streams[0]), mode="laminar_flow", L=2e6, scaling="individual", p0=p0, bounds=bounds,
                   method="hybrid", ftol=1e-8, verbose=0)
    assert api.popt.tobytes() == saved.popt.tobytes() and api.pcov.tobytes() == saved.pcov.tobytes()
    if "plots" in run.stdout:                  # one row of panels per angle: 4 angles
        assert png_size(tmp_path / "hpcfit-results" / "xpcs_angles.png") == (1040, 960)


def test_help_version_and_no_command(tmp_path):
    t0 = time.perf_counter()
    run = cli(["--help"], tmp_path)
    assert run.returncode == 0 and "fit" in run.stdout and time.perf_counter() - t0 < 5
    assert cli(["--version"], tmp_path).stdout.strip() == f"hpcfit {hpcfit.__version__}"
    assert "usage" in cli([], tmp_path).stdout


def test_validation_names_section_key_and_type():
    with pytest.raises(hpcfit.InputError, match=r"\[model\]: `L` \(the sample-to-shear length scale, Å\) is required "
                                                r"for mode = \"laminar_flow\" \(the default\)"):
        validate({"data": {"kind": "xpcs", "file": "x.h5", "q": 0.005}})        # checked before any data is read
    with pytest.raises(hpcfit.InputError, match=r"\[parameters\] b: value 5.0 is outside \[min, max\]"):
        validate({"data": {"file": "d.h5"}, "model": {"name": "exponential_decay"},
                  "parameters": {"b": {"value": 5.0, "max": 1.0}}})
    with pytest.raises(hpcfit.InputError, match=r"\[checkpoint\]: `every` must be an integer; got 'often'"):
        validate({"data": {"file": "d.h5"}, "model": {"name": "exponential_decay"}, "checkpoint": {"every": "often"}})
    with pytest.raises(hpcfit.InputError, match=r"\[data\] \(kind = 'xpcs'\): missing key\(s\) 'q'"):
        validate({"data": {"kind": "xpcs", "file": "x.h5"}})


def test_the_shipped_example_configs_are_the_templates():
    """README command 1 runs examples/xpcs.toml: it must be what `init xpcs` prints (tested above)."""
    root = Path(__file__).resolve().parents[1]
    assert (root / "examples" / "xpcs.toml").read_text() == TEMPLATES["xpcs"]
    assert (root / "examples" / "curve.toml").read_text() == TEMPLATES["curve"]


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_plots_have_their_panels_and_never_every_point(tmp_path):
    pytest.importorskip("matplotlib")
    keys = write_data(tmp_path, "h5")
    (tmp_path / "run.toml").write_text(CURVE.format(suffix="h5", keys=keys))
    run = cli(["fit", "run.toml", "--quiet"], tmp_path)
    assert run.returncode == 0 and "result.json, result.h5, plots)" in run.stdout, run.stdout + run.stderr
    out = tmp_path / "out"
    assert png_size(out / "convergence.png") == (700, 450)
    assert png_size(out / "fit.png") == (700, 600)                      # data/fit above residuals
    assert png_size(out / "correlation.png")[0] > 300
    # what fit.png draws: the bin means (400 at most), not the 30 000 points
    from hpcfit.output.plots import BINS, _binned
    saved = hpcfit.curve_fit(hpcfit.models.exponential_decay, X, Y, sigma=SIGMA, **API)
    x, y, f, r, n, binned = _binned(saved, lambda: iter([(X, Y, SIGMA)]))
    assert binned and n == X.size and x.size <= BINS and np.all(np.diff(x) > 0)
    edges = np.linspace(X.min(), X.max(), BINS + 1)
    counts = np.histogram(X, edges)[0]
    np.testing.assert_allclose(y, np.histogram(X, edges, weights=Y)[0][counts > 0] / counts[counts > 0], rtol=1e-12)
    x_all, *_ , few = _binned(saved, lambda: iter([(X[:1000], Y[:1000], SIGMA[:1000])]))
    assert not few and x_all.size == 1000


def test_without_matplotlib_the_plots_are_skipped_with_a_note(tmp_path, monkeypatch):
    from hpcfit.output import plots

    def missing():
        raise ImportError("No module named 'matplotlib'")

    monkeypatch.setattr(plots, "_pyplot", missing)
    saved = hpcfit.curve_fit(hpcfit.models.exponential_decay, X, Y, sigma=SIGMA, **API)
    written, note = plots.write_plots(saved, str(tmp_path))
    assert written == [] and "matplotlib is not installed" in note and not list(tmp_path.iterdir())


@pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not installed")
def test_per_point_outputs_are_the_same_on_any_rank_count_and_right(tmp_path):
    keys = write_data(tmp_path, "h5")
    (tmp_path / "run.toml").write_text(CURVE.format(suffix="h5", keys=keys) + "per_point = true\nplots = false\n")
    files = {}
    for n in (None, 2, 3):
        run = cli(["fit", "run.toml", "--quiet"], tmp_path, n=n)
        assert run.returncode == 0 and "per_point.h5" in run.stdout, run.stdout + run.stderr
        with h5py.File(tmp_path / "out" / "per_point.h5") as f:
            files[n] = {k: f[k][()] for k in ("fitted", "residual", "normalized_residual")}
    for n in (2, 3):
        assert all(files[n][k].tobytes() == files[None][k].tobytes() for k in files[None])
    saved = hpcfit.load_result(tmp_path / "out" / "result.json")
    a, b, c = saved.popt
    fitted = a * np.exp(-b * X) + c                                  # numpy, independently of the kernels
    np.testing.assert_allclose(files[None]["fitted"], fitted, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(files[None]["residual"], Y - fitted, rtol=0, atol=1e-14)
    np.testing.assert_allclose(files[None]["normalized_residual"], (Y - fitted) / SIGMA, rtol=1e-12, atol=1e-12)
    with h5py.File(tmp_path / "out" / "result.h5") as f:          # linked from result.h5
        assert f["per_point/fitted"][()].tobytes() == files[3]["fitted"].tobytes()
    data = json.loads((tmp_path / "out" / "result.json").read_text())["data"]
    assert data["file"]["size"] == (tmp_path / "data.h5").stat().st_size and data["n_points"] == X.size


@pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not installed")
def test_launch_works_without_an_activated_venv_and_maps_one_gpu_per_rank(tmp_path):
    root = Path(__file__).resolve().parents[1]
    bare = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHON": sys.executable}   # no venv on PATH
    run = subprocess.run(["bash", str(root / "launch" / "mpirun.sh"), "2", "-c",
                          "from mpi4py import MPI; print('size', MPI.COMM_WORLD.size)"],
                         env=bare, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.count("size 2") == 2, run.stdout + run.stderr
    for local_rank, gpus, want in [("0", "4", "0"), ("5", "4", "1"), ("3", "1", "0")]:
        out = subprocess.run(["bash", str(root / "launch" / "one_gpu_per_rank.sh"), "sh", "-c",
                              "echo $CUDA_VISIBLE_DEVICES"], env={"PATH": "/usr/bin:/bin", "MPI_LOCALRANKID": local_rank,
                                                                  "HPCFIT_GPUS": gpus},
                             capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == want


@pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not installed")
def test_progress_lines_for_long_passes_come_from_rank_0_only(tmp_path):
    """With the threshold at 0 s (HPCFIT_PROGRESS_AFTER; 10 s by default) every pass reports: share
    done, rate, time left, one line each (stderr is not a terminal), from rank 0 alone."""
    keys = write_data(tmp_path, "h5")
    (tmp_path / "run.toml").write_text(CURVE.format(suffix="h5", keys=keys) + "plots = false\n")
    env = {**os.environ, "HPCFIT_PROGRESS_AFTER": "0", "HPCFIT_PROGRESS_EVERY": "0"}
    run = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "mpi4py", "-m", "hpcfit", "fit", "run.toml"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("Jacobian pass (rank 0's chunks): ")]
    import re
    assert lines and all(re.fullmatch(r".*: \d+% \(\d+/4 chunks, [0-9.e+]+ points/s\), \d+ s so far, about \d+ s left",
                                      line) for line in lines), run.stderr
    quiet = cli(["fit", "run.toml", "--quiet"], tmp_path)                 # default threshold: nothing
    assert "pass (rank 0's chunks)" not in quiet.stderr


def test_an_xpcs_beamline_file_fits_with_the_dt_it_records(tmp_path):
    """[data] kind = "xpcs" without dt: frame_time x stride_frame x avg_frame from the file; without
    them, dt is required (one line naming what is missing)."""
    from hpcfit.xpcs import simulate
    from hpcfit.xpcs.load import AVERAGING, FRAME_TIME, STRIDE
    truth = [1500.0, -0.25, 20.0]
    simulate(tmp_path / "beamline.h5", layout="aps-u", n_phi=2, n_t=40, mode="static", dt=0.5, q=0.0054, L=2e6,
             params=truth, contrast=0.25, offset=1.0, noise=0.002, seed=3)
    config = ('[data]\nkind = "xpcs"\nfile = "beamline.h5"\nq = 0.0054\n[model]\nmode = "static"\n'
              '[fit]\nmethod = "gn"\n[output]\nplots = false\n')
    (tmp_path / "run.toml").write_text(config)
    run = cli(["fit", "run.toml", "--quiet"], tmp_path)
    assert run.returncode == 1 and "`dt` is required" in run.stderr and "stride_frame" in run.stderr, run.stderr
    with h5py.File(tmp_path / "beamline.h5", "r+") as f:
        f[FRAME_TIME] = np.array([[0.001]])
        f[STRIDE] = np.array([[50]])
        f[AVERAGING] = np.array([[10]])
    run = cli(["fit", "run.toml", "--quiet"], tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    saved = hpcfit.load_result(tmp_path / "hpcfit-results" / "result.json")
    assert saved.info["xpcs"]["dt"] == 0.001 * 50 * 10
    d0 = saved.names.index("D0")
    assert abs(saved.popt[d0] - truth[0]) < 5 * saved.perr[d0]
    # the maps were streamed as they are: no copy; `convert = true` makes one and gives the same answer
    assert saved.info["source"].startswith("two-time file")
    assert not list((tmp_path / "hpcfit-results").glob("beamline*"))
    run = cli(["fit", "run.toml", "--quiet", "--set", "data.convert=true", "--set", "output.directory=\"conv\""],
              tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    converted = hpcfit.load_result(tmp_path / "conv" / "result.json")
    assert converted.info["source"].startswith("HDF5") and converted.popt.tobytes() == saved.popt.tobytes()
    assert len(list((tmp_path / "conv").glob("beamline*"))) == 1


def test_a_table_too_big_to_share_is_converted_once_and_streamed(tmp_path):
    """Above HPCFIT_TABLE_SHARE_LIMIT points (4 Mi by default; 10 000 here) rank 0 converts the table
    to HDF5 in the output directory and every rank streams it; the answer is the shared table's."""
    keys = write_data(tmp_path, "csv")
    (tmp_path / "run.toml").write_text(CURVE.format(suffix="csv", keys=keys) + "plots = false\n")
    shared = cli(["fit", "run.toml", "--quiet"], tmp_path)
    assert shared.returncode == 0, shared.stderr
    small = hpcfit.load_result(tmp_path / "out" / "result.json")
    env = {**os.environ, "HPCFIT_TABLE_SHARE_LIMIT": "10000"}
    for _ in range(2):                                             # made, then reused
        run = subprocess.run([sys.executable, "-m", "hpcfit", "fit", "run.toml", "--quiet"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300, env=env)
        assert run.returncode == 0, run.stderr
        big = hpcfit.load_result(tmp_path / "out" / "result.json")
        assert big.info["source"].startswith("HDF5") and big.popt.tobytes() == small.popt.tobytes()
    assert len(list((tmp_path / "out").glob("table-data-*.h5"))) == 1


@pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not installed")
def test_an_xpcs_config_under_mpiexec_gives_the_serial_bits(tmp_path):
    (tmp_path / "run.toml").write_text(TEMPLATES["xpcs"])
    small = ["fit", "run.toml", "--quiet", "--set", "data.n_t=60", "--set", "data.n_phi=2",
             "--set", "data.phi=[-170.0, 10.0]", "--set", "output.plots=false"]
    results = {}
    for n in (None, 2, 3):
        run = cli(small, tmp_path, n=n)
        assert run.returncode in (0, 2), run.stdout + run.stderr
        results[n] = hpcfit.load_result(tmp_path / "hpcfit-results" / "result.json")
        (tmp_path / "hpcfit-results" / "checkpoint.h5").unlink(missing_ok=True)   # each run a new fit
        (tmp_path / "hpcfit-results" / "checkpoint.prev.h5").unlink(missing_ok=True)
    for n in (2, 3):
        assert results[n].popt.tobytes() == results[None].popt.tobytes() and results[n].info["n_ranks"] == n


def test_a_model_file_is_found_beside_the_config_from_any_folder(tmp_path):
    """[model] function = "model.py:f" is relative to the config's folder, like [data] file; the
    dry run loads the same file (and names the absolute path the run would use when it is missing)."""
    job = tmp_path / "job"
    job.mkdir()
    x = np.linspace(0.0, 5.0, 2000)
    np.savez(job / "data.npz", x=x, y=2.0 * np.exp(-0.7 * x) + 0.01 * np.sin(37 * x))
    (job / "model.py").write_text("import jax.numpy as jnp\n\ndef decay(x, a, b):\n    return a * jnp.exp(-b * x)\n")
    (job / "run.toml").write_text('[data]\nfile = "data.npz"\n[model]\nfunction = "model.py:decay"\n[parameters]\n'
                                  'a = 1.0\nb = 1.0\n[fit]\nmethod = "gn"\n[output]\ndirectory = "out"\nplots = false\n')
    dry = cli(["fit", "job/run.toml", "--dry-run"], tmp_path)          # from the parent folder
    assert dry.returncode == 0 and "parameters: 2" in dry.stdout, dry.stdout + dry.stderr
    run = cli(["fit", "job/run.toml", "--quiet"], tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    from scipy.optimize import curve_fit as scipy_fit
    y = np.load(job / "data.npz")["y"]
    ref, _ = scipy_fit(lambda t, a, b: a * np.exp(-b * t), x, y, p0=[1.0, 1.0])
    np.testing.assert_allclose(hpcfit.load_result(job / "out" / "result.json").popt, ref, rtol=1e-6)
    (job / "model.py").unlink()
    for args in (["fit", "job/run.toml", "--dry-run"], ["fit", "job/run.toml"]):
        gone = cli(args, tmp_path)
        assert gone.returncode == 1 and gone.stderr.strip() == (
            f"hpcfit: error: [model] function: the file {job / 'model.py'} does not exist"), gone.stderr


def test_the_cli_makes_the_output_and_checkpoint_folders_and_the_dry_run_checks_them(tmp_path):
    keys = write_data(tmp_path, "h5")
    (tmp_path / "run.toml").write_text(CURVE.format(suffix="h5", keys=keys).replace('"out"', '"res/deep"')
                                       + 'plots = false\n[checkpoint]\npath = "ck/sub/fit.h5"\n')
    dry = cli(["fit", "run.toml", "--dry-run"], tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert f"folder to be made by the run: {tmp_path / 'res' / 'deep'}" in dry.stdout
    assert f"folder to be made by the run: {tmp_path / 'ck' / 'sub'}" in dry.stdout
    assert not (tmp_path / "res").exists() and not (tmp_path / "ck").exists()
    run = cli(["fit", "run.toml", "--quiet"], tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert hpcfit.load_result(tmp_path / "res" / "deep" / "result.json").n_points == X.size
    assert (tmp_path / "ck" / "sub").is_dir()
    (tmp_path / "blocker").write_text("a file where a folder is wanted")
    for args in (["--dry-run"], []):
        bad = cli(["fit", "run.toml", "--set", 'output.directory="blocker/out"', *args], tmp_path)
        assert bad.returncode == 1 and bad.stderr.strip() == (
            f"hpcfit: error: [output] directory: the folder {tmp_path / 'blocker' / 'out'} cannot be made: "
            f"{tmp_path / 'blocker'} is a file, not a folder"), bad.stderr


MODEL_2D = "import jax.numpy as jnp\n\ndef g2(x, b, c, D):\n    return b + c * jnp.exp(-2.0 * D * x[1] ** 2 * x[0])\n"


def two_coordinate_data(n=244):
    tau = np.tile(np.linspace(0.01, 5.0, n // 2), 2)
    q = np.repeat([0.5, 1.0], n // 2)
    y = 1.0 + 0.3 * np.exp(-2.0 * q ** 2 * tau) + 0.001 * np.sin(91.0 * tau + q)
    return tau, q, y


def test_several_x_columns_in_a_csv_fit_like_npz_and_are_plotted(tmp_path):
    """x = ["tau", "q"] of a CSV is x of shape (2, n), as an NPZ's 2-D x: the same fit, bit for bit
    the API's; fit.png shows data and fit against the point index and residuals against the index,
    tau and q; the table is printed."""
    pytest.importorskip("matplotlib")
    tau, q, y = two_coordinate_data()
    np.savez(tmp_path / "d.npz", x=np.stack([tau, q]), y=y)
    np.savetxt(tmp_path / "d.csv", np.column_stack([tau, q, y]), delimiter=",", header="tau,q,g2", comments="",
               fmt="%.17g")
    (tmp_path / "m.py").write_text(MODEL_2D)
    body = '[model]\nfunction = "m.py:g2"\n[parameters]\nb = 1.0\nc = 0.2\nD = 1.0\n[fit]\nmethod = "gn"\n'
    (tmp_path / "npz.toml").write_text(f'[data]\nfile = "d.npz"\n{body}[output]\ndirectory = "out-npz"\n')
    (tmp_path / "csv.toml").write_text(f'[data]\nfile = "d.csv"\nx = ["tau", "q"]\n{body}'
                                       '[output]\ndirectory = "out-csv"\n')
    import importlib.util
    spec = importlib.util.spec_from_file_location("m2d", tmp_path / "m.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    api = hpcfit.curve_fit(module.g2, np.stack([tau, q]), y, p0=[1.0, 0.2, 1.0], method="gn", verbose=0)
    for name in ("npz", "csv"):
        run = cli(["fit", f"{name}.toml"], tmp_path)
        assert run.returncode == 0 and "result.json, result.h5, plots)" in run.stdout, run.stdout + run.stderr
        assert "D = " in run.stdout and run.stderr.count("hpcfit: warning") == 0, run.stdout + run.stderr
        saved = hpcfit.load_result(tmp_path / f"out-{name}" / "result.json")
        assert saved.popt.tobytes() == api.popt.tobytes() and abs(saved.popt[2] - 1.0) < 1e-2
        assert png_size(tmp_path / f"out-{name}" / "fit.png") == (700, 940)     # 4 panels
    bad = cli(["fit", "csv.toml", "--set", 'data.x=["tau", "k"]', "--dry-run"], tmp_path)
    assert bad.returncode == 1 and "no column named 'k' (for x); columns: tau, q, g2" in bad.stderr, bad.stderr


def test_two_coordinate_plots_bin_along_each_coordinate_and_the_index():
    from hpcfit.output.plots import BINS, _binned_axes
    rng = np.random.default_rng(0)
    n = 20_000
    tau, q = rng.uniform(0.01, 5.0, n), rng.choice([0.5, 1.0], n)
    x, y = np.stack([tau, q]), 1.0 + 0.3 * np.exp(-2.0 * q ** 2 * tau) + 0.001 * rng.standard_normal(n)

    class Fitted:                                        # what the plots use of a result
        def predict(self, x):
            return 1.0 + 0.3 * np.exp(-2.0 * x[1] ** 2 * x[0])

    axes, m, binned = _binned_axes(Fitted(), lambda: iter([(x[:, :7000], y[:7000], None), (x[:, 7000:], y[7000:],
                                                                                            None)]))
    assert m == n and binned and len(axes) == 3
    for values, (a, mean_y, _, _) in zip((tau, q, np.arange(n, dtype=float)), axes):
        edges = np.linspace(values.min(), values.max(), BINS + 1)
        counts = np.histogram(values, edges)[0]
        np.testing.assert_allclose(mean_y, np.histogram(values, edges, weights=y)[0][counts > 0] / counts[counts > 0],
                                   rtol=1e-12)
    np.testing.assert_array_equal(axes[1][0], [0.5, 1.0])                # q takes two values: two bins


def test_a_plot_that_fails_is_one_warning_after_the_results(tmp_path):
    """A model that only takes chunk-sized x (4096 points) fits, then fails in fit.png (the plot
    evaluates it on the 30 000 points at once): the results are written and printed, then one line
    says which plot failed and why; the other plots are there; exit 0."""
    pytest.importorskip("matplotlib")
    keys = write_data(tmp_path, "h5")
    (tmp_path / "m.py").write_text("import jax.numpy as jnp\n\ndef f(x, a, b, c):\n"
                                   "    if x.shape[-1] > 4096:\n        raise ValueError('x of chunks only')\n"
                                   "    return a * jnp.exp(-b * x) + c\n")
    (tmp_path / "run.toml").write_text(CURVE.format(suffix="h5", keys=keys).replace(
        'name = "exponential_decay"', 'function = "m.py:f"'))
    run = cli(["fit", "run.toml", "--quiet"], tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.rstrip().splitlines()[-1].startswith("hpcfit: results in") and "b = " in run.stdout
    assert run.stderr.strip() == "hpcfit: warning: plot(s) not made: fit.png (ValueError: x of chunks only)", \
        run.stderr
    api = hpcfit.curve_fit(hpcfit.models.exponential_decay, X, Y, sigma=SIGMA, **API)
    assert hpcfit.load_result(tmp_path / "out" / "result.json").popt.tobytes() == api.popt.tobytes()
    assert (tmp_path / "out" / "convergence.png").exists() and (tmp_path / "out" / "correlation.png").exists()
    assert not (tmp_path / "out" / "fit.png").exists()


def test_readme_command_1_installs_the_plot_extra():
    """The plots README command 1 advertises need matplotlib: the command installs the plot extra."""
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    assert "pip install -e '.[mpich,plot]' && .venv/bin/mpiexec -n 2" in readme
    assert "pip install -e '.[mpich]'" not in readme
    assert 'plot = ["matplotlib' in (root / "pyproject.toml").read_text()


def test_inputs_of_another_kind_are_one_line_naming_the_file_and_what_is_accepted(tmp_path):
    """kind "xpcs" given a text map, a multitau-only result (before dt is asked for) or another
    HDF5 file; kind "file" given a square text map: one line, exit 1, in the run and the dry run."""
    np.savetxt(tmp_path / "map.txt", 1.0 + np.eye(40), fmt="%.3f")
    with h5py.File(tmp_path / "multitau.hdf", "w") as f:
        f["xpcs/multitau/normalized_g2"] = np.ones((5, 3))
        f["xpcs/qmap/dynamic_v_list_dim0"] = [0.001, 0.002, 0.003]
        f["entry/instrument/detector_1/frame_time"] = 1e-5
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["y"] = np.ones(4)
    cases = {
        ("xpcs", "map.txt"): "a text file of numbers (40 per line: a table or a map saved as text), not HDF5; "
                             "accepted: APS 8-ID-I two-time result files",
        ("xpcs", "multitau.hdf"): "an APS multitau result file with g2 (xpcs/multitau/normalized_g2) but no "
                                  "two-time maps",
        ("xpcs", "other.h5"): "an HDF5 file without the XPCS result layout (top-level keys ['y']",
        ("file", "map.txt"): "a square 40 x 40 table of numbers (a map saved as text",
    }
    for (kind, name), message in cases.items():
        data = (f'[data]\nkind = "xpcs"\nfile = "{name}"\nq = 0.002\n[model]\nmode = "static"\n' if kind == "xpcs" else
                f'[data]\nfile = "{name}"\n[model]\nname = "exponential_decay"\n[parameters]\na = 1\nb = 1\nc = 0\n')
        (tmp_path / "run.toml").write_text(data)
        for args in ([], ["--dry-run"]):
            run = cli(["fit", "run.toml", *args], tmp_path)
            lines = run.stderr.strip().splitlines()
            assert run.returncode == 1 and len(lines) == 1, (kind, name, args, run.stderr)
            assert lines[0].startswith(f"hpcfit: error: [data] {tmp_path / name}: " if kind == "file"
                                       else f"hpcfit: error: {tmp_path / name}: "), lines[0]
            assert message in lines[0] and "accepted" in lines[0], lines[0]


def test_the_far_q_warning_is_one_line_in_the_run_and_the_dry_run(tmp_path):
    from hpcfit.xpcs import simulate
    simulate(tmp_path / "beamline.h5", layout="aps-u", n_phi=1, n_t=30, mode="static", dt=0.5, q=0.0054, L=2e6,
             params=[1500.0, -0.25, 20.0], contrast=0.25, offset=1.0, noise=0.002, seed=3)
    (tmp_path / "run.toml").write_text('[data]\nkind = "xpcs"\nfile = "beamline.h5"\nq = 0.01\n[model]\n'
                                       'mode = "static"\n[fit]\nmethod = "gn"\n[output]\nplots = false\n')
    dry = cli(["fit", "run.toml", "--dry-run"], tmp_path)             # the file does not record dt
    assert dry.returncode == 1 and "`dt` is required" in dry.stderr, dry.stderr
    want = (f"hpcfit: warning: {tmp_path / 'beamline.h5'}: no q ring near the requested q=0.01: using the nearest, "
            "q=0.0054")
    for args in (["--dry-run"], ["--quiet"]):
        run = cli(["fit", "run.toml", "--set", "data.dt=0.5", *args], tmp_path)
        assert run.returncode in (0, 2), run.stdout + run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(want), run.stderr


def test_the_xpcs_template_pointed_at_a_beamline_file_makes_its_folders(tmp_path):
    """`init xpcs` edited to read a beamline file: its checkpoint lies in hpcfit-results/, which does
    not exist yet; the dry run says the run will make it, the run makes it and fits."""
    from hpcfit.xpcs import simulate
    simulate(tmp_path / "beamline.h5", layout="aps-u", n_phi=2, n_t=30, mode="laminar_flow", dt=0.5, q=0.0054,
             L=2e6, params=[1500.0, -0.25, 20.0, 3e-4, 0.35, 1e-5, 5.0], contrast=0.25, offset=1.0, noise=0.002,
             seed=3, phi=[-170.0, 10.0])
    template = TEMPLATES["xpcs"]
    start, end = template.index("[data]"), template.index("[model]")
    (tmp_path / "run.toml").write_text(template[:start] + '[data]\nkind = "xpcs"\nfile = "beamline.h5"\n'
                                       'q = 0.0054\ndt = 0.5\n\n' + template[end:])
    small = ["--set", 'fit.method="gn"', "--set", "output.plots=false"]
    dry = cli(["fit", "run.toml", "--dry-run", *small], tmp_path)
    assert dry.returncode == 0 and f"folder to be made by the run: {tmp_path / 'hpcfit-results'}" in dry.stdout, \
        dry.stdout + dry.stderr
    assert not (tmp_path / "hpcfit-results").exists()
    run = cli(["fit", "run.toml", "--quiet", *small], tmp_path)
    assert run.returncode in (0, 2), run.stdout + run.stderr
    saved = hpcfit.load_result(tmp_path / "hpcfit-results" / "result.json")
    assert saved.n_points == 2 * 30 * 29 // 2 and saved.info["xpcs"]["dt"] == 0.5
