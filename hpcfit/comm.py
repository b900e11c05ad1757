"""Every collective of hpcfit lives here.

A :class:`Communicator` wraps either nothing (serial; mpi4py need not be installed) or a
duplicate of the user's mpi4py communicator, so hpcfit's messages never mix with the user's.
Each method says whether it is collective. Errors found on one rank travel with the next
collective so that every rank raises the same exception and none is left waiting.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .errors import FitError, HpcfitError, InputError

_ERROR_TYPES = {"InputError": InputError, "FitError": FitError}
# Tag of send_array/recv_array; the duplicated communicator carries no other point-to-point traffic.
_ARRAY_TAG = 17


def _check_communicator(comm) -> None:
    """Local, before the first collective: what cannot work is refused the same way on every rank
    (an intercommunicator would pass a duck test and hang in the first broadcast)."""
    if not all(hasattr(comm, a) for a in ("Dup", "Get_rank", "Allreduce", "Is_inter")):
        raise InputError(f"`comm` must be an mpi4py communicator (an intracommunicator such as MPI.COMM_WORLD) or None; "
                         f"got {type(comm).__name__}")
    from mpi4py import MPI

    if comm == MPI.COMM_NULL:
        raise InputError("`comm` is MPI.COMM_NULL (this process is not in the communicator it was given); pass an "
                         "intracommunicator that contains it, such as MPI.COMM_WORLD, or None")
    if comm.Is_inter():
        raise InputError("`comm` is an intercommunicator; hpcfit needs an intracommunicator (e.g. MPI.COMM_WORLD, "
                         "or comm.Merge() of the intercommunicator)")


#: Communicators this process duplicated (a run duplicates the user's once and passes the view down).
DUPLICATES = 0

_SETUP_LOCKS: dict[int, threading.RLock] = {}
_SETUP_LOCKS_GUARD = threading.Lock()


def _communicator_lock(comm) -> threading.RLock:
    """The lock of one user communicator in this process. MPI requires the collectives on one
    communicator to come in the same order on every rank, which two threads calling hpcfit at once
    cannot promise (MPICH aborts: "internal_Comm_dup: Message truncated"): hpcfit's use of a
    communicator, from its Dup to its Free, is held under this lock, so concurrent fits on it run
    one after the other. Re-entrant: a fit may open a second view of the same communicator."""
    key = comm.py2f()
    with _SETUP_LOCKS_GUARD:
        return _SETUP_LOCKS.setdefault(key, threading.RLock())


class Communicator:
    """hpcfit's view of a communicator. ``Communicator(None)`` is serial.

    Not collective to build beyond the Dup; holds the communicator's lock (see
    :func:`_communicator_lock`) until :meth:`free`, so views of one communicator made by several
    threads of a process are used one at a time. ``Communicator(hc)`` of a Communicator is ``hc``'s
    own duplicate, not a new one (a run makes one and passes it down: no Dup, no Free, no lock)."""

    def __init__(self, comm=None):
        self._lock = None
        self._owned = not isinstance(comm, Communicator)
        if not self._owned:
            self._comm, self.rank, self.size = comm._comm, comm.rank, comm.size
            return
        if comm is not None:
            _check_communicator(comm)
            self._lock = _communicator_lock(comm)
            self._lock.acquire()
        try:
            self._comm = None if comm is None else comm.Dup()
            if comm is not None:
                global DUPLICATES
                DUPLICATES += 1
        except BaseException:
            self._release()
            raise
        self.rank = 0 if comm is None else self._comm.Get_rank()
        self.size = 1 if comm is None else self._comm.Get_size()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def free(self) -> None:
        """Release the duplicated communicator (collective); nothing for a view of another Communicator."""
        if self._owned and self._comm is not None:
            try:
                self._comm.Free()
            finally:
                self._comm = None
                self._release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()

    # -- collectives -----------------------------------------------------------------------

    def allgather(self, obj: Any) -> list:
        """Collective: every rank gets the list of every rank's ``obj`` (small Python objects)."""
        if self._comm is None:
            return [obj]
        return self._comm.allgather(obj)

    def bcast(self, obj: Any) -> Any:
        """Collective: rank 0's ``obj`` on every rank."""
        if self._comm is None:
            return obj
        return self._comm.bcast(obj, root=0)

    def on_root(self, fn, *args, **kwargs):
        """Collective: ``fn(*args, **kwargs)`` on rank 0 (reading a file once, say), its result on
        every rank; if it raises, every rank raises (as :meth:`agree`)."""
        return self.bcast(self.agree(lambda: fn(*args, **kwargs) if self.is_root else None))

    def raise_if_any(self, local_error: HpcfitError | None) -> None:
        """Collective: if any rank has an error, every rank raises the first one (by rank).

        Call it after local checks and before the next collective that depends on them.
        """
        errors = self.allgather(None if local_error is None else (type(local_error).__name__, str(local_error)))
        for rank, item in enumerate(errors):
            if item is not None:
                kind, message = item
                if self.size > 1:
                    message = f"{message} [found on rank {rank}]"
                raise _ERROR_TYPES.get(kind, FitError)(message)

    def agree(self, fn, *args, **kwargs):
        """Collective: run a local step on every rank; if it raises on any rank, all raise.

        hpcfit's own errors keep their type; a TypeError/ValueError becomes an InputError and
        anything else (MemoryError, OSError, ...) a FitError, each naming the original type.
        """
        result, error = None, None
        try:
            result = fn(*args, **kwargs)
        except HpcfitError as exc:
            error = exc
        except (TypeError, ValueError) as exc:
            error = InputError(f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - any failure must reach every rank
            error = FitError(f"{type(exc).__name__}: {exc}")
        self.raise_if_any(error)
        return result

    def reduce_slots(self, slots: np.ndarray, local_error: HpcfitError | None,
                     flags=()) -> tuple[np.ndarray, np.ndarray]:
        """Collective: the single reduction of a pass; returns (reduced slots, summed flags).

        ``slots`` is a (n_slots, m) float64 array in which this rank filled only its own rows
        (others are zero), so the element-wise sum reproduces each row exactly: the result does
        not depend on the reduction order MPI picks. ``flags`` (the same length on every rank)
        ride in the same buffer, so callers agree on them at no extra collective. An error on any
        rank is raised on all.
        """
        extra = np.zeros(1 + len(flags))
        extra[0] = 0.0 if local_error is None else 1.0
        extra[1:] = flags
        if self._comm is None:
            if local_error is not None:
                raise local_error
            return slots, extra[1:]
        from mpi4py import MPI

        k = slots.size
        send = np.empty(k + extra.size)
        send[:k] = slots.ravel()
        send[k:] = extra
        recv = np.empty_like(send)
        self._comm.Allreduce(send, recv, op=MPI.SUM)
        if recv[k] > 0:
            self.raise_if_any(local_error)
        return recv[:k].reshape(slots.shape), recv[k + 1:]

    @property
    def mpi(self):
        """The (duplicated) mpi4py communicator underneath, for h5py's collective "mpio" driver in
        the per-point output writer; None when serial."""
        return self._comm

    def abort_job(self, code: int) -> None:
        """Not collective: end every process of the job with exit code ``code`` (MPI_Abort on
        COMM_WORLD); the last resort when the ranks cannot stop together."""
        from mpi4py import MPI

        MPI.COMM_WORLD.Abort(code)

    def barrier(self) -> None:
        """Collective: wait until every rank is here."""
        if self._comm is not None:
            self._comm.Barrier()

    # -- point to point (not collective) -----------------------------------------------------

    def send_array(self, array: np.ndarray, dest: int = 0) -> None:
        """Point-to-point, not collective: send a float64 array to rank ``dest``, which must post the matching
        :meth:`recv_array` (same shape). May block until it does (large messages are not buffered); messages
        from one rank arrive in the order they were sent."""
        self._require_mpi("send_array")
        from mpi4py import MPI

        self._comm.Send([np.ascontiguousarray(array, dtype=np.float64), MPI.DOUBLE], dest=dest, tag=_ARRAY_TAG)

    def recv_array(self, out: np.ndarray, source: int) -> np.ndarray:
        """Point-to-point, not collective: receive the array that rank ``source`` sends with :meth:`send_array`
        into ``out`` (C-contiguous float64 of the sender's shape, overwritten) and return it."""
        self._require_mpi("recv_array")
        from mpi4py import MPI

        if out.dtype != np.float64 or not out.flags.c_contiguous or not out.flags.writeable:
            raise InputError("recv_array needs a writeable C-contiguous float64 buffer")
        self._comm.Recv([out, MPI.DOUBLE], source=source, tag=_ARRAY_TAG)
        return out

    def _require_mpi(self, what: str) -> None:
        if self._comm is None:
            raise FitError(f"{what} needs an MPI communicator; this one is serial (a single rank has no peer)")

    def check_same(self, values: dict[str, Any], hint: str) -> None:
        """Collective: raise InputError on every rank naming the first entry of ``values`` that
        differs between ranks. Values must be comparable with ``==`` (bytes, tuples, strings)."""
        gathered = self.allgather(values)
        for name in values:
            for rank, other in enumerate(gathered):
                if other.get(name) != gathered[0].get(name):
                    raise InputError(f"`{name}` differs between ranks (rank 0 and rank {rank} passed different "
                                     f"values); {hint}")


def world():
    """MPI.COMM_WORLD when running under an MPI launcher with more than one rank, else None (serial
    use needs no MPI at all)."""
    try:
        from mpi4py import MPI
    except Exception:  # noqa: BLE001 - mpi4py missing or its MPI library not loadable
        return None
    return MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None


def world_rank() -> int:
    comm = world()
    return 0 if comm is None else comm.Get_rank()


def exit_job(code: int) -> None:
    """Not collective in effect, but every rank must call it: end the process with ``code`` so that
    the launcher reports it.

    Under MPI with several ranks, a non-zero code must reach the launcher intact:

    * under MPICH's Hydra (``mpiexec``; it sets ``HYDI_CONTROL_FD``) rank 0 alone delivers it with
      ``MPI_Abort(code)`` once every rank is here. Plain exits are not reliable there: Hydra reports
      the first exit's code and SIGKILLs processes exiting a moment later, then reports 9
      (measured: 3 of 10 three-rank runs). MPICH prints one line for the abort, after hpcfit's own;
    * under ``srun`` (and other launchers) every rank finalizes MPI and exits with the code: srun
      reports the largest one, while an abort makes it kill the step (no 75, so no requeue)."""
    import os
    import sys

    if code and "mpi4py.MPI" in sys.modules:
        from mpi4py import MPI

        if MPI.Is_initialized() and not MPI.Is_finalized():
            comm = MPI.COMM_WORLD
            sys.stdout.flush()
            sys.stderr.flush()
            if comm.Get_size() == 1:
                MPI.Finalize()
                os._exit(code)
            comm.Barrier()
            if "HYDI_CONTROL_FD" not in os.environ:
                MPI.Finalize()
                os._exit(code)
            if comm.Get_rank() == 0:
                comm.Abort(code)
            comm.Barrier()              # never completes: rank 0's abort ends every rank
    sys.exit(code)


def abort_after(seconds: float, code: int) -> None:
    """Not collective: under MPI with several ranks, end the job with ``code`` in ``seconds`` unless
    the process has exited by then (a daemon timer): a rank that leaves on its own must not leave the
    others waiting in a collective forever. Does nothing serially."""
    import sys
    import threading

    if "mpi4py.MPI" not in sys.modules:
        return
    from mpi4py import MPI

    if not MPI.Is_initialized() or MPI.Is_finalized() or MPI.COMM_WORLD.Get_size() == 1:
        return
    timer = threading.Timer(seconds, MPI.COMM_WORLD.Abort, args=(code,))
    timer.daemon = True
    timer.start()


def mpi_summary() -> dict:
    """Facts about the MPI installation for ``python -m hpcfit info`` (not collective)."""
    try:
        from mpi4py import MPI
    except Exception as exc:  # mpi4py missing or its MPI library not loadable
        return {"mpi4py": f"unavailable ({exc})"}
    import mpi4py

    return {
        "mpi4py": mpi4py.__version__,
        "MPI library": MPI.Get_library_version().strip().splitlines()[0],
        "MPI standard": "%d.%d" % MPI.Get_version(),
        "world size": MPI.COMM_WORLD.Get_size(),
        "world rank": MPI.COMM_WORLD.Get_rank(),
    }
