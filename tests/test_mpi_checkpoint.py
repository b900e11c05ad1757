"""Checkpoint/restart on 2 and 3 ranks: rank 0 writes every checkpoint from an in-memory image. The
parallel-HDF5 lane (tests/run_phdf5.sh, HPCFIT_EXPECT_MPIO=1) runs the same tests with an h5py built
against parallel HDF5, where the checkpoints must be the same."""
import os
import signal
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import hpcfit
from hpcfit.checkpoint import hdf5 as ckpt_hdf5
from test_checkpoint import X, fit, interrupted_fit, make_unwritable_on_write, same_bits

pytestmark = pytest.mark.mpi(min_size=2)
EXPECT_MPIO = os.environ.get("HPCFIT_EXPECT_MPIO") == "1"


def folder(world, shared_dir, name):
    path = Path(shared_dir) / name
    if world.rank == 0:
        path.mkdir()
    world.Barrier()
    return path


def test_rank0_writes_every_ranks_row(world, shared_dir):
    assert bool(h5py.get_config().mpi) == EXPECT_MPIO, "the parallel-HDF5 lane must run with parallel h5py"
    path = folder(world, shared_dir, "kind") / "fit.h5"
    result = fit(world, method="gn", checkpoint=path)
    assert result.info["checkpoint"]["writer"] == "rank0-memory"
    with h5py.File(path) as f:
        assert f.attrs["writer"] == "rank0-memory"
        ranks = f["ranks"][()]
    assert ranks.shape == (world.size, 6)
    np.testing.assert_array_equal(ranks[:, 0], np.arange(world.size))
    assert ranks[:, 4].sum() == X.size and np.all(ranks[1:, 3] == ranks[:-1, 3] + ranks[:-1, 4])
    assert np.all(ranks[1:, 1] == ranks[:-1, 1] + ranks[:-1, 2]) and ranks[:, 2].sum() == 8


@pytest.mark.parametrize("method", ["gn", "hybrid"])
def test_signal_on_the_last_rank_stops_all_and_resume_is_bitwise(world, shared_dir, monkeypatch, method):
    """SIGUSR1 reaches one rank only; every rank stops at the same boundary, then the fit resumes."""
    reference = fit(None, method=method)                    # serial, uninterrupted
    path = folder(world, shared_dir, f"signal-{method}") / "fit.h5"
    last = world.size - 1

    def send_when_written():
        while not path.exists():
            time.sleep(0.001)
        os.kill(os.getpid(), signal.SIGUSR1)

    if world.rank == last:
        threading.Thread(target=send_when_written, daemon=True).start()
    with pytest.raises(hpcfit.Preempted) as stopped:
        fit(world, method=method, checkpoint=path)
    assert stopped.value.code == 75
    info = world.allgather((stopped.value.phase, stopped.value.iteration))
    assert len(set(info)) == 1                              # the same boundary on every rank
    same_bits(fit(world, method=method, checkpoint=path, resume=True), reference)


def test_resume_on_another_rank_count_matches(world, shared_dir, monkeypatch):
    """A checkpoint written by this rank count, resumed in one process (and the other way round)."""
    reference = fit(None, method="gn")
    path = folder(world, shared_dir, "ranks") / "fit.h5"
    interrupted_fit(monkeypatch, 2, world, method="gn", checkpoint=path)
    world.Barrier()
    if world.rank == 0:
        serial = fit(None, method="gn", resume=path)
        np.testing.assert_allclose(serial.popt, reference.popt, rtol=1e-12, atol=0)
        same_bits(serial, reference)                         # the global chunk grid makes it exact here
    world.Barrier()
    serial_path = folder(world, shared_dir, "ranks-serial") / "fit.h5"
    if world.rank == 0:
        interrupted_fit(monkeypatch, 2, method="gn", checkpoint=serial_path)
    world.Barrier()
    resumed = fit(world, method="gn", resume=serial_path)
    np.testing.assert_allclose(resumed.popt, reference.popt, rtol=1e-12, atol=0)
    same_bits(resumed, reference)


