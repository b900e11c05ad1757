"""g2 fits from the command line (issue 21, item 4): `init g2` runs as written (serial and under
mpiexec -n 2, the same table bits), finds the simulated q-law; a real beamline file runs and says
which bins not to trust; the dry run; bad configurations named."""
import csv
import os
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest

MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
REAL = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "real")


def hpcfit(args, cwd, n=None, timeout=300):
    cmd = [sys.executable, "-m", "hpcfit", *args] if n is None else \
        [MPIEXEC, "-n", str(n), sys.executable, "-m", "mpi4py", "-m", "hpcfit", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_the_g2_template_runs_as_written_and_finds_the_q_law(tmp_path):
    template = hpcfit(["init", "g2"], tmp_path)
    assert template.returncode == 0
    (tmp_path / "run.toml").write_text(template.stdout)
    run = hpcfit(["fit", "run.toml"], tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    m = re.search(r"D = ([0-9.e+]+) ± ([0-9.e+]+), n = ([0-9.]+) ± ([0-9.e+-]+)", run.stdout)
    d, d_err, n, n_err = map(float, m.groups())
    assert abs(d - 2e5) < 3 * d_err and abs(n - 2.0) < 3 * n_err          # the simulated truth
    with open(tmp_path / "results-g2" / "g2_fits.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 200 and all(r["trustworthy"] == "True" for r in rows)
    assert 0.2 <= min(float(r["beta"]) for r in rows) and max(float(r["beta"]) for r in rows) <= 1.5
    assert (tmp_path / "results-g2" / "g2_rates.png").stat().st_size > 1000
    again = hpcfit(["fit", "run.toml"], tmp_path)                           # the simulation is reused
    assert again.returncode == 0 and "simulated" not in again.stdout
    # under MPI: the same table, bit for bit
    with h5py.File(tmp_path / "results-g2" / "g2_fits.h5", "r") as f:
        serial = f["g2_fits/popt"][()]
    par = hpcfit(["fit", "run.toml"], tmp_path, n=2)
    assert par.returncode == 0, par.stdout + par.stderr
    with h5py.File(tmp_path / "results-g2" / "g2_fits.h5", "r") as f:
        assert f["g2_fits/popt"][()].tobytes() == serial.tobytes()
    plan = hpcfit(["fit", "run.toml", "--dry-run"], tmp_path)
    assert plan.returncode == 0 and "files: 20" in plan.stdout and "q bins to fit: 200" in plan.stdout


def test_a_real_multitau_file_runs_and_names_the_bins_not_to_trust(tmp_path):
    path = os.path.abspath(os.path.join(REAL, "E0173_H06-c6c5-4_a0009_f100000_r00001_results.hdf"))
    if not os.path.exists(path):
        pytest.skip("the shared real data are not next to this checkout")
    (tmp_path / "run.toml").write_text(f'[data]\nkind = "g2"\nfile = ["{path}"]\n\n[model]\nform = "single"\n\n'
                                       '[output]\ndirectory = "out"\nplots = false\n')
    run = hpcfit(["fit", "run.toml"], tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "36 bins fitted in 1 file(s)" in run.stdout and "not trustworthy" in run.stderr
    with open(tmp_path / "out" / "g2_fits.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 36 and any(r["issues"] for r in rows)
    assert np.allclose([float(r["q"]) for r in rows][:2], [0.00304306, 0.00438459], rtol=1e-5)


@pytest.mark.parametrize("text, message", [
    ('[data]\nkind = "g2"\nfile = "x.hdf"\n[model]\nname = "xpcs"\n', r"\[model\]: g2 data are fitted with name = \"g2\""),
    ('[data]\nkind = "g2"\nfile = "x.hdf"\n[model]\nscan = true\n', r"\[model\]: g2 data are fitted with"),
    ('[data]\nkind = "g2"\nfile = "x.hdf"\n[parameters]\nbaseline = {fixed = true}\n',
     r"\[parameters\] baseline: `value` \(the fixed value\) is required"),
    ('[data]\nkind = "g2"\nfile = "x.hdf"\n[model]\nweights = "sigma"\n', r"`weights` must be \"err\""),
    ('[data]\nkind = "g2"\nfile = "none*.hdf"\n', r"`files`: the pattern .*none\*.hdf' matches no file"),
    ('[data]\nkind = "g2-simulated"\nq = [0.01]\n', r"missing key\(s\) 'D'"),
])
def test_bad_g2_configurations_are_named(tmp_path, text, message):
    (tmp_path / "x.hdf").write_bytes(b"")
    (tmp_path / "run.toml").write_text(text)
    run = hpcfit(["fit", "run.toml"], tmp_path)
    assert run.returncode == 1 and re.search(message, run.stderr), run.stderr


def test_global_true_adds_each_files_fit_over_q(tmp_path):
    template = hpcfit(["init", "g2"], tmp_path)
    (tmp_path / "run.toml").write_text(template.stdout)
    run = hpcfit(["fit", "run.toml", "--set", "data.n_files=2", "--set", "model.global=true",
                  "--set", "model.exponent=2.0", "--set", "output.plots=false"], tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    with open(tmp_path / "results-g2" / "g2_global.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and all(float(r["n"]) == 2.0 and float(r["n_err"]) == 0.0 for r in rows)
    for r in rows:                                              # the simulated truth: D = 2e5, β = 0.8
        assert abs(float(r["D"]) - 2e5) < 4 * float(r["D_err"]) and abs(float(r["beta"]) - 0.8) < 4 * float(r["beta_err"])
    assert "n = 2 (held)" in run.stdout
    bad = hpcfit(["fit", "run.toml", "--set", "model.global=true", "--set", 'model.form="double"'], tmp_path)
    assert bad.returncode == 1 and "global = true fits form 'single' or 'stretched'" in bad.stderr


def test_a_simulation_never_overwrites_files_it_did_not_write(tmp_path):
    mine = tmp_path / "mydata"
    mine.mkdir()
    (mine / "g2_0000.hdf").write_bytes(b"a user's file")
    (tmp_path / "run.toml").write_text('[data]\nkind = "g2-simulated"\nfile = "mydata"\nq = [0.01, 0.02, 0.03]\n'
                                       'D = 2e5\n\n[output]\ndirectory = "out"\nplots = false\n')
    run = hpcfit(["fit", "run.toml"], tmp_path)
    assert run.returncode == 1 and "hpcfit did not simulate" in run.stderr
    assert (mine / "g2_0000.hdf").read_bytes() == b"a user's file"
