"""Things that need their own process: the CLI, running without mpi4py, and 4-rank bitwise runs."""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")


def run(args, timeout=240, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kw)


def test_info_prints_versions_mpi_and_devices():
    out = run([sys.executable, "-m", "hpcfit", "info"])
    assert out.returncode == 0, out.stderr
    for key in ("hpcfit", "jax", "numpy", "mpi4py", "h5py", "MPI library", "world size",
                "h5py parallel HDF5", "JAX devices"):
        assert key in out.stdout


def test_serial_fit_works_without_mpi4py():
    code = textwrap.dedent("""
        import sys
        sys.modules["mpi4py"] = None          # any import of mpi4py now fails
        import numpy as np, hpcfit
        x = np.linspace(0, 4, 3000); y = 2 * np.exp(-x) + 0.1
        res = hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1, 2, 0], verbose=0)
        assert res.success and abs(res.popt[0] - 2) < 1e-8, res.popt
        print("ok")
    """)
    out = run([sys.executable, "-c", code])
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_comm_must_be_a_communicator():
    import numpy as np

    import hpcfit
    with pytest.raises(hpcfit.InputError, match="`comm` must be an mpi4py communicator"):
        hpcfit.curve_fit(hpcfit.models.exponential_decay, np.arange(10.0), np.arange(10.0), comm="world")
    from mpi4py import MPI
    with pytest.raises(hpcfit.InputError, match=r"`comm` is MPI.COMM_NULL"):
        hpcfit.curve_fit(hpcfit.models.exponential_decay, np.arange(10.0), np.arange(10.0), comm=MPI.COMM_NULL)


@pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not installed (pip install '.[mpich]')")
def test_demo_under_mpiexec_prints_the_table_and_succeeds():
    out = run([MPIEXEC, "-n", "2", sys.executable, "-m", "mpi4py", "-m", "hpcfit", "demo", "--n-points", "20000"])
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count(" iter ") == 1                        # rank 0 alone prints the table
    assert "2 rank(s)" in out.stdout and "termination condition is satisfied" in out.stdout


@pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not installed (pip install '.[mpich]')")
def test_bad_input_under_mpiexec_fails_on_every_rank_without_hanging():
    out = run([MPIEXEC, "-n", "2", sys.executable, "-m", "mpi4py", "-m", "hpcfit", "demo", "--n-points", "5"],
              timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    lines = [line for line in out.stderr.strip().splitlines() if not line.startswith("Abort(1)")]   # MPICH's line
    assert len(lines) == 1 and lines[0].startswith("hpcfit: error: ") and "n = 5 points, p = 9 parameters" in lines[0]


@pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not installed (pip install '.[mpich]')")
def test_bitwise_identical_on_four_ranks():
    script = textwrap.dedent("""
        import numpy as np
        from mpi4py import MPI
        import hpcfit
        from hpcfit.demo import START, demo_data
        x, y, s = demo_data(30011)
        kw = dict(p0=START, sigma=s, chunk_size=1000, verbose=0)
        serial = hpcfit.curve_fit(hpcfit.models.gaussian_peaks, x, y, **kw)
        par = hpcfit.curve_fit(hpcfit.models.gaussian_peaks, x, y, comm=MPI.COMM_WORLD, **kw)
        same = par.popt.tobytes() == serial.popt.tobytes() and par.pcov.tobytes() == serial.pcov.tobytes()
        if MPI.COMM_WORLD.rank == 0:
            print("same" if same else "differ", par.info["n_ranks"])
    """)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = run([MPIEXEC, "-n", "4", sys.executable, "-m", "mpi4py", "-c", script], env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["same", "4"]
