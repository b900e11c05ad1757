"""Nothing a user gave is destroyed: a checkpoint path that holds anything but an hpcfit checkpoint
is refused (the file is byte for byte unchanged), a second live fit on one checkpoint path is
refused by the lock, and prepare_stream never writes over its source or a foreign file."""
import fcntl
import hashlib
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

import hpcfit
from hpcfit.checkpoint import hdf5 as ckpt_hdf5
from hpcfit.data import HDF5Source
from hpcfit.data.sampling import stratified_points
from hpcfit.data.scale import SAMPLE_POINTS

X = np.linspace(0.0, 5.0, 20_000)
Y = 2.0 * np.exp(-1.3 * X) + 0.5 + 0.01 * np.sin(50.0 * X)
KW = dict(p0=[1.0, 0.2, 0.0], verbose=0, chunk_size=4096, method="gn")


def digest(path) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def fit(**kw):
    return hpcfit.curve_fit(hpcfit.models.exponential_decay, X, Y, **{**KW, **kw})


def test_the_data_file_being_fitted_is_refused_as_a_checkpoint(tmp_path):
    data = tmp_path / "data.h5"
    with h5py.File(data, "w") as f:
        f["x"], f["y"] = X, Y
    before = digest(data)
    with pytest.raises(hpcfit.InputError, match=r"data\.h5 exists and is not an hpcfit checkpoint.*will not touch"):
        hpcfit.fit(hpcfit.models.exponential_decay, HDF5Source(data, x="x"), checkpoint=data, **KW)
    assert digest(data) == before and not (tmp_path / "data.prev.h5").exists()
    assert sorted(os.listdir(tmp_path)) == ["data.h5"]                  # no lock, no .tmp left behind


@pytest.mark.parametrize("what", ["folder", "text", "previous"])
def test_folders_foreign_files_and_a_foreign_previous_file_are_refused(tmp_path, what):
    path = tmp_path / "fit.h5"
    victim = {"folder": path, "text": path, "previous": tmp_path / "fit.prev.h5"}[what]
    if what == "folder":
        path.mkdir()
        (path / "inside.txt").write_text("mine")
    else:
        victim.write_text("my notes")
    with pytest.raises(hpcfit.InputError, match=r"`checkpoint`: .*(is a directory|not an hpcfit checkpoint)"):
        fit(checkpoint=path)
    if what == "folder":
        assert (path / "inside.txt").read_text() == "mine"
    else:
        assert victim.read_text() == "my notes"


def test_own_checkpoints_are_rewritten_and_the_lock_is_released(tmp_path):
    path = tmp_path / "fit.h5"
    first = fit(checkpoint=path)
    assert ckpt_hdf5.is_checkpoint(path)
    again = fit(checkpoint=path)                              # over its own checkpoint: allowed
    assert again.popt.tobytes() == first.popt.tobytes()
    assert not ckpt_hdf5.lock_path(path).exists() and not ckpt_hdf5.temporary_path(path).exists()


def test_a_second_live_fit_on_the_same_path_is_refused(tmp_path):
    path = tmp_path / "fit.h5"
    lock = ckpt_hdf5.lock_path(path)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    os.write(fd, b"pid 4242 on node7")
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)           # what the first fit holds while it runs
    try:
        with pytest.raises(hpcfit.InputError, match=r"another fit is writing .*fit\.h5.*pid 4242 on node7"):
            fit(checkpoint=path)
    finally:
        os.close(fd)
    assert not path.exists()
    fit(checkpoint=path)                                      # once the first one ended: fine


def test_a_stale_temporary_file_of_a_dead_fit_is_removed(tmp_path):
    path = tmp_path / "fit.h5"
    tmp = ckpt_hdf5.temporary_path(path)
    tmp.write_bytes(b"\x89HDF\r\n\x1a\n" + b"half a checkpoint")     # torn: HDF5's signature, then nothing
    fit(checkpoint=path)
    assert not tmp.exists() and ckpt_hdf5.is_checkpoint(path)


@pytest.mark.parametrize("name", ["fit.h5.tmp", "fit.h5.lock"])
def test_a_foreign_file_where_the_temporary_or_the_lock_goes_is_refused_and_kept(tmp_path, name):
    path = tmp_path / "fit.h5"
    (tmp_path / name).write_text("my notes")
    with pytest.raises(hpcfit.InputError, match=rf"{name} exists and is not .*hpcfit will not touch it"):
        fit(checkpoint=path)
    assert (tmp_path / name).read_text() == "my notes" and not path.exists()


