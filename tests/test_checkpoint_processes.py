"""Whole jobs killed and requeued: ``mpiexec`` runs a fit that checkpoints every iteration; the test
kills the whole job with SIGKILL (nothing can be flushed) or stops it with SIGTERM (as SLURM does,
expecting exit code 75), then reruns the same command, which resumes by itself (resume="auto").
The result must be bit for bit the uninterrupted fit's (computed here, in one process)."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

import hpcfit
from test_cli_and_processes import MPIEXEC

pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not installed (pip install '.[mpich]')")

JOB = textwrap.dedent("""
    import sys, numpy as np, hpcfit
    from mpi4py import MPI
    from job_data import OPTIONS, X, Y
    r = hpcfit.curve_fit(hpcfit.models.exponential_decay, X, Y, comm=MPI.COMM_WORLD, checkpoint=sys.argv[1],
                         resume="auto", **OPTIONS)
    if MPI.COMM_WORLD.rank == 0:
        np.savez(sys.argv[2], popt=r.popt, pcov=r.pcov, cost=r.cost, nfev=r.nfev, steps=r.warmup.steps)
""")
DATA = textwrap.dedent("""
    import numpy as np
    X = np.linspace(0.0, 5.0, 300_000)
    Y = 2.0 * np.exp(-1.3 * X) + 0.5 + 0.01 * np.sin(50.0 * X)
    # a long warm-up (no plateau stop) so that the job is killed in the middle of it
    OPTIONS = dict(p0=[1.0, 0.2, 0.0], method="hybrid", warmup_max_steps=2000, warmup_plateau_window=1000,
                   warm_start_detection=False,
                   chunk_size=16384, verbose=0)
""")


def start(tmp_path, n):
    return subprocess.Popen([MPIEXEC, "-n", str(n), sys.executable, "-m", "mpi4py", str(tmp_path / "job.py"),
                             str(tmp_path / "fit.h5"), str(tmp_path / "result.npz")],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONPATH": str(tmp_path)})


def wait_for_checkpoint(path, job, step: int, timeout=120.0):
    """Until the newest checkpoint is at warm-up step >= ``step`` (files are renamed in whole)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert job.poll() is None, "the job ended before it could be interrupted:\n" + job.stdout.read()
        if path.exists():
            try:
                with h5py.File(path, "r") as f:
                    if f.attrs["iteration"] >= step or f.attrs["phase"] != "warmup":
                        return
            except OSError:
                pass            # renamed away while we opened it
        time.sleep(0.02)
    raise AssertionError("no checkpoint in time")


@pytest.mark.parametrize("how,first,second", [("SIGKILL", 2, 2), ("SIGKILL", 2, 3), ("SIGTERM", 3, 3),
                                              ("SIGUSR1", 3, 2), ("SIGTERM twice", 2, 2)])
def test_killed_or_stopped_job_resumes_to_the_same_bits(tmp_path, how, first, second):
    (tmp_path / "job.py").write_text(JOB)
    (tmp_path / "job_data.py").write_text(DATA)
    sys.path.insert(0, str(tmp_path))
    try:
        import job_data
        reference = hpcfit.curve_fit(hpcfit.models.exponential_decay, job_data.X, job_data.Y, **job_data.OPTIONS)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("job_data", None)
    job = start(tmp_path, first)
    try:
        wait_for_checkpoint(tmp_path / "fit.h5", job, 200)
        if how == "SIGKILL":
            os.killpg(job.pid, signal.SIGKILL)          # the whole job: launcher and every rank
            job.communicate(timeout=60)
        else:
            os.kill(job.pid, getattr(signal, how.split()[0]))   # to mpiexec, which forwards it to the ranks
            if how.endswith("twice"):                  # a second one during the stop keeps exit code 75
                time.sleep(0.05)
                os.kill(job.pid, signal.SIGTERM)
            out = job.communicate(timeout=120)[0]
            assert job.returncode == hpcfit.REQUEUE_EXIT_CODE, out
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.communicate(timeout=60)
    assert not (tmp_path / "result.npz").exists()      # it really was stopped before the end
    with h5py.File(tmp_path / "fit.h5") as f:
        stopped_at = (f.attrs["phase"], int(f.attrs["iteration"]))
    assert stopped_at[0] == "warmup" and stopped_at[1] < reference.warmup.steps
    again = start(tmp_path, second)                     # the requeued job: the same command
    out = again.communicate(timeout=300)[0]
    assert again.returncode == 0, out
    result = np.load(tmp_path / "result.npz")
    assert result["popt"].tobytes() == reference.popt.tobytes()
    assert result["pcov"].tobytes() == reference.pcov.tobytes()
    assert float(result["cost"]).hex() == reference.cost.hex()
    assert int(result["nfev"]) == reference.nfev and int(result["steps"]) == reference.warmup.steps
