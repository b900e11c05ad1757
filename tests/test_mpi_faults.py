"""Fault injection on 2 and 3 ranks, the fault on one rank only where it can be: each case asserts
the same clear error on every rank (no hang: the lane has a timeout), nothing of the user's
destroyed, and bitwise resume where resume is allowed. The serial cases are in test_checkpoint.py,
test_checkpoint_faults.py and test_file_safety.py; the full disk under MPI in test_mpi_checkpoint.py."""
import fcntl
import os

import h5py
import pytest

import hpcfit
from hpcfit.checkpoint import hdf5 as ckpt_hdf5
from hpcfit.checkpoint.session import CheckpointWarning
from hpcfit.data import HDF5Source
from test_checkpoint import X, Y, fit, interrupted_fit, same_bits
from test_checkpoint_faults import damage_metadata
from test_file_safety import change_file
from test_mpi_checkpoint import folder

pytestmark = pytest.mark.mpi(min_size=2)


def same_everywhere(world, exc) -> str:
    messages = world.allgather(str(exc))
    assert all(m == messages[0] for m in messages), messages
    return messages[0]


@pytest.mark.parametrize("damage", ["truncated", "metadata"])
def test_a_damaged_newest_checkpoint_falls_back_on_every_rank(world, shared_dir, monkeypatch, damage):
    """Cut to a third, or bytes flipped in its HDF5 metadata (h5py's RuntimeError, not OSError)."""
    reference = fit(None, method="gn")
    path = folder(world, shared_dir, f"damaged-{damage}") / "fit.h5"
    interrupted_fit(monkeypatch, 3, world, method="gn", checkpoint=path)
    world.Barrier()
    if world.rank == 0 and damage == "truncated":
        with open(path, "r+b") as fh:
            fh.truncate(path.stat().st_size // 3)
    elif world.rank == 0:
        damage_metadata(path)
    world.Barrier()
    with pytest.warns(CheckpointWarning, match="resuming from the previous one"):
        resumed = fit(world, method="gn", checkpoint=path, resume=True)
    same_bits(resumed, reference)


def test_a_changed_model_is_not_resumed_on_any_rank(world, shared_dir, monkeypatch):
    import jax.numpy as jnp
    path = folder(world, shared_dir, "model") / "fit.h5"

    def make(rate_scale):
        def model(x, a, k, c):                # the same name, an edited body
            return a * jnp.exp(-rate_scale * k * x) + c
        return model

    interrupted_fit(monkeypatch, 2, world, method="gn", checkpoint=path, f=make(1.0))
    with pytest.raises(hpcfit.InputError, match=r"now computes something else") as info:
        fit(world, method="gn", checkpoint=path, resume=True, f=make(2.0))
    same_everywhere(world, info.value)
    assert ckpt_hdf5.is_checkpoint(path)      # the refused resume left the checkpoint as it was


@pytest.mark.parametrize("where", ["first", "last"])
def test_a_changed_chunk_is_refused_on_every_rank(world, shared_dir, monkeypatch, where):
    """The first chunk (rank 0's) or the last, partial one (the last rank's)."""
    chunk = 2048
    n_chunks = -(-X.size // chunk)
    c = 0 if where == "first" else n_chunks - 1
    path = folder(world, shared_dir, f"chunk-{where}") / "fit.h5"
    interrupted_fit(monkeypatch, 3, world, method="gn", checkpoint=path, chunk_size=chunk)
    y = Y.copy()
    y[min(c * chunk + 5, X.size - 1)] += 1e-3
    with pytest.raises(hpcfit.InputError, match=rf"the checksums of chunk\(s\) \[{c}\]") as info:
        fit(world, method="gn", checkpoint=path, resume=True, chunk_size=chunk, y=y)
    same_everywhere(world, info.value)


@pytest.mark.parametrize("how", ["written", "truncated", "replaced"])
def test_a_data_file_changed_mid_fit_by_one_rank_is_an_error_on_every_rank(world, shared_dir, monkeypatch, how):
    """The last rank changes the file between passes (as another program would); every rank raises
    the error naming the file, whichever rank's check saw it first."""
    from hpcfit.kernels.evaluator import PassEvaluator
    base = folder(world, shared_dir, f"changed-{how}")
    data = base / "data.h5"
    if world.rank == 0:
        with h5py.File(data, "w") as f:
            f["x"], f["y"] = X, Y
    world.Barrier()
    real, calls = PassEvaluator.jacobian_pass, []

    def jacobian_pass(self, u, flags=()):
        out = real(self, u, flags)
        calls.append(1)
        if len(calls) == 2 and world.rank == world.size - 1 and self.local.describe.startswith("HDF5"):
            change_file(data, how)
        return out

    monkeypatch.setattr(PassEvaluator, "jacobian_pass", jacobian_pass)
    with pytest.raises(hpcfit.InputError, match=r"HDF5Source: file .*data\.h5.* changed while the fit was "
                                                r"reading it") as info:
        hpcfit.fit(hpcfit.models.exponential_decay, HDF5Source(data, x="x"), p0=[1.0, 0.2, 0.0], verbose=0,
                   chunk_size=8192, method="gn", comm=world)
    world.allgather(str(info.value))          # every rank got here: nobody is left waiting


def test_a_second_live_fit_on_the_same_path_is_refused_on_all_its_ranks(world, shared_dir):
    """Rank 0 holds the checkpoint's lock as a running fit does; a fit on the other ranks (their
    own communicator) is refused on each of them, naming the holder; after release it runs."""
    path = folder(world, shared_dir, "locked") / "fit.h5"
    others = world.Split(0 if world.rank == 0 else 1, world.rank)
    fd = None
    if world.rank == 0:
        fd = os.open(ckpt_hdf5.lock_path(path), os.O_RDWR | os.O_CREAT)
        os.write(fd, f"pid {os.getpid()} on testhost\n".encode())
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    world.Barrier()
    if world.rank != 0:
        with pytest.raises(hpcfit.InputError, match=rf"another fit is writing .*fit\.h5.*pid {world.bcast(None)} "
                                                    r"on testhost") as info:
            fit(others, method="gn", checkpoint=path)
        messages = others.allgather(str(info.value))
        assert all(m == messages[0] for m in messages)
        assert not path.exists()
    else:
        world.bcast(os.getpid())
    world.Barrier()
    if world.rank == 0:
        os.remove(ckpt_hdf5.lock_path(path))
        os.close(fd)
    world.Barrier()
    if world.rank != 0:
        assert fit(others, method="gn", checkpoint=path).success
    others.Free()


def test_a_max_time_stop_checkpoints_and_the_resume_continues_bitwise(world, shared_dir):
    reference = fit(None, method="gn")
    path = folder(world, shared_dir, "max-time") / "fit.h5"
    cut = fit(world, method="gn", checkpoint=path, checkpoint_every=None, max_time=1e-9)
    assert cut.status == hpcfit.Status.TIME_LIMIT and cut.info["checkpoint"]["written"] == 1
    assert ckpt_hdf5.read(path).phase == "trust_region"
    resumed = fit(world, method="gn", checkpoint=path, resume=True)
    assert resumed.info["checkpoint"]["resumed_from"] is not None
    same_bits(resumed, reference)


def test_a_failed_final_write_is_reported_on_every_rank(world, shared_dir, monkeypatch):
    """The write of a limit stop's final state fails (after the last reduction, so the fit has its
    answer): the fit returns on every rank with the failure in info["checkpoint"]["failure"], and
    rank 0 warns; nothing hangs."""
    import errno
    path = folder(world, shared_dir, "final") / "fit.h5"

    def write(path, ckpt):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt_hdf5, "write", write)
    if world.rank == 0:
        with pytest.warns(CheckpointWarning, match=r"writing checkpoint .*fit\.h5 failed: OSError: .*No space"):
            cut = fit(world, method="gn", checkpoint=path, checkpoint_every=None, max_iterations=2)
    else:
        cut = fit(world, method="gn", checkpoint=path, checkpoint_every=None, max_iterations=2)
    failure = cut.info["checkpoint"]["failure"]
    assert failure is not None and "No space left" in failure
    assert len(set(world.allgather(failure))) == 1
    assert not path.exists() and not ckpt_hdf5.lock_path(path).exists()
