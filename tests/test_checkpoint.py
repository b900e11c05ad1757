"""Checkpoint/restart in one process: what a checkpoint holds, bitwise resume from phase 1 and
phase 2 after a real SIGUSR1/SIGTERM, the previous file kept and used when the newest is torn,
refused resumes, write failures, and bad options. The reference is always the same fit run
without interruption; the MPI lane (test_mpi_checkpoint.py) repeats the key cases on 2 and 3 ranks."""
import os
import signal
from pathlib import Path

import h5py
import numpy as np
import pytest

import hpcfit
from hpcfit.checkpoint import hdf5 as ckpt_hdf5
from hpcfit.checkpoint.session import CheckpointWarning

X = np.linspace(0.0, 5.0, 60_000)
Y = 2.0 * np.exp(-1.3 * X) + 0.5 + 0.01 * np.sin(50.0 * X)
START = dict(p0=[1.0, 0.2, 0.0], verbose=0, chunk_size=8192)


def fit(comm=None, y=Y, f=hpcfit.models.exponential_decay, **kw):
    if kw.get("method", "hybrid") == "hybrid":   # LM on the sample alone would explain these data: run Adam too
        kw.setdefault("warm_start_detection", False)
    return hpcfit.curve_fit(f, X, y, comm=comm, **{**START, **kw})


def same_bits(a, b):
    """The interrupted-and-resumed fit is the uninterrupted one, bit for bit."""
    assert a.popt.tobytes() == b.popt.tobytes() and a.pcov.tobytes() == b.pcov.tobytes()
    assert a.cost.hex() == b.cost.hex()
    assert (a.n_iterations, a.nfev, a.njev, a.status) == (b.n_iterations, b.nfev, b.njev, b.status)
    assert a.info["linear_solves"] == b.info["linear_solves"]    # counters carried by the checkpoint
    rows = [np.array([(r.iteration, r.cost, r.cost_change, r.step_norm, r.ratio, r.damping, r.rejected)
                      for r in res.history]) for res in (a, b)]
    assert rows[0].tobytes() == rows[1].tobytes()           # NaN in row 0 compares equal as bits
    assert (a.warmup.steps, a.warmup.reason, a.warmup.layer_counts) == (b.warmup.steps, b.warmup.reason,
                                                                        b.warmup.layer_counts)


def synchronous_writes(monkeypatch):
    """Write checkpoints in the solver's thread, so that what a write triggers is seen at the very next
    reduction: tests that stop after the n-th write are exact."""
    from hpcfit.checkpoint import session
    monkeypatch.setattr(session, "WRITE_IN_BACKGROUND", False)


def stop_after_writes(monkeypatch, n: int, sig=signal.SIGUSR1, ranks=(0,), rank=0, threaded=False):
    """Send ``sig`` to this process when its ``n``-th checkpoint write is done (on ``ranks`` only)."""
    if not threaded:
        synchronous_writes(monkeypatch)
    real = ckpt_hdf5.write
    calls = []

    def write(path, ckpt):
        real(path, ckpt)
        calls.append(ckpt.iteration)
        if len(calls) == n and rank in ranks:
            os.kill(os.getpid(), sig)

    monkeypatch.setattr(ckpt_hdf5, "write", write)
    return calls


def interrupted_fit(monkeypatch, n: int, comm=None, sig=signal.SIGUSR1, threaded=False, **kw):
    """Run a fit that is stopped by ``sig`` after its ``n``-th checkpoint (sent on rank 0); return the
    :class:`hpcfit.Preempted` every rank raised. The monkeypatches are undone afterwards."""
    stop_after_writes(monkeypatch, n, sig, rank=0 if comm is None else comm.rank, threaded=threaded)
    with pytest.raises(hpcfit.Preempted) as stopped:
        fit(comm, **kw)
    monkeypatch.undo()
    return stopped.value


@pytest.mark.parametrize("method,sig", [("gn", signal.SIGUSR1), ("gn", signal.SIGTERM),
                                        ("hybrid", signal.SIGUSR1)])
def test_stop_on_signal_then_resume_is_bitwise(tmp_path, monkeypatch, method, sig):
    reference = fit(method=method)
    path = tmp_path / "fit.h5"
    # the background writer sends it
    stopped = interrupted_fit(monkeypatch, 1, sig=sig, threaded=True, method=method, checkpoint=path)
    assert stopped.code == hpcfit.REQUEUE_EXIT_CODE == 75
    assert stopped.signal_name == sig.name
    phase = "warmup" if method == "hybrid" else "trust_region"
    assert stopped.phase == phase
    with h5py.File(path) as f:                       # the checkpoint of the stop is on disk
        assert f.attrs["phase"] == phase and f.attrs["iteration"] == stopped.iteration
    # after a stop the process is on its way out with 75: a second signal must not kill it
    assert signal.getsignal(sig) == signal.SIG_IGN
    signal.signal(sig, signal.SIG_DFL)
    same_bits(fit(method=method, checkpoint=path, resume=True), reference)


