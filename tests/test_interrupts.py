"""Ctrl-C and threads under MPI, in whole jobs (``mpiexec -n 2``), as a terminal and a notebook
treat them: SIGINT to the job's process group — whichever rank is computing or waiting in a
collective — ends every rank within seconds, with the checkpoint on disk, exit code 130 from the
CLI and KeyboardInterrupt on every rank from the API; the rerun resumes to the bits of the
uninterrupted job. Two threads fitting on one communicator never abort or hang the job."""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from test_cli_and_processes import MPIEXEC

pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not installed (pip install '.[mpich]')")

PROMPT = 10.0                     # seconds every rank has to leave after the SIGINT
ITERATION_1 = re.compile(r"(?m)^\s+1\s+\d\.\d+e[+-]\d+")

CONFIG = """
[data]
kind = "demo"
n_points = 3000000
[model]
name = "gaussian_peaks"
[parameters]
a1 = 2.0
m1 = -1.5
s1 = {value = 1.0, min = 0.01}
a2 = 1.0
m2 = 0.8
s2 = {value = 1.2, min = 0.01}
a3 = 1.5
m3 = 2.6
s3 = {value = 0.8, min = 0.01}
[fit]
method = "gn"
chunk_size = 1000000
ftol = 2.3e-16
xtol = 2.3e-16
gtol = 2.3e-16
[checkpoint]
path = "fit.h5"
[output]
directory = "out"
plots = false
"""

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np, jax.numpy as jnp
    from mpi4py import MPI
    import hpcfit
    comm = MPI.COMM_WORLD

    def model(x, a1, m1, s1, a2, m2, s2):
        return a1 * jnp.exp(-0.5 * ((x - m1) / s1) ** 2) + a2 * jnp.exp(-0.5 * ((x - m2) / s2) ** 2)

    n = 2_000_000 if comm.rank == 0 else 4_000          # rank 1 waits in the reduction nearly all the time
    x = np.linspace(-6, 6, n)
    y = 3 * np.exp(-0.5 * ((x + 2) / 0.6) ** 2) + 1.5 * np.exp(-0.5 * ((x - 0.5) / 0.9) ** 2) \\
        + 0.05 * np.random.default_rng(comm.rank).standard_normal(n)
    try:
        r = hpcfit.curve_fit(model, x, y, p0=[2, -1.5, 1, 1, 0.8, 1.2], comm=comm, distribute="local",
                             checkpoint="fit.h5", resume="auto", method="gn", chunk_size=500_000,
                             ftol=2.3e-16, xtol=2.3e-16, gtol=2.3e-16, verbose=1)
    except KeyboardInterrupt as exc:
        print(f"KEYBOARDINTERRUPT rank={comm.rank} agreed={getattr(exc, 'agreed', None)}", flush=True)
        sys.exit(0)
    if comm.rank == 0:
        json.dump({"popt": [v.hex() for v in r.popt], "resumed": r.info["checkpoint"]["resumed_from"]},
                  open("result.json", "w"))
""")


def launch(cmd, cwd):
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def interrupt_after_iteration_1(cmd, cwd) -> tuple[int, str, float]:
    """Start the job, SIGINT its whole process group (what Ctrl-C does) once rank 0 printed
    iteration 1; return (exit code, output, seconds from the signal to the end)."""
    job = launch(cmd, cwd)
    out = []
    try:
        end = time.monotonic() + 180
        for line in job.stdout:
            out.append(line)
            if ITERATION_1.search(line):
                break
            assert time.monotonic() < end, "".join(out)
        time.sleep(0.5)
        os.killpg(job.pid, signal.SIGINT)
        t0 = time.monotonic()
        rest = job.communicate(timeout=PROMPT)[0]
        return job.returncode, "".join(out) + rest, time.monotonic() - t0
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.communicate(timeout=30)
            pytest.fail(f"the job was still running {PROMPT} s after SIGINT:\n" + "".join(out))


def popt_of(folder: Path) -> list[str]:
    data = json.loads((folder / "out" / "result.json").read_text())
    return [float(p["value"]).hex() for p in data["parameters"].values()]


@pytest.mark.parametrize("launcher", [[], ["-m", "mpi4py"]], ids=["plain", "mpi4py"])
def test_ctrl_c_ends_a_cli_job_with_130_and_the_rerun_resumes_to_the_same_bits(tmp_path, launcher):
    cmd = [MPIEXEC, "-n", "2", sys.executable, *launcher, "-m", "hpcfit", "fit", "run.toml"]
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    for folder in (whole, stopped):
        folder.mkdir()
        (folder / "run.toml").write_text(CONFIG)
    reference = subprocess.run(cmd, cwd=whole, capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stdout + reference.stderr
    code, out, seconds = interrupt_after_iteration_1(cmd, stopped)
    assert code == 130, out
    assert "interrupted by SIGINT" in out and "Traceback" not in out and seconds < PROMPT
    assert (stopped / "fit.h5").exists() and not (stopped / "out" / "result.json").exists()
    rerun = subprocess.run(cmd, cwd=stopped, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "resuming from" in rerun.stdout
    assert popt_of(stopped) == popt_of(whole)


def test_ctrl_c_raises_keyboard_interrupt_on_every_rank_of_an_api_job_after_the_checkpoint(tmp_path):
    (tmp_path / "fit.py").write_text(SCRIPT)
    whole = tmp_path / "whole"
    whole.mkdir()
    (whole / "fit.py").write_text(SCRIPT)
    cmd = [MPIEXEC, "-n", "2", sys.executable, "fit.py"]
    reference = subprocess.run(cmd, cwd=whole, capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stdout + reference.stderr
    code, out, seconds = interrupt_after_iteration_1(cmd, tmp_path)
    assert code == 0, out                            # each rank caught its KeyboardInterrupt and exited 0
    assert sorted(re.findall(r"KEYBOARDINTERRUPT rank=(\d) agreed=True", out)) == ["0", "1"], out
    assert (tmp_path / "fit.h5").exists() and not (tmp_path / "result.json").exists()
    rerun = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    again, first = json.loads((tmp_path / "result.json").read_text()), json.loads((whole / "result.json").read_text())
    assert again["resumed"] is not None and again["popt"] == first["popt"]


THREADS = textwrap.dedent("""
    import threading
    import numpy as np, jax.numpy as jnp
    from mpi4py import MPI
    import hpcfit

    def model(x, a, b, c):
        return a * jnp.exp(-b * x) + c

    x = np.linspace(0, 10, 5000)
    y = 2.0 * np.exp(-0.7 * x) + 0.3 + 0.01 * np.random.default_rng(1).standard_normal(x.size)
    for round in range(10):
        out = {}
        def work(i):
            r = hpcfit.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0], comm=MPI.COMM_WORLD)
            out[i] = r.popt
        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert len(out) == 2 and out[0].tobytes() == out[1].tobytes(), out
        print(f"ROUND {round} rank {MPI.COMM_WORLD.rank} " + " ".join(v.hex() for v in out[0]), flush=True)
