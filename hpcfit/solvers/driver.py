"""The one loop every solver runs in, over any evaluator (the full data or phase 1's sample).

Per turn: rank 0 attaches a checkpoint to its command when the solver is at a boundary and one is
due; the command is broadcast; every rank commits the checkpoint (and stops on an agreed signal);
every rank runs the evaluation the command asks for, which ends in the pass's single reduction
(carrying the checkpoint session's flags); rank 0's solver turns the reduced values into the next
command. Solvers never call MPI and keep their state explicit and immutable, so the checkpoint is
the solver's state plus the evaluator's counters.

What a solver and an evaluator provide is :class:`Solver` and :class:`Evaluator`; LM and Adam
are solvers, the pass evaluator (all the data, or phase 1's sample) and the warm-up's point
evaluator are evaluators. Whether a phase starts or resumes is decided here (:func:`run`).
"""
from __future__ import annotations

import time
from typing import Any, NamedTuple, Protocol

from ..checkpoint.signals import interrupt_requested, note_pass
from ..errors import FitError, InputError, interrupted


class Command(NamedTuple):
    """Rank 0's decision, broadcast before every evaluation: what all ranks do next."""

    kind: str                 # an evaluation the evaluator knows ("jacobian", "cost", "gradient", "loss"),
    u: Any = None             # "stop" (payload: the solver's outcome) or "error" (payload: (type, message))
    payload: Any = None
    save: Any = None          # a Checkpoint to write before going on
    stop: bool = False        # after writing it, stop (a stop signal was agreed)


class Solver(Protocol):
    """Rank 0's solver: explicit, immutable states; never calls MPI."""

    def step(self, state, cmd: Command, result) -> tuple[Any, Command]:
        """The next state and command from an evaluation's reduced result."""

    def boundary(self, state, cmd: Command) -> tuple[str, int, int, bool] | None:
        """(phase, iteration, stride, always) where a checkpoint may be written, else None."""

    def snapshot(self, state) -> tuple[dict, dict, Any, int]:
        """(arrays, values, history rows, cursor): what a checkpoint holds of the state."""

    def restore(self, arrays: dict, values: dict, rows) -> tuple[Any, Command]:
        """Inverse of :meth:`snapshot`: the state and the command to go on with."""


class Evaluator(Protocol):
    """Evaluations over the data (collective: each ends in one reduction carrying ``flags``)."""

    comm: Any

    def evaluate(self, cmd: Command, flags=()) -> Any:
        """The evaluation ``cmd`` asks for at ``cmd.u``; ``result.flags`` are the flags summed over ranks."""

    def counters(self) -> tuple:
        """What a checkpoint records of the evaluator (passes or steps so far)."""

    def restore_counters(self, counters) -> None:
        """Inverse of :meth:`counters`, on resume."""


def guarded(fn, state, *args):
    """Run a rank-0 decision ``fn(state, *args) -> (state, command)``; an exception becomes an "error"
    command so no rank is left waiting."""
    try:
        return fn(state, *args)
    except Exception as exc:  # noqa: BLE001 - any failure must reach every rank
        kind = "InputError" if isinstance(exc, InputError) else "FitError"
        return state, Command("error", payload=(kind, f"rank 0's step computation failed: "
                                                      f"{type(exc).__name__}: {exc}"))


def _attach_checkpoint(state, cmd: Command, checkpoints, solver, evaluator):
    """Rank 0, at a solver boundary: attach a checkpoint (and the stop) to the command when due."""
    where = solver.boundary(state, cmd)
    if where is None:
        return state, cmd
    phase, iteration, stride, always = where
    write, stop = checkpoints.decide(phase, iteration, stride)
    write, stop = write or always, stop and cmd.kind != "stop"
    if not write:
        return state, cmd
    arrays, values, history, cursor = solver.snapshot(state)
    values = {**values, "counters": list(evaluator.counters())}
    return state, cmd._replace(save=checkpoints.make(phase, iteration, arrays, values, history, cursor), stop=stop)


def evaluate(comm, evaluator, cmd: Command, checkpoints=None):
    """Collective: one evaluation, with the stop flags riding on its reduction. Without a checkpoint
    to write first, an interrupt (SIGINT) agreed by that reduction ends the fit here on every rank."""
    flags = (float(interrupt_requested()),) if checkpoints is None else checkpoints.local_flags()
    t0 = time.perf_counter()
    result = evaluator.evaluate(cmd, flags)
    note_pass(time.perf_counter() - t0)
    if checkpoints is not None:
        checkpoints.observe(result.flags)
        stop = checkpoints.path is None and checkpoints.agreed["interrupt"]
    else:
        stop = bool(result.flags[0] > 0)
    if stop:             # summed over the ranks of ``comm``: together, unless comm is a rank's own
        raise interrupted(agreed=comm.size > 1)
    return result


def resumed(checkpoints, phase: str):
    """The checkpoint to resume ``phase`` from (the session's, when it was written in that phase),
    else None: where a fit decides between starting a phase and resuming it."""
    ckpt = getattr(checkpoints, "resumed", None)
    return ckpt if ckpt is not None and ckpt.phase == phase else None


def run(comm, solver: Solver, evaluator: Evaluator, phase: str, begin, checkpoints=None):
    """Collective: ``solver`` over ``evaluator`` until it stops — from the checkpoint of ``phase``
    when the fit resumes one (the evaluator's counters and rank 0's state restored), else from
    ``begin()`` → rank 0's ``(state, command)`` (collective: it may evaluate the start)."""
    ckpt = resumed(checkpoints, phase)
    if ckpt is None:
        state, cmd = begin()
    else:
        evaluator.restore_counters(ckpt.values["counters"])
        state, cmd = (guarded(lambda _: solver.restore(ckpt.arrays, ckpt.values, ckpt.history), None)
                      if comm.is_root else (None, None))
    return drive(comm, solver, evaluator, state, cmd, checkpoints)


def drive(comm, solver: Solver, evaluator: Evaluator, state, cmd: Command | None, checkpoints=None):
    """Collective: run ``solver`` over ``evaluator`` from rank 0's ``(state, cmd)`` (ignored on other
    ranks) until it stops; every rank returns the solver's outcome (the "stop" command's payload)."""
    while True:
        if comm.is_root and checkpoints is not None and cmd.kind != "error":
            state, cmd = guarded(_attach_checkpoint, state, cmd, checkpoints, solver, evaluator)
        cmd = comm.bcast(cmd if comm.is_root else None)
        if checkpoints is not None:
            checkpoints.commit(cmd.save, cmd.stop)
        if cmd.kind == "stop":
            return cmd.payload
        if cmd.kind == "error":
            kind, message = cmd.payload
            raise (InputError if kind == "InputError" else FitError)(message)
        result = evaluate(comm, evaluator, cmd, checkpoints)
        if comm.is_root:
            state, cmd = guarded(solver.step, state, cmd, result)