def test_checkpointing_does_not_change_the_answer(tmp_path):
    same_bits(fit(checkpoint=tmp_path / "fit.h5"), fit())
    res = fit(method="gn", checkpoint=tmp_path / "gn.h5")
    # one before the trial step of every iteration after the first, and the converged fit at the end
    assert res.info["checkpoint"] == {"path": str(tmp_path / "gn.h5"), "writer": "rank0-memory", "resumed_from": None,
                                      "written": res.n_iterations, "failure": None}


def test_checkpoint_contents_are_readable_with_plain_h5py(tmp_path, monkeypatch):
    path = tmp_path / "fit.h5"
    interrupted_fit(monkeypatch, 3, method="gn", checkpoint=path)
    with h5py.File(path) as f:
        a = dict(f.attrs)
        assert a["format"] == "hpcfit-checkpoint" and a["version"] == hpcfit.__version__ and a["writer"] == "rank0-memory"
        assert a["phase"] == "trust_region" and a["iteration"] >= 3
        assert set(f["state"]) == {"u", "jtj", "jtr", "d2", "trial_step", "trial_point"}
        assert f["state/jtj"].shape == (3, 3) and np.all(np.linalg.eigvalsh(f["state/jtj"][()]) > 0)
        assert f["history"].shape == (a["iteration"] + 1, 9)
        assert f["history"].attrs["columns"].split(",")[:2] == ["iteration", "cost"]
        np.testing.assert_array_equal(f["history"][:, 0], np.arange(a["iteration"] + 1))
        ranks = f["ranks"][()]
        assert f["ranks"].attrs["columns"] == "rank,first_chunk,n_chunks,first_point,n_points,cursor"
        assert ranks.shape == (1, 6) and ranks[0, 4] == X.size and ranks[0, 5] > 0
        import json
        values, options, fp = (json.loads(a[k]) for k in ("values", "options", "fingerprint"))
        assert values["iteration"] == a["iteration"] and values["damping"] > 0
        assert options["p0"] == [1.0, 0.2, 0.0] and options["ftol"] == 1e-8 and "verbose" not in options
        assert fp["n_points"] == X.size and len(fp["checksums"]) == min(8, fp["n_chunks"])
        assert len(a["options_hash"]) == 64
        # the previous checkpoint is the one before, also complete
    with h5py.File(ckpt_hdf5.previous_path(path)) as prev:
        assert prev.attrs["iteration"] == a["iteration"] - 1


def test_warmup_checkpoint_holds_adam_state(tmp_path, monkeypatch):
    path = tmp_path / "fit.h5"
    interrupted_fit(monkeypatch, 2, method="hybrid", checkpoint=path)
    with h5py.File(path) as f:
        import json
        assert f.attrs["phase"] == "warmup" and f.attrs["iteration"] % 10 == 0
        assert {"u", "m", "v", "best_u", "best_history"} <= set(f["state"])
        assert np.all(f["state/v"][()] > 0)                     # second moments after some steps
        values = json.loads(f.attrs["values"])
        assert values["step"] == f.attrs["iteration"] and values["rate"] in (0.05, 0.02, 0.005)
        assert f["ranks"][0, 5] == values["step"]                # the sampler's counter


def test_truncated_newest_falls_back_to_previous(tmp_path, monkeypatch):
    reference = fit(method="gn")
    path = tmp_path / "fit.h5"
    interrupted_fit(monkeypatch, 3, method="gn", checkpoint=path)
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)
    monkeypatch.undo()
    with pytest.warns(CheckpointWarning, match="previous one"):
        resumed = fit(method="gn", checkpoint=path, resume=True)
    same_bits(resumed, reference)


def test_both_checkpoints_unusable_is_a_clear_error(tmp_path):
    path = tmp_path / "fit.h5"
    path.write_bytes(b"not hdf5")
    ckpt_hdf5.previous_path(path).write_bytes(b"")
    with pytest.raises(hpcfit.InputError, match=r"`resume`: no usable checkpoint: .*fit.h5 cannot be read.*"
                                                r"fit.prev.h5 cannot be read"):
        fit(checkpoint=path, resume=True)


