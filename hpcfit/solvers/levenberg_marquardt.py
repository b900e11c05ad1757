"""Levenberg–Marquardt as an explicit, immutable state: rank 0's solver, no JAX, no MPI.

Moré scaling, Nielsen damping and a projected box (maths in :mod:`hpcfit.solvers.lm_step`).
Per iteration the driver runs a cost pass at the trial point and, if the step is accepted, a
Jacobian pass there. After a step whose model agreed well (ratio ≥ :data:`SPECULATE_RATIO`, no
rejection since) the next step is likely accepted too, so its trial point gets the Jacobian pass
at once: the pass's cost decides the step exactly as a cost pass would (the same cost, the same
bits), and an accepted step saves its cost pass; a rejected one costs a Jacobian pass instead of
a cost pass. The same solver polishes phase 1's candidates on the sample and runs phase 2 on all
the data.
"""
from __future__ import annotations

import time
from dataclasses import astuple, fields
from typing import NamedTuple

import numpy as np

from ..result import IterationRecord, Status
from .driver import Command
from .lm_step import (Step, cost_converged, gauss_newton_decrease, gradient_cosine, more_scaling,
                      projected_gradient, propose_step, step_small, update_damping)

PHASE = "trust_region"
# A Jacobian pass at a trial point (speculative): the command's payload that says so.
TRIAL = "trial"
# The agreement ratio of the step just accepted at and above which the next trial point gets a
# Jacobian pass at once. Trust-region methods call a step "very successful" from 0.75 on; near the
# solution Gauss–Newton's ratios are ~1 and nearly every such step is accepted.
SPECULATE_RATIO = 0.75


class Outcome(NamedTuple):
    u: np.ndarray
    cost: float
    jtj: np.ndarray
    jtr: np.ndarray
    status: Status
    n_iterations: int
    history: list[IterationRecord]
    optimality: float
    solvers: dict[str, int]
    taken_back: int = 0       # accepted steps taken back because the derivatives there were not finite


class LMState(NamedTuple):
    u: np.ndarray
    cost: float
    jtj: np.ndarray
    jtr: np.ndarray
    d2: np.ndarray
    damping: float
    growth: float
    iteration: int
    rejected: int                       # rejections since the last accepted step
    trial: Step | None
    pending: Status | None              # ftol/xtol met by the step just accepted
    accepted: tuple[float, float, float]  # (cost change, step norm, ratio) of the step just accepted
    history: tuple[IterationRecord, ...]
    started: float                      # the fit's clock: time.perf_counter() when it started (less
                                        # the elapsed time a checkpoint recorded, on resume)
    solvers: tuple = (("cholesky", 0), ("eigen", 0), ("schur", 0))   # linear solves so far, by kind
    passes: int = 0                     # every pass so far (cost and Jacobian): what max_nfev bounds
    # (damping, growth) before the step just accepted: a step taken back (its Jacobian is not
    # finite) resumes from there, damped harder, so that λ grows over repeated take-backs
    before_accept: tuple[float, float] | None = None
    taken_back: int = 0
    finished: Status | None = None      # how the fit ended (not on a limit): a rerun returns it as it is
    from_file: bool = False             # restored from a finished fit's checkpoint: nothing to write


# Damping limits: past MAX_DAMPING a step is ~1e-32 of the gradient step, so no step can reduce
# the cost any more; the floor keeps Nielsen's multiplicative update from reaching exactly 0.
MAX_DAMPING = 1e32
MIN_DAMPING = 1e-20
# Growth of Moré's D² between two accepted points beyond which λ is rescaled (see after_jacobian);
# smooth least-squares problems change diag(JᵀJ) by far less between accepted steps.
SCALE_JUMP = 1e6


