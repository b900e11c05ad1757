"""Checkpoint files: one HDF5 layout, built in memory by rank 0 and written with plain file I/O to a
temporary file that is fsynced and renamed over the newest one, whose predecessor is kept.

Never HDF5's own file drivers and never the collective "mpio" one: an I/O error inside HDF5 (a full
disk while it flushes metadata at close) can crash the process, and under "mpio" it hung or
segfaulted every rank (tested on a full tmpfs). A checkpoint is kilobytes (the normal equations,
the history, one row per rank), so one writer costs nothing. Readable by plain h5py:

    /                attrs: format, format_version, version, phase, iteration, values (JSON),
                     options (JSON), options_hash, fingerprint (JSON), checksum, written_unix, writer
    /state/NAME      float64 arrays of the phase's state (u, Adam moments, JᵀWJ, ...)
    /history         (iterations, 9) float64, attr ``columns``
    /ranks           (ranks, 6) int64, one row per rank, attr ``columns``
"""
from __future__ import annotations

import io as io_module
import json
import os
import time
from pathlib import Path

import h5py
import numpy as np

from ..result import IterationRecord
from .record import RANK_COLUMNS, Checkpoint, canonical_json

FORMAT, FORMAT_VERSION = "hpcfit-checkpoint", 1
#: The ``writer`` attribute: rank 0, from an in-memory image (older files may say "serial" or "mpio").
WRITER = "rank0-memory"
HISTORY_COLUMNS = tuple(f for f in IterationRecord.__dataclass_fields__)


class CorruptCheckpoint(Exception):
    """A checkpoint file that cannot be read back whole (torn, truncated, edited, not a checkpoint)."""


def previous_path(path) -> Path:
    """Where the checkpoint before the newest is kept: ``fit.h5`` → ``fit.prev.h5``."""
    p = Path(path)
    return p.with_name(f"{p.stem}.prev{p.suffix}")


def temporary_path(path) -> Path:
    p = Path(path)
    return p.with_name(f"{p.name}.tmp")


def lock_path(path) -> Path:
    """The lock file beside a checkpoint: ``fit.h5`` → ``fit.h5.lock``."""
    p = Path(path)
    return p.with_name(f"{p.name}.lock")


def looks_like_hdf5(path) -> bool:
    """Whether the file starts with HDF5's signature (a torn checkpoint still does)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False


def is_checkpoint(path) -> bool:
    """Whether ``path`` is a regular file that HDF5 opens and that carries hpcfit's checkpoint marker."""
    p = Path(path)
    if p.is_symlink() or not p.is_file():
        return False
    try:
        with h5py.File(p, "r") as f:
            return f.attrs.get("format") == FORMAT
    except Exception:  # noqa: BLE001 - anything h5py cannot open as a checkpoint is not one
        return False


def foreign_file(path) -> str | None:
    """Why writing a checkpoint at ``path`` (or keeping its previous one) would destroy something
    that is not an hpcfit checkpoint; None when it is safe (the paths are absent or checkpoints).

    A damaged file at ``path`` next to a valid previous checkpoint is this pair's torn newest
    checkpoint (resume already fell back to the previous one), so it may be replaced."""
    prev = previous_path(path)
    if Path(path).is_file() and not Path(path).is_symlink() and is_checkpoint(prev):
        return None
    for target in (Path(path), prev):
        if not (target.exists() or target.is_symlink()):
            continue
        if target.is_symlink():
            return f"{target} is a symbolic link"
        if target.is_dir():
            return f"{target} is a directory"
        if not target.is_file():
            return f"{target} is not a regular file"
        if not is_checkpoint(target):
            return f"{target} exists and is not an hpcfit checkpoint (no format={FORMAT!r} attribute)"
    return None


def write(path, ckpt: Checkpoint) -> None:
    """Write ``ckpt`` atomically to ``path``, keeping the previous file as :func:`previous_path`.

    A full disk or a lost folder is an ``OSError`` here (the temporary file removed), never an error
    inside HDF5's own close."""
    tmp = temporary_path(path)
    image = io_module.BytesIO()
    with h5py.File(image, "w") as f:
        _fill(f, ckpt)
    try:
        with open(tmp, "wb") as out:
            out.write(image.getbuffer())
    except BaseException:
        _remove_quietly(tmp)
        raise
    _replace_durably(tmp, Path(path))


