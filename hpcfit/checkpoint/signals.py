"""Stop requests: SIGUSR1 (SLURM's ``--signal``) and SIGTERM (preemption, the time limit,
``scancel``) stop a checkpointed fit for a requeue; SIGINT (Ctrl-C) interrupts any fit. The
handlers only raise a flag; the fit agrees on it over its next reduction (every rank, waiting in a
collective or computing, sees the same summed flag) and stops at the following iteration
boundary, after writing its checkpoint when it has one.

A rank can only see the flag in a collective, so a rank that stopped on its own (a local part of
phase 1) could leave the others waiting: a SIGINT therefore also arms a watchdog which, under MPI,
ends the whole job with exit code 130 if the fit has not stopped collectively in time.
"""
from __future__ import annotations

import signal
import threading
import time

#: Signals that stop a checkpointed fit for a requeue (exit code 75).
PREEMPT_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)
#: The exit code of an interrupted run: 128 + SIGINT, what shells and ``python -m mpi4py`` use.
INTERRUPT_EXIT_CODE = 128 + int(signal.SIGINT)
#: Seconds the watchdog allows after a SIGINT, on top of twice the longest pass seen so far.
GRACE_SECONDS = 8.0

_active: list["StopSignals"] = []        # innermost last; handlers are process-wide, so is this
_longest_pass = 0.0


def note_pass(seconds: float) -> None:
    """The driver reports each pass's duration: the watchdog's grace grows with the slowest one."""
    global _longest_pass
    _longest_pass = max(_longest_pass, seconds)


def interrupt_requested() -> bool:
    """Whether a SIGINT reached this process during the active fit (local, not agreed)."""
    return bool(_active) and _active[-1].interrupted


class StopSignals:
    """While active, SIGINT — and with ``preempt`` SIGUSR1 and SIGTERM — set :attr:`received`
    instead of ending the process.

    ``abort(code)``, when given (a fit under MPI), is what the watchdog calls once
    :data:`GRACE_SECONDS` plus twice the longest pass have gone by after a SIGINT without
    :meth:`settled`. Handlers can only be installed from the main thread; elsewhere this does
    nothing (documented).
    """

    def __init__(self, preempt: bool = True, abort=None):
        self.received: str | None = None
        self.interrupted = False
        self._signals = (PREEMPT_SIGNALS if preempt else ()) + (signal.SIGINT,)
        self._abort = abort
        self._watchdog: threading.Timer | None = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self._signals:
                self._previous[sig] = signal.signal(sig, self._handle)
            _active.append(self)
        return self

    def _handle(self, signum, _frame) -> None:
        self.received = self.received or signal.Signals(signum).name
        if signum == signal.SIGINT and not self.interrupted:
            self.interrupted = True
            if self._abort is not None:
                self._watchdog = threading.Timer(GRACE_SECONDS + 2.0 * _longest_pass, self._give_up)
                self._watchdog.daemon = True
                self._watchdog.start()

    def _give_up(self) -> None:
        import sys

        print(f"hpcfit: interrupted, and the ranks did not stop together within "
              f"{GRACE_SECONDS + 2.0 * _longest_pass:.0f} s: ending the job (exit code {INTERRUPT_EXIT_CODE})",
              file=sys.stderr, flush=True)
        time.sleep(0.1)
        self._abort(INTERRUPT_EXIT_CODE)

    def settled(self) -> None:
        """Every rank agreed on the stop and leaves together: the watchdog is not needed."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def __exit__(self, exc_type=None, exc=None, tb=None) -> None:
        """Restore the previous handlers — except, after a stop request, SIGUSR1 and SIGTERM: the
        process is on its way out with exit code 75 (:class:`~hpcfit.errors.Preempted`), and a
        second signal (SLURM and schedulers often send SIGTERM twice, or SIGUSR1 then SIGTERM) must
        not turn that into a kill by the default action. They are ignored from then on: SIG_IGN, not
        a Python handler, since Python resets its own handlers to the default while the interpreter
        shuts down. SIGINT gets its previous handler back, so a second Ctrl-C works as usual."""
        for sig, handler in self._previous.items():
            keep = self.received is None or sig == signal.SIGINT
            signal.signal(sig, handler if keep else signal.SIG_IGN)
        self._previous.clear()
        if exc_type is None or getattr(exc, "agreed", True):
            self.settled()               # the fit ended the same way on every rank
        if self in _active:
            _active.remove(self)