class LevenbergMarquardt:
    """Rank 0's LM solver with Moré scaling, Nielsen damping and a projected box.

    ``xtol`` is tested in user parameters θ = offset + scale·u, as scipy tests it in x.
    """

    def __init__(self, options, normalization, lower_u: np.ndarray, upper_u: np.ndarray, table=None,
                 valley_check: bool = True, blocks=None):
        self.opts = options
        # ftol is met only when the undamped model agrees (flat valleys); phase 1's candidates, which
        # only need their basin, leave it out
        self.valley_check = valley_check
        self.norm = normalization
        self.lower, self.upper = lower_u, upper_u
        self.table = table
        self.blocks = blocks            # JᵀJ's arrow structure (lm_step.ArrowBlocks), for the Schur complement

    def _out_of_time(self, state: LMState) -> bool:
        return self.opts.max_time is not None and _elapsed(state) > self.opts.max_time

    def _x_small(self, step_u: np.ndarray, u: np.ndarray) -> bool:
        return step_small(float(np.linalg.norm(self.norm.scale * step_u)),
                          float(np.linalg.norm(self.norm.to_theta(u))), self.opts.xtol)

    # -- the driver's protocol -------------------------------------------------------------------

    def start(self, u0: np.ndarray) -> tuple[LMState, Command]:
        """The state before the first Jacobian pass (its clock started) and the command for it."""
        state = LMState(u0, np.inf, None, None, None, self.opts.initial_damping, 2.0, 0, 0, None, None,
                        (np.nan, np.nan, np.nan), (), time.perf_counter())
        return state, Command("jacobian", u0)

    def step(self, state: LMState, cmd: Command, res) -> tuple[LMState, Command]:
        """The next command after the evaluation ``cmd`` asked for."""
        state = state._replace(passes=state.passes + 1)
        if state.jtj is None:                   # the Jacobian pass at the start
            return self.after_jacobian(state, res, cmd.u)
        if cmd.kind == "cost":
            return self.after_cost(state, res.cost, res.n_bad)
        if cmd.payload == TRIAL:
            # a Jacobian pass at a trial point: its cost decides the step first, and an accepted
            # step goes on with the derivatives this pass already holds
            state, then = self.after_cost(state, res.cost, res.n_bad)
            return self.after_jacobian(state, res, then.u) if then.kind == "jacobian" else (state, then)
        return self.after_jacobian(state, res, cmd.u)

    def boundary(self, state: LMState, cmd: Command):
        """Checkpoints are taken before a trial step's cost pass, and always when a limit the user
        set (max_iterations, max_nfev, max_time) ends the fit: a rerun with a higher limit and
        ``resume`` goes on from there instead of redoing the work. A fit that converged is written
        too, so that rerunning the same job returns it without another pass."""
        if cmd.kind == "cost" or cmd.payload == TRIAL:
            return PHASE, state.iteration, 1, False
        if cmd.kind == "stop" and not state.from_file:
            return PHASE, state.iteration, 1, True
        return None

    def snapshot(self, state: LMState) -> tuple[dict, dict, np.ndarray, int]:
        """The state at a boundary (before the pass at ``state.trial``) as checkpoint arrays,
        values, history rows and the pass cursor."""
        trial = state.trial             # None: stopped on a limit, the next step is still to propose
        arrays = {"u": state.u, "jtj": state.jtj, "jtr": state.jtr, "d2": state.d2}
        if trial is not None:
            arrays.update(trial_step=trial.step, trial_point=trial.trial)
        values = {"cost": state.cost, "damping": state.damping, "growth": state.growth,
                  "iteration": state.iteration, "rejected": state.rejected,
                  "trial_predicted": None if trial is None else trial.predicted,
                  "trial_solver": None if trial is None else trial.solver,
                  "pending": None if state.pending is None else int(state.pending),
                  "accepted": list(state.accepted), "solvers": dict(state.solvers), "elapsed": _elapsed(state),
                  "nfev": state.passes, "taken_back": state.taken_back,
                  "finished": None if state.finished is None else int(state.finished)}
        return arrays, values, history_array(state.history), state.passes

    def restore(self, arrays: dict, values: dict, rows: np.ndarray) -> tuple[LMState, Command]:
        """Inverse of :meth:`snapshot`: the state and the command to go on with."""
        history = history_records(rows)
        trial = (Step(arrays["trial_step"], arrays["trial_point"], values["trial_predicted"], values["trial_solver"])
                 if "trial_step" in arrays else None)
        pending = None if values["pending"] is None else Status(values["pending"])
        state = LMState(arrays["u"], values["cost"], arrays["jtj"], arrays["jtr"], arrays["d2"], values["damping"],
                        values["growth"], values["iteration"], values["rejected"], trial, pending,
                        tuple(values["accepted"]), history, time.perf_counter() - values["elapsed"],
                        tuple(values["solvers"].items()), values["nfev"], taken_back=values["taken_back"])
        if values.get("finished") is not None:      # the fit had converged: return its outcome as it is
            return self._stop(state._replace(from_file=True), Status(values["finished"]))
        if trial is None:             # written when a limit stopped the fit: propose the next step now
            return self._propose(state)
        return state, self._trial_command(state, trial)

    def after_jacobian(self, state: LMState, jac, u: np.ndarray) -> tuple[LMState, Command]:
        if state.trial is not None and not _usable(jac):
            # The accepted point lowered the cost but its derivatives are not finite (e.g. sqrt at 0
            # on a bound): Gauss–Newton cannot go on from there, so take the step back as rejected,
            # damping harder than before it was accepted (not than after: an accept divides λ by up
            # to 3 and a reject doubles it, so alternating the two would cycle forever).
            damping, growth = update_damping(*state.before_accept, -1.0, False)
            state = state._replace(iteration=state.iteration - 1, pending=None, rejected=state.rejected + 1,
                                   damping=damping, growth=growth, trial=None, before_accept=None,
                                   taken_back=state.taken_back + 1)
            return self._propose(state)
        d2 = more_scaling(state.d2, jac.jtj)
        damping = state.damping
        growth = 1.0 if state.d2 is None else float(np.max(d2 / state.d2))
        if growth > SCALE_JUMP:
            # A jump in D² by many orders (robust losses: points leaving the linear zone lift their
            # row scale from the √ε floor to 1, up to 1e16) would turn λD² into a wall and freeze the
            # fit: keep λD² continuous instead. Ordinary growth keeps Moré's behaviour.
            damping = max(damping / growth, MIN_DAMPING)
        state = state._replace(u=u, cost=jac.cost, jtj=jac.jtj, jtr=jac.jtr, d2=d2, damping=damping, trial=None)
        pg = projected_gradient(u, jac.jtr, self.lower, self.upper)
        change, step_norm, ratio = state.accepted
        rec = IterationRecord(state.iteration, jac.cost, change, float(np.max(np.abs(pg), initial=0.0)),
                              step_norm, ratio, state.damping, _elapsed(state), state.rejected)
        if self.table is not None:
            self.table.row(rec)
        state = state._replace(history=state.history + (rec,), rejected=0)
        if gradient_cosine(pg, jac.jtj, jac.cost) <= self.opts.gtol:   # MINPACK's test is <=
            return self._stop(state, Status.GTOL)
        if state.pending is not None:
            if self.valley_check and state.pending is Status.FTOL and gauss_newton_decrease(
                    u, jac.jtj, jac.jtr, self.lower, self.upper, self.blocks) > self.opts.ftol * jac.cost:
                # the damped step made little progress, but the undamped model still sees more than
                # ftol·cost to gain (a flat valley): not converged yet
                state = state._replace(pending=None)
            else:
                return self._stop(state, state.pending)
        return self._propose(state)

    def after_cost(self, state: LMState, trial_cost: float, n_bad: int) -> tuple[LMState, Command]:
        trial = state.trial
        new_cost = trial_cost if (n_bad == 0 and np.isfinite(trial_cost)) else np.inf
        actual = state.cost - new_cost
        ratio = actual / trial.predicted if np.isfinite(actual) else -np.inf
        accepted = actual > 0.0
        damping, growth = update_damping(state.damping, state.growth, ratio, accepted)
        state = state._replace(damping=max(damping, MIN_DAMPING), growth=growth,
                               before_accept=(state.damping, state.growth) if accepted else None)
        # As scipy's TRF: a step below xtol is still evaluated, taken if it lowers the cost, and ends the fit.
        x_ok = self._x_small(trial.step, state.u)
        if accepted:
            f_ok = cost_converged(actual, state.cost, ratio, self.opts.ftol)
            pending = {(True, True): Status.FTOL_XTOL, (True, False): Status.FTOL,
                       (False, True): Status.XTOL}.get((f_ok, x_ok))
            state = state._replace(iteration=state.iteration + 1, pending=pending,
                                   accepted=(-actual, float(np.linalg.norm(trial.step)), ratio))
            return state, Command("jacobian", trial.trial)
        state = state._replace(rejected=state.rejected + 1)
        if x_ok:
            return self._stop(state, Status.XTOL)
        return self._propose(state)

    def _propose(self, state: LMState) -> tuple[LMState, Command]:
        """The next trial step, or a stop on a limit. Every path that spends a pass comes here, so
        the limits below bound every loop of the solver."""
        if state.iteration >= self.opts.max_iterations:
            return self._stop(state, Status.MAX_ITERATIONS)
        # a trial step costs a cost pass and, if accepted, a Jacobian pass (one pass when the
        # Jacobian pass comes at once): never exceed max_nfev
        needed = 1 if self._speculate(state) else 2
        if self.opts.max_nfev is not None and state.passes + needed > self.opts.max_nfev:
            return self._stop(state, Status.MAX_NFEV)
        if self._out_of_time(state):
            return self._stop(state, Status.TIME_LIMIT)
        while state.damping <= MAX_DAMPING:
            step = propose_step(state.u, state.jtj, state.jtr, state.d2, state.damping, self.lower, self.upper,
                                self.blocks)
            state = state._replace(solvers=_counted(state.solvers, step.solver))
            if not np.any(step.step):
                # u + δ rounds back to u: the step is below the resolution of the parameters
                return self._stop(state, Status.XTOL if self.opts.xtol > 0 else Status.NO_PROGRESS)
            if step.predicted > 0.0:
                return state._replace(trial=step), self._trial_command(state, step)
            if self._x_small(step.step, state.u):
                return self._stop(state, Status.XTOL)
            # The projected model predicts no decrease: damp harder without spending a pass; for
            # large damping the step turns to projected steepest descent, which does decrease it.
            damping, growth = update_damping(state.damping, state.growth, -1.0, False)
            state = state._replace(damping=damping, growth=growth)
        return self._stop(state, Status.NO_PROGRESS)

    def _speculate(self, state: LMState) -> bool:
        """Whether the next trial point gets its Jacobian pass at once: the step just accepted was
        very successful and none was rejected since (a function of the state alone, so that a
        resumed fit makes the same choice)."""
        return state.rejected == 0 and bool(state.accepted[2] >= SPECULATE_RATIO)

    def _trial_command(self, state: LMState, trial: Step) -> Command:
        """The pass at a trial point: a Jacobian pass at once (:meth:`_speculate`), else a cost pass."""
        return Command("jacobian", trial.trial, TRIAL) if self._speculate(state) else Command("cost", trial.trial)

    def _stop(self, state: LMState, status: Status) -> tuple[LMState, Command]:
        if status.on_limit:
            state = state._replace(trial=None)      # what a resume with a higher limit proposes anew
        else:
            state = state._replace(finished=status)
        pg = projected_gradient(state.u, state.jtr, self.lower, self.upper)
        outcome = Outcome(state.u, state.cost, state.jtj, state.jtr, status, state.iteration,
                          list(state.history), gradient_cosine(pg, state.jtj, state.cost), dict(state.solvers),
                          state.taken_back)
        return state, Command("stop", payload=outcome)


def _counted(solvers: tuple, kind: str) -> tuple:
    """The (kind, count) pairs with one more ``kind`` (a kind a resumed checkpoint lacks is added)."""
    counts = dict(solvers)
    counts[kind] = counts.get(kind, 0) + 1
    return tuple(counts.items())


def _elapsed(state: LMState) -> float:
    return time.perf_counter() - state.started


def _usable(res) -> bool:
    return (res.n_bad == 0 and np.isfinite(res.cost) and bool(np.all(np.isfinite(res.jtj)))
            and bool(np.all(np.isfinite(res.jtr))))


def history_array(history) -> np.ndarray:
    """IterationRecords as rows of float64 (for checkpoints)."""
    return np.array([astuple(rec) for rec in history], dtype=np.float64).reshape(len(history), len(fields(IterationRecord)))


def history_records(rows: np.ndarray) -> tuple[IterationRecord, ...]:
    """Inverse of :func:`history_array`."""
    return tuple(IterationRecord(int(r[0]), *map(float, r[1:-1]), int(r[-1])) for r in rows)
