"""The background checkpoint writer: the solver hands over a checkpoint and goes on computing.

Only rank 0 has a writer. A bounded queue (:data:`QUEUE_DEPTH`): if writes fall behind,
:meth:`submit` waits for room rather than dropping a checkpoint (a stop must find the one it asked
for written). A failure is kept and reported by :meth:`failure`; the session turns it into a
collective error through the next pass's reduction.
"""
from __future__ import annotations

import queue
import threading

from . import hdf5

QUEUE_DEPTH = 2
_STOP = object()


class CheckpointWriter:
    """Writes checkpoints to ``path`` on a thread; ``threaded=False`` writes in the caller (MPI
    without thread support)."""

    def __init__(self, path, threaded: bool = True):
        self.path = path
        self.written = 0
        self._error: str | None = None
        self._queue: queue.Queue | None = None
        self._thread = None
        if threaded:
            self._queue = queue.Queue(maxsize=QUEUE_DEPTH)
            self._thread = threading.Thread(target=self._run, name="hpcfit-checkpoint", daemon=True)
            self._thread.start()

    def submit(self, ckpt) -> None:
        if self._queue is None:
            self._write(ckpt)
        else:
            self._queue.put(ckpt)

    def flush(self) -> None:
        """Wait until every submitted checkpoint is written (or has failed)."""
        if self._queue is not None:
            self._queue.join()

    def failure(self) -> str | None:
        """The first write error, as a message naming the file, or None."""
        return self._error

    def close(self) -> None:
        """Flush and stop the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = self._queue = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                self._write(item)
            finally:
                self._queue.task_done()

    def _write(self, ckpt) -> None:
        if self._error is not None:
            return          # after a failure the previous good file stays as it is
        try:
            hdf5.write(self.path, ckpt)
            self.written += 1
        except Exception as exc:  # noqa: BLE001 - reported collectively by the session
            self._error = (f"writing checkpoint {self.path} failed: {type(exc).__name__}: {exc}. The last good "
                           f"checkpoint, if any, is unchanged")
