"""An HDF5 file written piece by piece and kept only when every piece is there (rank 0 only).

Shared by the beamline-layout writers (one map per bin) and the stream writer (one angle's slice
at a time), so a producer never holds more than one piece and a failure never leaves a file that
a reader would take for complete.
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py

from ..errors import InputError


class PiecewiseFile:
    """Subclasses create their datasets in ``_setup(f)`` and mark pieces done in ``self._todo``.

    ``final``: the file's name; ``temporary``: where it is written until :meth:`close` renames it
    (None: written in place).
    """

    piece = "piece"

    def __init__(self, final: Path, temporary: Path | None, pieces, setup):
        self.path = Path(final)
        self._write_path = Path(temporary) if temporary is not None else self.path
        self._todo = list(pieces)
        self._n_pieces = len(self._todo)
        self._f = None
        try:
            self._f = h5py.File(self._write_path, "w")
            setup(self._f)
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError):
                raise InputError(f"cannot write {self.path}: {exc}") from None
            raise

    def _file(self) -> h5py.File:
        if self._f is None:
            raise InputError(f"{self.path} is already closed")
        return self._f

    def _done(self, piece) -> None:
        self._todo.remove(piece)

    def close(self) -> Path:
        """Finish the file; an error (and no file) if a piece was not written. Idempotent."""
        if self._f is None:
            return self.path
        if self._todo:
            missing = list(self._todo)
            self.abort()
            raise InputError(f"{self.path}: {len(missing)} of {self._n_pieces} {self.piece}s were not written "
                             f"({missing[:16]}); the file is not kept")
        try:
            self._f.close()
            self._f = None
            if self._write_path != self.path:
                os.replace(self._write_path, self.path)
        except OSError as exc:
            self.abort()
            raise InputError(f"cannot write {self.path}: {exc}") from None
        return self.path

    def abort(self) -> None:
        """Close and remove what was written (a temporary file, or the file written in place)."""
        if self._f is not None:
            try:
                self._f.close()
            finally:
                self._f = None
        self._write_path.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.close()
        else:
            self.abort()