def test_a_flipped_value_fails_the_checksum(tmp_path):
    path = tmp_path / "fit.h5"
    fit(method="gn", checkpoint=path)
    with h5py.File(path, "r+") as f:
        f["state/u"][0] += 1e-12
    with pytest.raises(ckpt_hdf5.CorruptCheckpoint, match="checksum"):
        ckpt_hdf5.read(path)


@pytest.mark.parametrize("change,message", [
    (dict(ftol=1e-10), r"option `ftol`: checkpoint 1e-08, now 1e-10"),
    (dict(p0=[1.0, 0.3, 0.0]), r"option `p0`"),
    (dict(y=Y * (1 + 1e-9)), r"data values: the checksums of chunk\(s\) \[0, 1, 2, .*, 7\] differ"),
    (dict(chunk_size=4096), r"option `chunk_size`: checkpoint 8192, now 4096; data x_shape: checkpoint \[8192\], now \[4096\]; data chunk_size"),
])
def test_resume_with_other_options_or_data_is_refused(tmp_path, change, message):
    path = tmp_path / "fit.h5"
    fit(method="gn", checkpoint=path)
    with pytest.raises(hpcfit.InputError, match="resume refused: .*" + message):
        fit(method="gn", checkpoint=path, resume=True, **change)
    with pytest.warns(CheckpointWarning, match="resume_force=True"):
        forced = fit(method="gn", checkpoint=path, resume=True, resume_force=True, **change)
    assert forced.success


def test_options_that_do_not_change_the_answer_may_change(tmp_path):
    path = tmp_path / "fit.h5"
    fit(method="gn", checkpoint=path)
    resumed = fit(method="gn", checkpoint=tmp_path / "other.h5", resume=path, verbose=1, max_time=100.0,
                  checkpoint_every=3)
    same_bits(resumed, fit(method="gn"))
    assert resumed.info["checkpoint"]["resumed_from"]["phase"] == "trust_region"


def test_resume_auto_starts_fresh_without_a_checkpoint(tmp_path):
    same_bits(fit(checkpoint=tmp_path / "fit.h5", resume="auto"), fit())


def test_writes_by_seconds_only(tmp_path):
    path = tmp_path / "fit.h5"
    fit(method="gn", checkpoint=path, checkpoint_every=None, checkpoint_seconds=1e-9)
    assert path.exists() and ckpt_hdf5.previous_path(path).exists()
    other = tmp_path / "at_the_end.h5"
    res = fit(method="gn", checkpoint=other, checkpoint_every=None, checkpoint_seconds=3600.0)
    # no write by the clock; only the finished fit, so that a rerun returns it
    assert res.info["checkpoint"]["written"] == 1 and not ckpt_hdf5.previous_path(other).exists()
    with h5py.File(other) as f:
        assert f.attrs["phase"] == "trust_region" and int(f.attrs["iteration"]) == res.n_iterations


def make_unwritable_on_write(monkeypatch, n: int):
    """Before the ``n``-th write, the checkpoint folder goes away (moved aside, a plain file in its
    place): every later write fails as on a full or read-only disk, also for root."""
    synchronous_writes(monkeypatch)
    real = ckpt_hdf5.write
    calls = []

    def write(path, ckpt):
        calls.append(1)
        folder = Path(path).parent
        if len(calls) == n:
            folder.rename(folder.with_name(folder.name + "-saved"))
            folder.write_text("in the way")
        real(path, ckpt)

    monkeypatch.setattr(ckpt_hdf5, "write", write)


def test_writer_failure_is_a_clear_error_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    make_unwritable_on_write(monkeypatch, 3)
    with pytest.raises(hpcfit.FitError, match=r"writing checkpoint .*fit.h5 failed: .*Error.*last good checkpoint"):
        fit(method="gn", checkpoint=folder / "fit.h5")
    saved = tmp_path / "ckpt-saved" / "fit.h5"
    assert ckpt_hdf5.read(saved).iteration == 2          # the last good one, intact
    assert ckpt_hdf5.read(ckpt_hdf5.previous_path(saved)).iteration == 1


def test_unwritable_folder_is_refused_before_the_fit(tmp_path):
    with pytest.raises(hpcfit.InputError, match=r"`checkpoint`: cannot write .*missing/fit.h5 .*must exist"):
        fit(checkpoint=tmp_path / "missing" / "fit.h5")