def test_prepare_stream_never_writes_over_its_source_or_a_foreign_file(tmp_path):
    from hpcfit.xpcs import prepare_stream, simulate
    src = tmp_path / "raw.h5"
    simulate(src, layout="aps-u", n_phi=2, n_t=20, mode="static", dt=0.5, q=0.0054, L=2e6,
             params=[1500.0, -0.25, 20.0], contrast=0.25, offset=1.0, noise=0.002, seed=5)
    before = digest(src)
    link = tmp_path / "link.h5"
    link.symlink_to(src)
    hard = tmp_path / "hard.h5"
    os.link(src, hard)
    for out in (src, link, hard):
        with pytest.raises(hpcfit.InputError, match=r"`out` .* is the source file .*replace the beamline data"):
            prepare_stream(src, q=0.0054, dt=0.5, out=out)
    notes = tmp_path / "notes.h5"
    notes.write_text("not a stream file")
    with pytest.raises(hpcfit.InputError, match=r"`out` .*notes\.h5 exists and is not an hpcfit stream file"):
        prepare_stream(src, q=0.0054, dt=0.5, out=notes)
    assert digest(src) == before and notes.read_text() == "not a stream file"
    out = prepare_stream(src, q=0.0054, dt=0.5, out=tmp_path / "s.h5")
    assert prepare_stream(src, q=0.0054, dt=0.5, out=out) == out          # its own stream file: reused


def change_file(data: Path, how: str) -> None:
    """What another program may do to a data file (x, y datasets) while a fit reads it."""
    if how == "written":                                  # bytes of y overwritten in place
        with open(data, "r+b") as fh:
            fh.seek(os.path.getsize(data) - 4096)
            fh.write(b"\x00" * 64)
    elif how == "truncated":
        os.truncate(data, os.path.getsize(data) // 2)
    else:                                                 # a new file renamed over it
        other = data.with_name("other.h5")
        with h5py.File(other, "w") as f:
            f["x"], f["y"] = X, Y + 1.0
        os.replace(other, data)


@pytest.mark.parametrize("how", ["written", "truncated", "replaced"])
def test_a_data_file_that_changes_under_the_fit_is_an_error_naming_it(tmp_path, monkeypatch, how):
    from hpcfit.kernels.evaluator import PassEvaluator
    data = tmp_path / "data.h5"
    with h5py.File(data, "w") as f:
        f["x"], f["y"] = X, Y
    real, calls = PassEvaluator.jacobian_pass, []

    def jacobian_pass(self, u, flags=()):
        out = real(self, u, flags)
        calls.append(1)
        if len(calls) == 2 and self.local.describe.startswith("HDF5"):   # another program touches the file
            change_file(data, how)
        return out

    monkeypatch.setattr(PassEvaluator, "jacobian_pass", jacobian_pass)
    with pytest.raises(hpcfit.InputError, match=r"HDF5Source: file .*data\.h5.* changed while the fit was reading it"):
        hpcfit.fit(hpcfit.models.exponential_decay, HDF5Source(data, x="x"), **KW)


def test_damaged_or_misnamed_data_get_messages_naming_file_dataset_and_chunk(tmp_path):
    data = tmp_path / "data.h5"
    with h5py.File(data, "w") as f:
        f["x"] = X
        f.create_dataset("y", data=Y, chunks=(8,), compression="gzip")
        f.create_group("g")
    with pytest.raises(hpcfit.InputError, match=r"file .*data\.h5', dataset 'g' is a group, not a dataset"):
        hpcfit.fit(hpcfit.models.exponential_decay, HDF5Source(data, x="x", y="g"), **KW)
    # damage a compressed block of y that the fixed sample of the data scales (hpcfit.data.scale) does
    # not read, so the first chunk pass meets it (phase 1's sample, all 20 000 points here, does)
    hit = np.zeros(X.size // 8, dtype=bool)
    hit[stratified_points(0, SAMPLE_POINTS, X.size) // 8] = True
    block = int(np.flatnonzero(~hit)[0])
    with h5py.File(data, "r") as f:                     # the file offset of one compressed block of y
        offset, size = f["y"].id.get_chunk_info(block).byte_offset, f["y"].id.get_chunk_info(block).size
    with open(data, "r+b") as fh:
        fh.seek(offset + size // 2)
        fh.write(b"\x00\xff" * 2)
    with pytest.raises(hpcfit.InputError, match=r"reading file .*data\.h5', dataset 'y' failed at points "
                                                r"\[\d+, \d+\) \(chunk \d+\).*damaged"):
        hpcfit.fit(hpcfit.models.exponential_decay, HDF5Source(data, x="x"), **KW)
    with pytest.raises(hpcfit.InputError, match=r"reading file .*data\.h5', dataset 'y' failed at \d+ sampled points"):
        hpcfit.fit(hpcfit.models.exponential_decay, HDF5Source(data, x="x"), **{**KW, "method": "hybrid"})


def test_a_wild_value_in_a_file_names_the_file_and_the_point(tmp_path):
    """Garbage that is finite (1e200 where the data are of order 1) is not a scale to fix: the error
    names the file, the dataset and the global index, and does not ask to rescale."""
    data = tmp_path / "data.h5"
    y = Y.copy()
    y[12345] = 1e200
    with h5py.File(data, "w") as f:
        f["x"], f["y"] = X, y
    for method in ("gn", "hybrid"):
        with pytest.raises(hpcfit.InputError, match=rf"1 point\(s\) of the data \(HDF5 {data}:y\) have a residual .* "
                                                    r"too large to square .* global point index 12345\. Check the data") \
                as info:
            hpcfit.fit(hpcfit.models.exponential_decay, HDF5Source(data, x="x"), **{**KW, "method": method})
        assert "rescale" not in str(info.value)