""")


def test_two_threads_fitting_on_one_communicator_run_one_after_the_other(tmp_path):
    from scipy.optimize import curve_fit as scipy_fit
    import numpy as np

    (tmp_path / "threads.py").write_text(THREADS)
    run = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "threads.py"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    # the ranks share one pipe, so lines can be glued together: match each record, not each line
    rounds = re.findall(r"ROUND (\d) rank (\d) ((?:-?0x[0-9a-f.]+p[+-]\d+ ?){3})", run.stdout)
    assert len(rounds) == 20 and len({r[2].strip() for r in rounds}) == 1, run.stdout
    x = np.linspace(0, 10, 5000)
    y = 2.0 * np.exp(-0.7 * x) + 0.3 + 0.01 * np.random.default_rng(1).standard_normal(x.size)
    ref, _ = scipy_fit(lambda t, a, b, c: a * np.exp(-b * t) + c, x, y, p0=[1.0, 1.0, 0.0])
    popt = np.array([float.fromhex(v) for v in rounds[0][2].split()])
    assert np.allclose(popt, ref, rtol=1e-6)


PHASE_1 = textwrap.dedent("""
    import numpy as np, jax.numpy as jnp
    from mpi4py import MPI
    import hpcfit
    comm = MPI.COMM_WORLD

    def model(x, a1, m1, s1, a2, m2, s2):
        return a1 * jnp.exp(-0.5 * ((x - m1) / s1) ** 2) + a2 * jnp.exp(-0.5 * ((x - m2) / s2) ** 2)

    x = np.linspace(-6, 6, 400_000)
    y = 3 * np.exp(-0.5 * ((x + 2) / 0.6) ** 2) + 1.5 * np.exp(-0.5 * ((x - 0.5) / 0.9) ** 2) \\
        + 0.05 * np.random.default_rng(0).standard_normal(x.size)
    try:        # 400 starts polished on the sample, each rank its share, serially: minutes of phase 1
        hpcfit.curve_fit(model, x, y, p0=[2, -1.5, 1, 1, 0.8, 1.2], comm=comm, multistart=400, verbose=1,
                         explore_sample_points=200_000)
        print("FINISHED", flush=True)
    except KeyboardInterrupt as exc:
        print(f"KEYBOARDINTERRUPT rank={comm.rank} agreed={getattr(exc, 'agreed', None)}", flush=True)
""")


def test_ctrl_c_in_phase_1_where_each_rank_works_alone_is_agreed_at_its_gather(tmp_path):
    (tmp_path / "fit.py").write_text(PHASE_1)
    job = launch([MPIEXEC, "-n", "2", sys.executable, "fit.py"], tmp_path)
    out = []
    try:
        for line in job.stdout:
            out.append(line)
            if "LM on the sample from p0" in line:
                break
        time.sleep(1.0)
        os.killpg(job.pid, signal.SIGINT)
        out.append(job.communicate(timeout=PROMPT)[0])
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.communicate(timeout=30)
            pytest.fail(f"the job was still running {PROMPT} s after SIGINT:\n" + "".join(out))
    text = "".join(out)
    assert job.returncode == 0 and "FINISHED" not in text, text
    assert sorted(re.findall(r"KEYBOARDINTERRUPT rank=(\d) agreed=True", text)) == ["0", "1"], text