@pytest.mark.parametrize("kw,message", [
    (dict(checkpoint=3), r"`checkpoint` must be a file path"),
    (dict(checkpoint="f.h5", checkpoint_every=0), r"`checkpoint_every` must be an integer >= 1"),
    (dict(checkpoint="f.h5", checkpoint_seconds=-1.0), r"`checkpoint_seconds` must be a finite number > 0"),
    (dict(resume=3), r"`resume` must be None, True .*'auto'"),
    (dict(resume=True), r"`resume=True` needs `checkpoint`"),
    (dict(resume_force=1), r"`resume_force` must be True or False"),
])
def test_bad_checkpoint_options(kw, message):
    with pytest.raises(hpcfit.InputError, match=message):
        fit(**kw)


def test_resume_from_a_missing_file_names_it(tmp_path):
    with pytest.raises(hpcfit.InputError, match=r"`resume`: no checkpoint at .*nothing.h5"):
        fit(resume=tmp_path / "nothing.h5")


@pytest.mark.parametrize("limit", [{"max_iterations": 2}, {"max_nfev": 6}, {"max_time": 1e-9}])
def test_a_fit_stopped_on_a_limit_checkpoints_and_a_higher_limit_resumes_it(tmp_path, limit):
    reference = fit(method="gn")
    path = tmp_path / "fit.h5"
    cut = fit(method="gn", checkpoint=path, checkpoint_every=None, **limit)
    assert cut.status.on_limit and cut.info["checkpoint"]["written"] == 1
    with h5py.File(path) as f:
        assert f.attrs["phase"] == "trust_region" and "trial_step" not in f["state"]
    resumed = fit(method="gn", checkpoint=path, resume=True)
    assert resumed.info["checkpoint"]["resumed_from"]["phase"] == "trust_region"
    same_bits(resumed, reference)


def test_a_changed_model_of_the_same_name_is_not_resumed(tmp_path, monkeypatch):
    import jax.numpy as jnp
    path = tmp_path / "fit.h5"

    def make(rate_scale):
        def model(x, a, k, c):                      # the same name, an edited body
            return a * jnp.exp(-rate_scale * k * x) + c
        return model

    interrupted_fit(monkeypatch, 2, method="gn", checkpoint=path, f=make(1.0))
    monkeypatch.undo()
    with pytest.raises(hpcfit.InputError, match=r"the model: .*model.* now computes something else"):
        fit(method="gn", checkpoint=path, resume=True, f=make(2.0))
    lambdas = [lambda x, a, k, c: a * jnp.exp(-k * x) + c, lambda x, a, k, c: a * jnp.exp(-k * x) - c]
    path2 = tmp_path / "lambda.h5"
    interrupted_fit(monkeypatch, 2, method="gn", checkpoint=path2, f=lambdas[0])
    monkeypatch.undo()
    with pytest.raises(hpcfit.InputError, match=r"now computes something else"):
        fit(method="gn", checkpoint=path2, resume=True, f=lambdas[1])
    same = fit(method="gn", checkpoint=path2, resume=True, f=lambda x, a, k, c: a * jnp.exp(-k * x) + c)
    assert same.info["checkpoint"]["resumed_from"] is not None      # a new lambda that computes the same


def test_a_change_in_any_chunk_is_caught_at_the_resumes_first_pass(tmp_path, monkeypatch):
    from hpcfit.checkpoint.record import fingerprint_chunks
    path = tmp_path / "fit.h5"
    chunk = 2048
    n_chunks = -(-X.size // chunk)
    unlisted = next(c for c in range(n_chunks) if c not in fingerprint_chunks(n_chunks))   # not among the 8
    interrupted_fit(monkeypatch, 3, method="gn", checkpoint=path, chunk_size=chunk)
    with h5py.File(path) as f:
        import json
        assert len(json.loads(f.attrs["fingerprint"])["all_checksums"]) == n_chunks
    y = Y.copy()
    y[unlisted * chunk + 5] += 1e-3
    with pytest.raises(hpcfit.InputError, match=rf"the checksums of chunk\(s\) \[{unlisted}\] .*global points "
                                                rf"\[{unlisted * chunk}, {(unlisted + 1) * chunk}\)"):
        fit(method="gn", checkpoint=path, resume=True, chunk_size=chunk, y=y)
    for c in range(n_chunks):                  # every position, the last (partial) chunk included
        y = Y.copy()
        y[min(c * chunk + 1000, X.size - 1)] *= 1.0 + 1e-15
        with pytest.raises(hpcfit.InputError, match=rf"the checksums of chunk\(s\) \[{c}\] |chunk {c}\b"):
            fit(method="gn", checkpoint=path, resume=True, chunk_size=chunk, y=y)
    resumed = fit(method="gn", checkpoint=path, resume=True, chunk_size=chunk)              # unchanged data
    same_bits(resumed, fit(method="gn", chunk_size=chunk))
