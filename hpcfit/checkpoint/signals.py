"""Stop requests from the batch system: SIGUSR1 (SLURM's ``--signal``) and SIGTERM (preemption, the
time limit, ``scancel``). The handler only raises a flag; the fit agrees on it over its next
reduction and stops at the following iteration boundary, after writing a checkpoint."""
from __future__ import annotations

import signal
import threading

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class StopSignals:
    """While active, SIGUSR1 and SIGTERM set :attr:`received` instead of ending the process.

    Handlers can only be installed from the main thread; elsewhere this does nothing (documented).
    """

    def __init__(self):
        self.received: str | None = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
        self.received = self.received or signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        """Restore the previous handlers — unless a stop was received: then the process is on its
        way out with exit code 75 (:class:`~hpcfit.errors.Preempted`), and a second signal (SLURM
        and schedulers often send SIGTERM twice, or SIGUSR1 then SIGTERM) must not turn that into
        a kill by the default action. They are ignored from then on: SIG_IGN, not a Python handler,
        since Python resets its own handlers to the default while the interpreter shuts down."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if self.received is None else signal.SIG_IGN)
        self._previous.clear()
