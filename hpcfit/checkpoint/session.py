"""A fit's checkpointing: set up collectively, asked at every iteration boundary whether to write
and whether to stop, and closed at the end. Decisions come from the flags every rank agreed on in
the last reduction (:data:`FLAGS`, which the driver hands to every pass and back here) and from
iteration counts, so they are the same everywhere without a collective of their own."""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

from .._version import __version__
from ..errors import REQUEUE_EXIT_CODE, CheckpointWarning, FitError, InputError, Preempted, interrupted  # noqa: F401
from . import hdf5
from ..data.chunks import chunk_checksum
from .lock import claim
from .record import Checkpoint, compare, fingerprint_chunks
from .writer import CheckpointWriter


#: Flags that ride on every pass's single reduction, so that all ranks agree on them at no extra
#: collective: a stop signal seen on any rank, a checkpoint due by rank 0's clock, a checkpoint
#: write that failed on any rank. Summed: > 0 means raised somewhere.
FLAGS = ("stop", "interrupt", "checkpoint_due", "write_failed")

#: Rank 0 writes on a background thread (it makes no MPI call, so any MPI thread level will do).
#: Tests set it False to see a write's effect at the very next reduction.
WRITE_IN_BACKGROUND = True


class CheckpointSession:
    """Collective to build: fingerprints the data, reads the checkpoint to resume from (rank 0 reads,
    every rank checks), starts the writer and the stop-signal handlers."""

    def __init__(self, hc, opts, local, answer: dict, table, signals=None):
        self.hc, self.opts, self.table, self.answer = hc, opts, table, answer
        self.path = opts.checkpoint
        self.fingerprint = _fingerprint(hc, local)
        runs = hc.allgather((local.first_leaf, local.n_local))
        self._rows = np.array([(r, first, n, lo, hi - lo, 0) for r, ((first, n), (lo, hi))
                               in enumerate(zip(runs, local.point_runs))], dtype=np.int64)
        self.resumed: Checkpoint | None = self._load() if opts.resume else None
        self.submitted = 0               # checkpoints handed to the writer (the same count on every rank)
        self._reported = False           # a write failure was raised as an error
        self.carry: dict = {}            # values every checkpoint of this fit holds (the warm-up report)
        # (phase, iteration) of the last checkpoint: a resumed fit does not rewrite the one it read
        self._last = (None, 0) if self.resumed is None else (self.resumed.phase, self.resumed.iteration)
        self._last_time = time.monotonic()
        self.writer = self._start_writer() if self.path else None
        self.signals = signals             # the fit's StopSignals (its owner enters and leaves it)
        self.agreed = dict.fromkeys(FLAGS, False)   # what the last reduction agreed on
        self.final_failure: str | None = None       # a failure of the last writes (see finish)

    # -- setup --------------------------------------------------------------------------------

    def _load(self) -> Checkpoint | None:
        opts, hc = self.opts, self.hc
        source = self.path if opts.resume in (True, "auto") else opts.resume
        if source is None:
            raise InputError("`resume=True` needs `checkpoint` (the file to resume from), or pass "
                             "resume='path/to/checkpoint.h5'")

        def read_on_root():
            if not hc.is_root:
                return None
            try:
                return hdf5.read_latest(source)
            except FileNotFoundError as exc:
                if opts.resume == "auto":
                    return None
                raise InputError(f"`resume`: {exc}") from None
            except hdf5.CorruptCheckpoint as exc:
                raise InputError(f"`resume`: {exc}") from None

        found = hc.bcast(hc.agree(read_on_root))
        if found is None:
            self.table.line(f"no checkpoint at {source}: starting a new fit (resume='auto')")
            return None
        ckpt, used, notes = found
        for note in notes:
            warnings.warn(note, CheckpointWarning, stacklevel=4)
        try:
            compare(ckpt, self.answer, self.fingerprint, str(used))
        except InputError as exc:
            if not opts.resume_force:
                raise
            warnings.warn(f"resume_force=True: {exc}", CheckpointWarning, stacklevel=4)
        self.table.line(f"resuming from {used}: {ckpt.phase} at iteration {ckpt.iteration} "
                        f"(written by {len(ckpt.ranks)} rank(s), hpcfit {ckpt.version})")
        return ckpt

    def _start_writer(self) -> CheckpointWriter | None:
        hc, path = self.hc, Path(self.path)
        self._lock = hc.agree(lambda: claim(path) if hc.is_root else None)
        return CheckpointWriter(path, WRITE_IN_BACKGROUND) if hc.is_root else None

    def summary(self) -> dict:
        """For ``FitResult.info["checkpoint"]``: the same on every rank (after :meth:`finish`)."""
        kind = "none" if self.path is None else hdf5.WRITER
        resumed = None if self.resumed is None else {"phase": self.resumed.phase, "iteration": self.resumed.iteration}
        return {"path": self.path, "writer": kind, "written": self.submitted, "resumed_from": resumed,
                "failure": self.final_failure}

    def finish(self) -> None:
        """Collective, at the normal end of a fit: wait for rank 0's last writes, so that when the fit
        returns the checkpoint is on disk for every rank; a failure of them (the fit itself has
        finished) becomes ``summary()["failure"]`` everywhere and a warning on rank 0."""
        if self.path is None:
            return
        if self.writer is not None:
            self.writer.flush()
        self.final_failure = self.hc.bcast(None if self.writer is None else self.writer.failure())
        if self.final_failure is not None and self.hc.is_root and not self._reported:
            warnings.warn(self.final_failure, CheckpointWarning, stacklevel=3)
        self._reported = True

    # -- at iteration boundaries --------------------------------------------------------------

    def local_flags(self) -> tuple[float, ...]:
        """This rank's :data:`FLAGS`, to ride on the next pass's reduction (local)."""
        stop = self.path is not None and self.signals is not None and self.signals.received is not None
        interrupt = self.signals is not None and self.signals.interrupted
        seconds = self.opts.checkpoint_seconds
        due = bool(self.hc.is_root and seconds is not None and time.monotonic() - self._last_time >= seconds)
        failed = self.writer is not None and self.writer.failure() is not None
        return (float(stop), float(interrupt), float(due), float(failed))

    def observe(self, summed) -> None:
        """After every pass, on every rank: the flags as the reduction summed them (> 0 means raised
        somewhere); after the first pass over all the data, the checksums of every chunk."""
        self.agreed = {name: bool(value > 0) for name, value in zip(FLAGS, summed)}
        tracked = getattr(self, "_tracked", None)
        if tracked is not None and "all_checksums" not in self.fingerprint and sum(tracked.counters()) >= 1:
            self._take_all_checksums(tracked.chunk_checksums)

    def track(self, evaluator) -> None:
        """Have ``evaluator`` (the full data's) checksum every chunk it reads: after its first pass they
        go into every later checkpoint and are checked against the resumed one's — a checksum over
        all the data that costs no extra read."""
        evaluator.track_checksums()
        self._tracked = evaluator

    def _take_all_checksums(self, mine: dict) -> None:
        """Collective (every rank reaches it after the same pass): gather the chunks' checksums;
        refuse a resume whose checkpoint recorded others."""
        merged = {}
        for part in self.hc.allgather({str(k): int(v) for k, v in mine.items()}):
            merged.update(part)
        self.fingerprint["all_checksums"] = merged
        before = {} if self.resumed is None else self.resumed.fingerprint.get("all_checksums", {})
        changed = [int(c) for c in sorted(set(before) & set(merged), key=int) if before[c] != merged[c]]
        if changed:
            size = int(self.fingerprint["chunk_size"])
            message = (f"resume refused: the data differ from those of checkpoint {self.path}: the checksums of "
                       f"chunk(s) {changed[:20]}{' ...' if len(changed) > 20 else ''} (of {len(merged)}) changed "
                       f"(the first: global points [{changed[0] * size}, {(changed[0] + 1) * size})); continuing "
                       "would mix two data sets")
            if not self.opts.resume_force:
                raise InputError(message + ". Pass resume_force=True to resume anyway.")
            warnings.warn(f"resume_force=True: {message}", CheckpointWarning, stacklevel=4)

    def decide(self, phase: str, iteration: int, stride: int = 1) -> tuple[bool, bool]:
        """(write, stop) at a boundary; the same on every rank that calls it with the same arguments.
        ``stride``: iterations that count as one for ``checkpoint_every`` (phase 1 passes its steps
        between progress lines: its steps are cheap, a checkpoint every ten steps would not be)."""
        if self.path is None:
            return False, False
        agreed, every = self.agreed, self.opts.checkpoint_every
        last_phase, last_iteration = self._last
        since = iteration - (last_iteration if last_phase == phase else 0)
        due = agreed["checkpoint_due"] or (every is not None and since >= every * stride)
        stop = agreed["stop"] or agreed["interrupt"]
        return bool(stop or due), stop

    def make(self, phase: str, iteration: int, arrays: dict, values: dict, history: np.ndarray,
             cursor: int) -> Checkpoint:
        rows = self._rows.copy()
        rows[:, -1] = cursor
        return Checkpoint(phase, int(iteration), arrays, {**self.carry, **values}, history, self.answer,
                          self.fingerprint, rows, __version__, {"written_unix": time.time()})

    def commit(self, ckpt: Checkpoint | None, stop: bool) -> None:
        """Collective in effect (every rank, same arguments): surface a failed write, queue ``ckpt``,
        and on a stop request wait for it and end the fit with :class:`~hpcfit.errors.Preempted`."""
        if self.agreed["write_failed"]:
            self._raise_failure()
        if ckpt is not None:
            self.submitted += 1
            self._last, self._last_time = (ckpt.phase, ckpt.iteration), time.monotonic()
            if self.writer is not None:
                self.writer.submit(ckpt)
        if stop:
            if self.writer is not None:
                self.writer.flush()
            self._raise_failure(always_collective=True)
            if self.signals is not None:
                self.signals.settled()
            if self.agreed["interrupt"]:
                self.table.line(f"interrupted (SIGINT): checkpoint {self.path} written ({ckpt.phase}, iteration "
                                f"{ckpt.iteration}); rerun with resume to go on from it")
                raise interrupted(str(self.path), ckpt.phase, ckpt.iteration)
            name = (self.signals.received if self.signals is not None else None) or "a stop signal on another rank"
            self.table.line(f"stopping on {name}: checkpoint {self.path} written ({ckpt.phase}, iteration "
                            f"{ckpt.iteration}); exit code {REQUEUE_EXIT_CODE} asks for a requeue")
            raise Preempted(name, str(self.path), ckpt.phase, ckpt.iteration)

    def _raise_failure(self, always_collective: bool = False) -> None:
        message = None if self.writer is None else self.writer.failure()
        if always_collective or self.agreed["write_failed"]:
            self._reported = True
            self.hc.raise_if_any(None if message is None else FitError(message))

    def close(self) -> None:
        """Local, also on an error path: flush and stop the writer, restore the signal handlers,
        release the lock. A write failure not yet reported is a warning."""
        if self.writer is not None:
            self.writer.close()
            if self.writer.failure() and not self._reported:
                warnings.warn(self.writer.failure(), CheckpointWarning, stacklevel=3)
        if getattr(self, "_lock", None) is not None:
            self._lock.release()
            self._lock = None


def _fingerprint(hc, local) -> dict:
    """n, shapes, chunking and checksums of a fixed set of global chunks (independent of the rank count)."""
    def mine():
        first = local.first_leaf
        return {str(c): chunk_checksum(local.read(c - first)) for c in fingerprint_chunks(local.n_leaves)
                if first <= c < first + local.n_local}

    checksums = {}
    for part in hc.allgather(hc.agree(mine)):
        checksums.update(part)
    return {"n_points": int(local.n_points), "x_shape": list(local.x_shape), "chunk_size": int(local.chunk_size),
            "n_chunks": int(local.n_leaves), "source": str(local.describe), "checksums": checksums}
