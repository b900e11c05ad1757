"""Faults around checkpoint files: a full disk (a real tmpfs, mounted by the test as root) gives a
clear error and a process that exits normally — never a crash — with the last good checkpoint and
no temporary file left; a newest checkpoint damaged inside its HDF5 metadata falls back to the
previous one."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import hpcfit
from hpcfit.checkpoint import hdf5 as ckpt_hdf5
from hpcfit.checkpoint.session import CheckpointWarning

X = np.linspace(0.0, 5.0, 20_000)
Y = 2.0 * np.exp(-1.3 * X) + 0.5 + 0.01 * np.sin(50.0 * X)
KW = dict(p0=[1.0, 0.2, 0.0], verbose=0, chunk_size=4096, method="gn")


@pytest.fixture
def small_disk(tmp_path):
    """A 512 KiB tmpfs: filled on demand, so that the next checkpoint write meets ENOSPC."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("this machine does not allow mounting a tmpfs")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)])


FULL_DISK_JOB = textwrap.dedent("""
    import os, sys
    import numpy as np, hpcfit
    from hpcfit.checkpoint import hdf5
    disk, n_ok = sys.argv[1], int(sys.argv[2])
    real, calls = hdf5.write, []

    def write(path, ckpt):
        real(path, ckpt)
        calls.append(1)
        if len(calls) == n_ok:                    # the disk fills up after the n-th good checkpoint
            with open(os.path.join(disk, "filler"), "wb") as f:
                try:
                    while True:
                        f.write(b"x" * 4096)
                except OSError:
                    pass

    hdf5.write = write
    x = np.linspace(0.0, 5.0, 20000)
    y = 2.0 * np.exp(-1.3 * x) + 0.5 + 0.01 * np.sin(50.0 * x)
    try:
        hpcfit.curve_fit(hpcfit.models.exponential_decay, x, y, p0=[1.0, 0.2, 0.0], verbose=0, chunk_size=4096,
                         method="gn", checkpoint=os.path.join(disk, "fit.h5"), checkpoint_every=1)
    except hpcfit.FitError as exc:
        print("FITERROR", exc)
    print("DONE")
""")


def test_a_full_disk_is_a_clear_error_and_the_process_exits_normally(small_disk, tmp_path):
    script = tmp_path / "job.py"
    script.write_text(FULL_DISK_JOB)
    run = subprocess.run([sys.executable, str(script), str(small_disk), "2"], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr            # no segfault (139), no abort
    assert "FITERROR" in run.stdout and "No space left on device" in run.stdout and "fit.h5" in run.stdout
    assert run.stdout.rstrip().endswith("DONE")
    path = small_disk / "fit.h5"
    assert ckpt_hdf5.is_checkpoint(path)                           # the last good one is intact
    ckpt_hdf5.read(path)
    assert not ckpt_hdf5.temporary_path(path).exists() and not ckpt_hdf5.lock_path(path).exists()


def test_metadata_damage_in_the_newest_checkpoint_falls_back_to_the_previous(tmp_path):
    reference = hpcfit.curve_fit(hpcfit.models.exponential_decay, X, Y, **KW)
    path = tmp_path / "fit.h5"
    cut = hpcfit.curve_fit(hpcfit.models.exponential_decay, X, Y, checkpoint=path, max_iterations=3, **KW)
    assert cut.status == hpcfit.Status.MAX_ITERATIONS and ckpt_hdf5.previous_path(path).exists()
    raw = bytearray(path.read_bytes())
    start = 1024                          # past the superblock: object headers, links and B-trees
    for i in np.random.default_rng(7).integers(start, start + 2048, 400):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ckpt_hdf5.CorruptCheckpoint):
        ckpt_hdf5.read(path)
    with pytest.warns(CheckpointWarning, match=r"resuming from the previous one"):
        resumed = hpcfit.curve_fit(hpcfit.models.exponential_decay, X, Y, checkpoint=path, resume=True, **KW)
    assert resumed.popt.tobytes() == reference.popt.tobytes() and resumed.cost.hex() == reference.cost.hex()
