"""Every shipped config, run as users run it (``python -m hpcfit fit run.toml``, serially and under
``mpiexec -n 2``): rerun unchanged it returns the finished fit with the same bits and exit 0 without
another pass; stopped by SIGTERM or SIGUSR1 (exit 75, a SLURM requeue) the same command resumes to
the bits of the uninterrupted run. The templates are the example configs byte for byte
(test_app.test_the_shipped_example_configs_are_the_templates); the data are made smaller with the
same ``--set`` on every run of a command, so each command is the same command every time."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpcfit.app.templates import TEMPLATES
from hpcfit.checkpoint.record import compare, stored_form, same_stored, Checkpoint
from hpcfit.errors import InputError
from test_cli_and_processes import MPIEXEC

# the angles are not all in two directions 90° apart, which would leave phi0 ambiguous (exit 2)
SMALLER = {"xpcs": ["--set", "data.n_t=80", "--set", "data.n_phi=3", "--set", "data.phi=[-170.0, -80.0, 55.0]"],
           "curve": ["--set", "data.n_points=40000"]}
OUTPUT = {"xpcs": "hpcfit-results", "curve": "hpcfit-results-curve"}


def command(kind: str, n: int | None) -> list[str]:
    fit = ["-m", "hpcfit", "fit", "run.toml", *SMALLER[kind]]
    if n is None:
        return [sys.executable, *fit]
    return [MPIEXEC, "-n", str(n), sys.executable, "-m", "mpi4py", *fit]


def run(cmd, cwd, timeout=300):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def saved(folder: Path, kind: str) -> dict:
    data = json.loads((folder / OUTPUT[kind] / "result.json").read_text())
    return {"popt": [float(p["value"]).hex() for p in data["parameters"].values()],
            "perr": [float(p["error"]).hex() for p in data["parameters"].values()],
            "cost": float(data["result"]["cost"]).hex(), "status": data["result"]["status"]}


def job_folder(root: Path, name: str, kind: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "run.toml").write_text(TEMPLATES[kind])
    return folder


def stop_and_rerun(folder: Path, cmd: list[str], how: signal.Signals) -> subprocess.CompletedProcess:
    """Start the job; once its fit has begun (the checkpoint session says so) send ``how`` to the
    launcher (mpiexec forwards it to every rank, as srun does) and expect exit 75."""
    job = subprocess.Popen(cmd, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = []
    try:
        end = time.monotonic() + 240
        for line in job.stdout:
            lines.append(line)
            if "starting a new fit" in line:
                job.send_signal(how)
                break
            assert time.monotonic() < end, "".join(lines)
        lines += job.communicate(timeout=240)[0]
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.communicate(timeout=60)
    out = "".join(lines)
    assert job.returncode == 75, out
    assert f"stopped by {how.name}" in out and "Traceback" not in out
    assert not list(folder.glob("*/result.json")), "the job was not stopped before the end"
    return run(cmd, folder)


@pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not installed (pip install '.[mpich]')")
@pytest.mark.parametrize("n", [None, 2], ids=["serial", "mpiexec-n2"])
@pytest.mark.parametrize("kind", ["xpcs", "curve"])
def test_a_shipped_config_reruns_and_requeues_to_the_same_bits(tmp_path, kind, n):
    cmd = command(kind, n)
    first = job_folder(tmp_path, "first", kind)
    done = run(cmd, first)
    assert done.returncode == 0, done.stdout + done.stderr
    reference = saved(first, kind)
    # the same command again: the finished fit, as it was, without another pass
    again = run(cmd, first)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming from" in again.stdout and "resume refused" not in again.stderr
    assert " 0 Jacobian + 0 cost passes" not in again.stdout       # counters are the fit's, restored
    assert saved(first, kind) == reference
    # stopped as SLURM stops a job, then requeued: the same command resumes to the same bits
    how = signal.SIGTERM if n is None else signal.SIGUSR1
    stopped = job_folder(tmp_path, "stopped", kind)
    requeued = stop_and_rerun(stopped, cmd, how)
    assert requeued.returncode == 0, requeued.stdout + requeued.stderr
    assert "resuming from" in requeued.stdout
    assert saved(stopped, kind) == reference


def test_rerun_after_finish_makes_no_pass(tmp_path):
    """The API: a converged fit's checkpoint returns the fit without a pass over the data."""
    import numpy as np
    import hpcfit

    x = np.linspace(0.0, 5.0, 20_000)
    y = 2.0 * np.exp(-1.3 * x) + 0.5 + 0.01 * np.sin(40.0 * x)
    kwargs = dict(p0=[1.0, 0.5, 0.0], checkpoint=str(tmp_path / "fit.h5"), resume="auto", verbose=0,
                  explore_starts=((1.5, 1.0, 0.2),))                 # a tuple, read back as a list
    first = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, **kwargs)
    second = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, **kwargs)
    assert second.popt.tobytes() == first.popt.tobytes() and second.pcov.tobytes() == first.pcov.tobytes()
    assert second.info["checkpoint"]["resumed_from"] is not None
    assert second.nfev == first.nfev and second.status == first.status
    assert second.timings["jacobian_passes"] == 0.0 and second.timings["cost_passes"] == 0.0
    from scipy.optimize import curve_fit as scipy_fit
    ref, _ = scipy_fit(lambda t, a, b, c: a * np.exp(-b * t) + c, x, y, p0=[1.0, 0.5, 0.0])
    assert np.allclose(second.popt, ref, rtol=1e-7)


def test_options_are_compared_in_their_stored_form():
    assert stored_form((1.0, (2, 3))) == [1.0, [2, 3]]
    assert same_stored(((1000.0, 0.5),), [[1000.0, 0.5]])
    assert same_stored(float("nan"), float("nan"))
    assert not same_stored([1.0, 2.0], [1.0, 2.0000000000000004])
    assert not same_stored(0.0, -0.0)


def test_a_refusal_lists_only_the_options_that_differ_each_cut_short():
    import numpy as np

    long_start = [[float(v) for v in np.linspace(0, 1, 400)]]
    options = stored_form({"ftol": 1e-8, "explore_starts": long_start, "model_hash": "a", "model": "m"})
    ckpt = Checkpoint("trust_region", 3, {}, {}, np.zeros((0, 9)), {**options, "ftol": 1e-10,
                      "explore_starts": [[*long_start[0][:-1], 2.0]]}, {}, np.zeros((1, 6), dtype=np.int64), "x")
    with pytest.raises(InputError) as err:
        compare(ckpt, options, {}, "fit.h5")
    message = str(err.value)
    assert "option `ftol`: checkpoint 1e-10, now 1e-08" in message
    assert "explore_starts" in message and "model_hash" not in message
    assert len(message) < 1000, len(message)
    # a tuple now against the list the checkpoint read back is the same option: no refusal
    same = Checkpoint("trust_region", 3, {}, {}, np.zeros((0, 9)), options, {}, np.zeros((1, 6), dtype=np.int64), "x")
    compare(same, {**options, "explore_starts": tuple(tuple(r) for r in long_start)}, {}, "fit.h5")