def _remove_quietly(path: Path) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _fill(f, ckpt: Checkpoint) -> None:
    """Create the layout and write the data."""
    attrs = {"format": FORMAT, "format_version": FORMAT_VERSION, "version": ckpt.version, "phase": ckpt.phase,
             "iteration": int(ckpt.iteration), "values": canonical_json(ckpt.values),
             "options": canonical_json(ckpt.options), "options_hash": ckpt.options_hash,
             "fingerprint": canonical_json(ckpt.fingerprint), "checksum": np.int64(ckpt.checksum()),
             "written_unix": float(ckpt.extra.get("written_unix", time.time())), "writer": WRITER}
    for key, value in attrs.items():
        f.attrs[key] = value
    state = f.create_group("state")
    for name, a in sorted(ckpt.arrays.items()):
        state.create_dataset(name, data=np.asarray(a, dtype="f8"))
    f.create_dataset("history", data=np.asarray(ckpt.history, dtype="f8")).attrs["columns"] = ",".join(HISTORY_COLUMNS)
    f.create_dataset("ranks", data=np.asarray(ckpt.ranks, dtype="i8")).attrs["columns"] = ",".join(RANK_COLUMNS)


def _replace_durably(tmp: Path, path: Path) -> None:
    """fsync the new file, keep the newest as the previous one, rename the new one in, fsync the folder.

    A crash between the two renames leaves the previous file and no newest: resume then falls back.
    On any failure the temporary file is removed.
    """
    try:
        _fsync(tmp)
        foreign = foreign_file(path)
        if foreign is not None:        # replaced by something else since the fit began: keep it
            raise FileExistsError(f"refusing to replace it: {foreign}")
        if is_checkpoint(path):        # a torn newest is not kept: the previous one stays the valid one
            os.replace(path, previous_path(path))
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync(path.parent, directory=True)


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path) -> Checkpoint:
    """Read and verify one checkpoint file; :class:`CorruptCheckpoint` says why it cannot be used."""
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise CorruptCheckpoint(f"{path} is not an hpcfit checkpoint (no format={FORMAT!r} attribute)")
            if int(f.attrs["format_version"]) > FORMAT_VERSION:
                raise CorruptCheckpoint(f"{path} has checkpoint format {int(f.attrs['format_version'])}; this hpcfit "
                                        f"reads format {FORMAT_VERSION} or older")
            a = f.attrs
            ckpt = Checkpoint(phase=str(a["phase"]), iteration=int(a["iteration"]),
                              arrays={name: f["state"][name][()] for name in f["state"]},
                              values=json.loads(a["values"]), history=f["history"][()],
                              options=json.loads(a["options"]), fingerprint=json.loads(a["fingerprint"]),
                              ranks=f["ranks"][()], version=str(a["version"]),
                              extra={"written_unix": float(a["written_unix"]), "writer": str(a["writer"])})
            stored = int(a["checksum"])
    except CorruptCheckpoint:
        raise
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError, KeyError, RuntimeError ("Link iteration failed"), ...
        raise CorruptCheckpoint(f"{path} cannot be read: {type(exc).__name__}: {exc}") from None
    if ckpt.checksum() != stored:
        raise CorruptCheckpoint(f"{path} fails its checksum (torn or modified)")
    return ckpt


def read_latest(path) -> tuple[Checkpoint, Path, list[str]]:
    """The newest readable checkpoint at ``path``, else its previous one; also the warnings to show.

    Raises FileNotFoundError when neither exists and CorruptCheckpoint when neither can be read.
    """
    candidates = [Path(path), previous_path(path)]
    problems = []
    for candidate in candidates:
        if not candidate.exists():
            problems.append(f"{candidate} does not exist")
            continue
        try:
            return read(candidate), candidate, [f"newest checkpoint unusable ({problems[0]}); resuming from the "
                                                f"previous one, {candidate}"] if problems else []
        except CorruptCheckpoint as exc:
            problems.append(str(exc))
    if all("does not exist" in p for p in problems):
        raise FileNotFoundError(f"no checkpoint at {candidates[0]} (nor its previous, {candidates[1]})")
    raise CorruptCheckpoint("no usable checkpoint: " + "; ".join(problems))
