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
    disk, n_ok, room = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    real, calls = hdf5.write, []

    def write(path, ckpt):
        real(path, ckpt)
        calls.append(1)
        if len(calls) == n_ok:                    # the disk fills up after the n-th good checkpoint
            st = os.statvfs(disk)
            with open(os.path.join(disk, "filler"), "wb") as f:
                f.write(b"x" * max(0, st.f_bavail * st.f_frsize - room))

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


@pytest.mark.parametrize("room", [0, 4096])
def test_a_full_disk_is_a_clear_error_and_the_process_exits_normally(small_disk, tmp_path, room):
    """``room``: bytes left (0: the write fails at once; 4096: part of the file is written first)."""
    script = tmp_path / "job.py"
    script.write_text(FULL_DISK_JOB)
    run = subprocess.run([sys.executable, str(script), str(small_disk), "2", str(room)], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr            # no segfault (139), no abort
    assert "FITERROR" in run.stdout and "No space left on device" in run.stdout and "fit.h5" in run.stdout
    assert run.stdout.rstrip().endswith("DONE")
    path = small_disk / "fit.h5"
    assert ckpt_hdf5.is_checkpoint(path)                           # the last good one is intact
    ckpt_hdf5.read(path)
    assert not ckpt_hdf5.temporary_path(path).exists() and not ckpt_hdf5.lock_path(path).exists()


def test_a_failing_fsync_keeps_the_last_checkpoint_and_removes_the_temporary_file(tmp_path, monkeypatch):
    """ENOSPC or EIO reported only when the data reach the disk (fsync: NFS, quotas, a dying disk)."""
    import errno
    from test_checkpoint import synchronous_writes
    synchronous_writes(monkeypatch)
    real, calls = ckpt_hdf5._fsync, []

    def fsync(path, directory=False):
        if not directory:
            calls.append(path)
            if len(calls) == 3:
                raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))
        real(path, directory)

    monkeypatch.setattr(ckpt_hdf5, "_fsync", fsync)
    path = tmp_path / "fit.h5"
    with pytest.raises(hpcfit.FitError, match=r"writing checkpoint .*fit\.h5 failed: OSError: .*Input/output error"):
        hpcfit.curve_fit(hpcfit.models.exponential_decay, X, Y, checkpoint=path, checkpoint_every=1, **KW)
    assert ckpt_hdf5.read(path).iteration == 2
    assert not ckpt_hdf5.temporary_path(path).exists() and not ckpt_hdf5.lock_path(path).exists()


def damage_metadata(path) -> None:
    """Flip bytes past the superblock: object headers, links and B-trees (h5py then raises
    RuntimeError "Link iteration failed" or the like, not OSError)."""
    raw = bytearray(path.read_bytes())
    for i in np.random.default_rng(7).integers(1024, 1024 + 2048, 400):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_metadata_damage_in_the_newest_checkpoint_falls_back_to_the_previous(tmp_path):
    reference = hpcfit.curve_fit(hpcfit.models.exponential_decay, X, Y, **KW)
    path = tmp_path / "fit.h5"
    cut = hpcfit.curve_fit(hpcfit.models.exponential_decay, X, Y, checkpoint=path, max_iterations=3, **KW)
    assert cut.status == hpcfit.Status.MAX_ITERATIONS and ckpt_hdf5.previous_path(path).exists()
    damage_metadata(path)
    with pytest.raises(ckpt_hdf5.CorruptCheckpoint):
        ckpt_hdf5.read(path)
    with pytest.warns(CheckpointWarning, match=r"resuming from the previous one"):
        resumed = hpcfit.curve_fit(hpcfit.models.exponential_decay, X, Y, checkpoint=path, resume=True, **KW)
    assert resumed.popt.tobytes() == reference.popt.tobytes() and resumed.cost.hex() == reference.cost.hex()
