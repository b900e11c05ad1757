"""What a fit returns: :class:`FitResult`, its termination :class:`Status`, history and timings."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Status(enum.IntEnum):
    """Why the fit stopped; codes 0–4 mean what they mean in scipy.optimize.least_squares."""

    MAX_ITERATIONS = 0
    GTOL = 1
    FTOL = 2
    XTOL = 3
    FTOL_XTOL = 4
    TIME_LIMIT = 5
    NO_PROGRESS = 6
    MAX_NFEV = 7

    @property
    def on_limit(self) -> bool:
        """The fit was cut short by a limit the user set, not ended by a convergence test."""
        return self in (Status.MAX_ITERATIONS, Status.TIME_LIMIT, Status.MAX_NFEV)

    @property
    def message(self) -> str:
        return _MESSAGES[self]

    @property
    def success(self) -> bool:
        return self in (Status.GTOL, Status.FTOL, Status.XTOL, Status.FTOL_XTOL)


_MESSAGES = {
    Status.MAX_ITERATIONS: "The maximum number of iterations (`max_iterations`) is exceeded.",
    Status.GTOL: "`gtol` termination condition is satisfied.",
    Status.FTOL: "`ftol` termination condition is satisfied.",
    Status.XTOL: "`xtol` termination condition is satisfied.",
    Status.FTOL_XTOL: "Both `ftol` and `xtol` termination conditions are satisfied.",
    Status.TIME_LIMIT: "The wall-time limit (`max_time`) is exceeded.",
    Status.NO_PROGRESS: ("No step lowers the cost: the damping reached its limit (1e32). The point is converged "
                         "to machine precision, or the model is not smooth there; loosen ftol/xtol/gtol."),
    Status.MAX_NFEV: "The maximum number of passes over the data (`max_nfev`) is exceeded.",
}


@dataclass(frozen=True)
class IterationRecord:
    """One row of the per-iteration table (iteration 0 is the start point)."""

    iteration: int
    cost: float
    cost_change: float
    gradient_norm: float    # ‖projected g‖∞ in normalized space
    step_norm: float        # ‖s‖₂ in normalized space
    ratio: float            # actual / predicted reduction
    damping: float          # λ
    seconds: float          # since the start of phase 2
    rejected: int           # trial steps rejected before this one was accepted


@dataclass(frozen=True)
class WarmupReport:
    """What phase 1 (the Adam warm-up of ``method="hybrid"``) did, and why it ended.

    ``reason`` is one of: ``"method"`` (``method="gn"``: not run), ``"warm_start"`` (layer 1: p0
    already fits), ``"converged"`` (LM on the sample from p0 settled: Adam is not needed),
    ``"max_steps"`` (zero steps allowed or the step limit), ``"gradient"``,
    ``"plateau"``, ``"cost_guard"`` (layer 3), ``"non_finite"`` (the loss or gradient stopped being
    finite). Losses are mean costs per point on the evaluation subset; the relative loss is
    2·loss/var_w(y), i.e. 1 − R² for the linear loss.
    """

    ran: bool
    reason: str
    steps: int = 0
    evaluations: int = 0               # evaluations of the subset (after the one at p0)
    loss_start: float = float("nan")
    loss_end: float = float("nan")     # at the parameters handed to phase 2 (the best seen)
    relative_loss_start: float = float("nan")
    relative_loss_end: float = float("nan")
    learning_rate: float = float("nan")  # the last rate used
    layer_counts: dict[str, int] = field(default_factory=dict)   # warm_start, learning_rate, cost_guard, step_clipping
    eval_points: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class ExploreReport:
    """What phase 1 did (:mod:`hpcfit.phases.explore`): the candidates polished on the sample and
    the one handed to phase 2.

    ``reason``: ``"method"`` (``method="gn"``: not run), ``"warm_start"`` (LM from p0 explained the
    data, no Adam), ``"adam"`` (the Adam warm-up ran), ``"lm"`` (Adam was switched off),
    ``"non_finite"`` (p0 is not usable on the sample; phase 2 reports why), ``"resumed"``,
    ``"converged"`` (LM from p0 settled, so Adam was not run). Each candidate is a dict: origin,
    cost (on the sample), status (``"DROPPED"``: stopped early, it could not beat LM from p0),
    iterations, on_bound, rank_deficient. ``skipped`` says which candidates were not run and why.
    """

    ran: bool
    reason: str
    sample_points: int = 0
    candidates: tuple = ()
    chosen: str | None = None
    seconds: float = 0.0
    skipped: tuple = ()


@dataclass(frozen=True)
class FitResult:
    """Result of a fit, identical on every rank. Unpacks as ``popt, pcov = result``."""

    popt: np.ndarray
    pcov: np.ndarray
    perr: np.ndarray
    cost: float
    chi2: float
    dof: int
    success: bool
    status: Status
    message: str
    n_iterations: int
    nfev: int                      # cost evaluations: cost passes + Jacobian passes
    njev: int                      # Jacobian passes
    history: list[IterationRecord]
    timings: dict[str, float]
    active_mask: np.ndarray        # −1 at a lower bound, +1 at an upper bound, 0 free (as scipy)
    rank: int                      # numerical rank of the normalized JᵀWJ
    rank_deficient: bool
    n_points: int
    n_params: int
    method: str
    loss: str
    grad: np.ndarray               # JᵀWr at popt, in user parameters
    optimality: float              # scale-invariant gradient test value at popt
    compile_counts: dict[str, int] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    names: list[str] | None = None   # parameter names (from the model, or f's signature)
    warmup: WarmupReport | None = None   # phase 1's Adam warm-up telemetry
    explore: ExploreReport | None = None  # phase 1's candidates and choice
    trustworthy: bool = True           # False: see trust_issues (rank deficient, on a bound, ended on a limit)
    trust_issues: tuple[str, ...] = ()
    fixed: np.ndarray | None = None    # True where equal lower and upper bounds fixed the parameter
    model: Any = field(default=None, repr=False, compare=False)   # f(x, *params) as fitted (None when loaded)

    # scipy's curve_fit returns (popt, pcov): unpacking, indexing and len() behave the same.
    def __iter__(self):
        yield self.popt
        yield self.pcov

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index):
        return (self.popt, self.pcov)[index]

    def predict(self, x) -> np.ndarray:
        """The fitted model at ``x``: ``f(x, *popt)``, as a numpy array."""
        if self.model is None:
            raise ValueError("this result has no model (it was read from a file): evaluate your model at "
                             "result.popt, e.g. f(x, *result.popt)")
        return np.asarray(self.model(x, *self.popt))

    @property
    def reduced_chi2(self) -> float:
        return self.chi2 / self.dof if self.dof > 0 else float("nan")

    def as_dict(self) -> dict[str, float]:
        """popt by parameter name."""
        return dict(zip(self.names or [f"p[{i}]" for i in range(self.n_params)], map(float, self.popt)))

    def brief(self) -> str:
        """One line, like Ceres' BriefReport."""
        return (f"hpcfit: {self.status.name} after {self.n_iterations} iterations, cost {self.cost:.6e}, "
                f"{self.njev} Jacobian + {self.nfev - self.njev} cost passes, "
                f"{self.timings.get('total', float('nan')):.3f} s")

    def _rank_line(self) -> str:
        """The rank of JᵀWJ over the free parameters (a fixed one has no column in it)."""
        n_fixed = 0 if self.fixed is None else int(np.count_nonzero(self.fixed))
        free = self.n_params - n_fixed
        note = f" free parameters ({n_fixed} fixed)" if n_fixed else ""
        return f"  JᵀWJ rank {self.rank}/{free}{note}" + (" (RANK DEFICIENT)" if self.rank_deficient else "")

    def report(self, names: list[str] | None = None) -> str:
        """A full multi-line summary: parameters with errors, termination, passes and timings."""
        names = names or self.names or [f"p[{i}]" for i in range(self.n_params)]
        width = max(len(n) for n in names)
        lines = [self.brief(), f"  {self.message}",
                 f"  points {self.n_points}, parameters {self.n_params}, dof {self.dof}, "
                 f"chi2 {self.chi2:.6e}, reduced chi2 {self.reduced_chi2:.6e}, loss {self.loss}",
                 self._rank_line()]
        if not self.trustworthy:
            lines.append("  NOT TRUSTWORTHY: " + "; ".join(self.trust_issues))
        fixed = self.fixed if self.fixed is not None else np.zeros(self.n_params, bool)
        undetermined = set(self.info.get("undetermined", ()))
        for name, value, err, act, fix in zip(names, self.popt, self.perr, self.active_mask, fixed):
            flag = {-1: "  at lower bound", 1: "  at upper bound"}.get(int(act), "")
            flag += "  fixed" if fix else ""
            flag += "  NOT DETERMINED by the data" if name in undetermined else ""
            lines.append(f"  {name:>{width}} = {value: .10e} ± {err:.3e}{flag}")
        lines.append("  timings: " + ", ".join(f"{k} {v:.4g}" for k, v in self.timings.items()))
        return "\n".join(lines)
