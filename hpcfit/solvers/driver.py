"""The one loop every solver runs in, over any evaluator (the full data or phase 1's sample).

Per turn: rank 0 attaches a checkpoint to its command when the solver is at a boundary and one is
due; the command is broadcast; every rank commits the checkpoint (and stops on an agreed signal);
every rank runs the evaluation the command asks for, which ends in the pass's single reduction
(carrying the checkpoint session's flags); rank 0's solver turns the reduced values into the next
command. Solvers never call MPI and keep their state explicit and immutable, so the checkpoint is
the solver's state plus the evaluator's counters.

A solver provides ``step(state, command, result) -> (state, command)`` (rank 0),
``boundary(state, command) -> (phase, iteration, stride, always) | None`` and
``snapshot(state) -> (arrays, values, history, cursor)``. An evaluator provides
``evaluate(command, flags) -> result`` (collective; ``result.flags`` are the summed flags) and
``counters()`` (what a resume restores).
"""
from __future__ import annotations

import time
from typing import Any, NamedTuple

from ..checkpoint.signals import interrupt_requested, note_pass
from ..errors import FitError, InputError, interrupted


class Command(NamedTuple):
    """Rank 0's decision, broadcast before every evaluation: what all ranks do next."""

    kind: str                 # an evaluation the evaluator knows ("jacobian", "cost", "gradient", "loss"),
    u: Any = None             # "stop" (payload: the solver's outcome) or "error" (payload: (type, message))
    payload: Any = None
    save: Any = None          # a Checkpoint to write before going on
    stop: bool = False        # after writing it, stop (a stop signal was agreed)


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


def drive(comm, solver, evaluator, state, cmd: Command | None, checkpoints=None):
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
