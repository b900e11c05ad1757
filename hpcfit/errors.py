"""Exceptions raised by hpcfit. Every one is raised identically on every rank of a fit."""
from __future__ import annotations


class HpcfitError(Exception):
    """Base class of hpcfit's errors."""


class InputError(HpcfitError, ValueError):
    """A user-supplied argument, array, option or file is invalid; the message names it."""


class FitError(HpcfitError, RuntimeError):
    """The fit could not continue (for example the model became non-finite at an accepted point)."""


class RankDeficientWarning(UserWarning):
    """JᵀWJ is rank deficient at the solution: some parameter combinations are not determined."""


#: Exit code of a fit stopped by SIGUSR1/SIGTERM after writing its checkpoint (EX_TEMPFAIL of
#: sysexits.h: "try again later"). A batch script requeues the job on it; see slurm/fit.sbatch.
REQUEUE_EXIT_CODE = 75


class Preempted(SystemExit):
    """The fit stopped on SIGUSR1 or SIGTERM after writing a checkpoint; rerunning with
    ``resume=True`` continues it. A :class:`SystemExit`, so an uncaught one ends the process with
    :data:`REQUEUE_EXIT_CODE` (also under ``python -m mpi4py``) instead of a traceback."""

    def __init__(self, signal_name: str, checkpoint: str, phase: str, iteration: int):
        super().__init__(REQUEUE_EXIT_CODE)
        self.signal_name, self.checkpoint, self.phase, self.iteration = signal_name, checkpoint, phase, iteration

    def __str__(self) -> str:
        return (f"stopped by {self.signal_name} in {self.phase} at iteration {self.iteration}; checkpoint "
                f"{self.checkpoint}; exit code {REQUEUE_EXIT_CODE}")



def interrupted(checkpoint: str | None = None, phase: str | None = None, iteration: int | None = None,
                agreed: bool = True) -> KeyboardInterrupt:
    """The exception of a fit stopped on SIGINT (Ctrl-C), on every rank together, after writing its
    checkpoint when it has one; rerunning with ``resume`` continues from it. A plain
    :class:`KeyboardInterrupt`, as Ctrl-C is in Python (a subclass would make an uncaught one exit
    with 1 instead of by SIGINT); ``python -m hpcfit fit`` exits with 130. Its attributes:
    ``checkpoint`` (None: none was configured), ``phase``, ``iteration`` and ``agreed`` (every rank
    raised it at the same point; False: this rank stopped on its own)."""
    where = ("" if phase is None else f" in {phase}") + ("" if iteration is None else f" at iteration {iteration}")
    kept = f"; checkpoint {checkpoint}" if checkpoint else "; no checkpoint was configured"
    exc = KeyboardInterrupt(f"hpcfit: interrupted by SIGINT{where}{kept}")
    exc.checkpoint, exc.phase, exc.iteration, exc.agreed = checkpoint, phase, iteration, agreed
    return exc


class CheckpointWarning(UserWarning):
    """Resume used the previous checkpoint, was forced past a mismatch, or a final write failed."""