def test_other_options_refused_on_every_rank(world, shared_dir):
    path = folder(world, shared_dir, "refuse") / "fit.h5"
    fit(world, method="gn", checkpoint=path)
    with pytest.raises(hpcfit.InputError, match=r"resume refused: .*option `xtol`: checkpoint 1e-08, now 1e-06"):
        fit(world, method="gn", checkpoint=path, resume=True, xtol=1e-6)


def test_writer_failure_is_an_error_on_every_rank(world, shared_dir, monkeypatch):
    base = folder(world, shared_dir, "fail")
    (base / "ckpt").mkdir() if world.rank == 0 else None
    world.Barrier()
    make_unwritable_on_write(monkeypatch, 3)
    with pytest.raises(hpcfit.FitError, match=r"writing checkpoint .*fit.h5 failed"):
        fit(world, method="gn", checkpoint=base / "ckpt" / "fit.h5")
    world.Barrier()
    saved = base / "ckpt-saved" / "fit.h5"
    assert ckpt_hdf5.read(saved).iteration == 2


def test_a_changed_chunk_written_serially_is_refused_on_every_rank(world, shared_dir, monkeypatch):
    """Checksums of every chunk, taken by one process, checked by this rank count (the grid is global)."""
    from test_checkpoint import Y
    path = folder(world, shared_dir, "all-chunks") / "fit.h5"
    if world.rank == 0:
        interrupted_fit(monkeypatch, 3, method="gn", checkpoint=path, chunk_size=2048)
    world.Barrier()
    y = Y.copy()
    y[3 * 2048 + 17] += 1e-3                              # chunk 3: not among the 8 fingerprinted at setup
    with pytest.raises(hpcfit.InputError, match=r"the checksums of chunk\(s\) \[3\]"):
        fit(world, method="gn", resume=path, chunk_size=2048, y=y)
    resumed = fit(world, method="gn", resume=path, chunk_size=2048)
    same_bits(resumed, fit(None, method="gn", chunk_size=2048))


@pytest.mark.parametrize("room", [0, 4096])
def test_a_full_disk_is_an_error_on_every_rank_and_keeps_the_last_checkpoint(world, shared_dir, monkeypatch, room):
    """A real tmpfs (mounted by rank 0 as root) fills up after the second checkpoint, leaving ``room``
    bytes (0: the next write fails at once; 4096: part of the file is written first). Under "mpio"
    this hung or segfaulted every rank; now it is a FitError on every rank, the process goes on, and
    the last good checkpoint and no temporary file are left."""
    import subprocess
    disk = folder(world, shared_dir, f"disk-{room}")
    mounted = False
    if world.rank == 0 and os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)]).returncode == 0
    if not world.bcast(mounted):
        pytest.skip("mounting a tmpfs needs root and a machine that allows it")
    try:
        from test_checkpoint import synchronous_writes
        synchronous_writes(monkeypatch)
        real, calls = ckpt_hdf5.write, []

        def write(path, ckpt):
            real(path, ckpt)
            calls.append(1)
            if len(calls) == 2:
                free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
                with open(disk / "filler", "wb") as f:
                    f.write(b"x" * max(0, free - room))

        monkeypatch.setattr(ckpt_hdf5, "write", write)
        path = disk / "fit.h5"
        with pytest.raises(hpcfit.FitError, match=r"writing checkpoint .*fit.h5 failed: OSError: .*No space left"):
            fit(world, method="gn", checkpoint=path, checkpoint_every=1)
        world.Barrier()
        assert ckpt_hdf5.read(path).iteration == 2              # the last good one, intact
        assert not ckpt_hdf5.temporary_path(path).exists() and not ckpt_hdf5.lock_path(path).exists()
    finally:
        world.Barrier()
        if world.rank == 0:
            subprocess.run(["umount", "-l", str(disk)])
