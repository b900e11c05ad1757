"""The checkpoint's lock: rank 0 claims a checkpoint path before its first write (an exclusive
``flock`` on ``NAME.lock`` beside it, held for the whole fit), so that a second live fit on the same
path is refused instead of racing the first one's files, and a foreign file is never touched."""
from __future__ import annotations

import fcntl
import os
import re
import socket
import warnings
from pathlib import Path

from ..errors import CheckpointWarning, InputError
from . import hdf5


def claim(path: Path) -> "CheckpointLock":
    """Rank 0, before the first write: refuse a path whose file is not an hpcfit checkpoint, take the
    lock beside it, remove a stale temporary file of an earlier fit, check the folder is writable."""
    foreign = hdf5.foreign_file(path)
    if foreign is not None:
        raise InputError(f"`checkpoint`: {foreign}; hpcfit writes checkpoints only to a new path or over its own "
                         f"checkpoints (and keeps the previous one as {hdf5.previous_path(path).name}), so it "
                         "will not touch this file. Choose another checkpoint path")
    lock = CheckpointLock(path)
    probe = hdf5.temporary_path(path)
    if probe.exists() or probe.is_symlink():
        if probe.is_symlink() or not probe.is_file() or not hdf5.looks_like_hdf5(probe):
            lock.release()
            raise InputError(f"`checkpoint`: {probe} exists and is not a temporary checkpoint of an earlier fit; "
                             "hpcfit will not touch it. Choose another checkpoint path")
    try:
        if probe.exists():
            os.remove(probe)                 # a stale write of a fit that died (we hold the lock)
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as exc:
        lock.release()
        raise InputError(f"`checkpoint`: cannot write {path} ({type(exc).__name__}: {exc.strerror or exc}); "
                         "the folder must exist and be writable") from None
    return lock


class CheckpointLock:
    """An exclusive ``flock`` on ``NAME.lock`` beside the checkpoint, held by rank 0 for the whole fit,
    so that a second live fit on the same path is refused instead of racing the first one's files."""

    def __init__(self, path: Path):
        self.path = hdf5.lock_path(path)
        self._fd = None
        if self.path.is_symlink() or (self.path.exists() and not _is_lock_file(self.path)):
            raise InputError(f"`checkpoint`: {self.path} exists and is not an hpcfit lock file; hpcfit will not touch "
                             "it. Choose another checkpoint path")
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(f"`checkpoint`: cannot write {path} (its lock file {self.path.name}: "
                             f"{exc.strerror or exc}); the folder must exist and be writable") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self._fd, 200).decode(errors="replace").strip() or "another process"
            os.close(self._fd)
            raise InputError(f"`checkpoint`: another fit is writing {path} right now (its lock {self.path} is held by "
                             f"{holder}); two fits must not share a checkpoint path: give this one its own") from None
        except OSError as exc:           # a file system without flock (some NFS mounts): go on, and say so
            warnings.warn(f"cannot lock {self.path} ({exc.strerror or exc}): a second fit on the same checkpoint "
                          "path would not be noticed", CheckpointWarning, stacklevel=5)
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.remove(self.path)            # still ours: we hold the lock while removing it
        except OSError:
            pass
        os.close(self._fd)                  # closing releases the flock
        self._fd = None


def _is_lock_file(path: Path) -> bool:
    """Empty (a lock being created) or ``pid N on HOST``: what CheckpointLock writes."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return False
    return text == "" or re.fullmatch(r"pid \d+ on \S+\n?", text) is not None
