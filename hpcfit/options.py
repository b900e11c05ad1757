"""Solver options: one typed record, validated once where it enters (every rank, before any
collective), with errors that name the option, the value and what is allowed."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields, replace

import numpy as np

from .errors import InputError
from .groups import parameter_groups
from .validate import choice, file_path, flag, integer, number

#: The allowed values of the options that name a choice (their one home: the kernels and the
#: normalization import them from here, so importing options imports no JAX).
LOSSES = ("linear", "soft_l1", "huber", "cauchy", "arctan")
JACOBIAN_MODES = ("forward", "per_point_reverse")
DTYPES = ("float64", "float32")                 # the warm-up's arithmetic
STRATEGIES = ("auto", "bounds", "p0", "none")   # parameter normalization

METHODS = ("hybrid", "gn")
SCIPY_METHODS = ("lm", "trf", "dogbox")


@dataclass(frozen=True)
class FitOptions:
    """Options of a fit. Every field can be passed to :func:`hpcfit.curve_fit` as a keyword."""

    method: str = "hybrid"        # "hybrid": phases 0-1-2-3; "gn": no warm-up (phase 1 skipped)
    loss: str = "linear"
    f_scale: float = 1.0
    ftol: float = 1e-8            # scipy's defaults for ftol, xtol, gtol
    xtol: float = 1e-8
    gtol: float = 1e-8
    max_iterations: int = 1000     # accepted steps; NIST's slowest problem (Bennett5) needs ~300
    max_nfev: int | None = None   # passes over the data (cost and Jacobian) at most, scipy's name; None: no limit
    max_time: float | None = None  # seconds of phase 2 wall time; None: no limit
    chunk_size: int | None = None  # points per chunk; None: chosen from the parameter count
    normalize: str = "auto"
    initial_damping: float = 1e-3  # λ₀ relative to Moré's scaling (Madsen et al. suggest 1e-6…1)
    cov_rcond: float = 1e-14       # eigenvalue cutoff of the equilibrated JᵀWJ, relative (Ceres' default)
    jacobian_mode: str = "forward"
    # Block-sparse Jacobian passes (hpcfit.groups): "auto" takes the model's `parameter_groups`
    # when its groups can be placed on the data; None: dense passes; or a ParameterGroups / table.
    parameter_groups: object = "auto"
    verbose: int = 0               # 0: quiet (as scipy); 1: rank 0 prints the per-iteration table
    # Phase 1 (method="hybrid"): Adam on minibatches, with the four layers of docs/algorithm.md.
    warm_start_detection: bool = True    # layer 1: skip phase 1 when p0 already fits ...
    warm_start_threshold: float = 0.01   # ... i.e. relative loss(p0) = 2·loss/var_w(y) below this
    adaptive_learning_rate: bool = True  # layer 2: learning rate from the relative-loss band
    learning_rate: float = 0.01          # the fixed rate when layer 2 is off
    cost_guard: bool = True              # layer 3: stop when the loss rises above the initial one ...
    cost_guard_tolerance: float = 0.05   # ... by more than this fraction
    step_clipping: bool = True           # layer 4: cap each update's norm in normalized space ...
    max_step_norm: float = 0.1           # ... at this
    warmup_max_steps: int = 500          # Adam steps at most
    warmup_batch_size: int = 4096        # points per minibatch, over all ranks
    warmup_eval_points: int = 16384      # fixed evaluation subset for layers 1 and 3 (all data if n is smaller)
    warmup_eval_every: int = 10          # steps between evaluations of the subset
    warmup_gtol: float = 1e-3            # switch when |smoothed gradient| <= this x its first value
    warmup_plateau_window: int = 5       # switch when the best loss improved by < rtol over this many evaluations
    warmup_plateau_rtol: float = 0.01
    warmup_seed: int = 0                 # key of the counter-based sampler
    warmup_dtype: str = "float64"        # "float32": phase 1 kernels in single precision
    explore_sample_points: int = 32768   # phase 1's fixed sample (all data if n is at most twice this)
    # phase 1's winner polished on this bigger sample before phase 2 (0: not); "auto": 32 x the sample
    # when the data hold at least 100 times that (n >= ~10^8), else not
    explore_refine_points: int | str = "auto"
    multistart: int | str = "auto"       # quasi-random starts polished on the sample in phase 1; "auto": 32
                                         # when neither p0 nor Adam gives a sound, converged candidate
    explore_starts: tuple | None = None  # further starts (in parameters θ, one row each) for phase 1
    # Suggested starts (θ rows; xpcs.fit's scan): polished like the automatic multistart, i.e. skipped at a
    # sound warm start and held to `explore_budget` when LM from p0 settled (docs/algorithm.md, phase 1).
    explore_scan: tuple | None = None
    explore_budget: float = 1.0          # automatic candidates at most floor(explore_budget · n / sample size)
                                         # when LM from p0 settled (inf: all); each costs about one LM from p0
    explore_early_stop: bool = True      # drop a candidate once it cannot beat LM from p0's sample cost
    # Checkpoint/restart (docs/usage.md#checkpoints): none of these changes the answer.
    checkpoint: str | None = None        # HDF5 file to write (its previous version is kept as NAME.prev.h5)
    checkpoint_every: int | None = 1     # write every this many iterations (warm-up: steps, at evaluations) ...
    checkpoint_seconds: float | None = None   # ... and/or when this many seconds have passed since the last
    resume: bool | str | None = None     # True: from `checkpoint`; "auto": that, if it exists; or a file path
    resume_force: bool = False           # resume even if options or data differ from the checkpoint's

    def chunk_size_for(self, n_params: int) -> int:
        """The chunk size: the option, or the power of two at or below 2¹⁹/(p+1) within [2¹², 2¹⁶].

        Measured on a 2-core CPU (docs/benchmarks.md): 65536 points was fastest for p = 3 and
        32768 for p = 9; larger chunks fall out of cache, smaller ones pay dispatch overhead.
        """
        if self.chunk_size is not None:
            return self.chunk_size
        target = max(1, (1 << 19) // (n_params + 1))
        return max(1 << 12, min(1 << 16, 1 << (target.bit_length() - 1)))

#: Named presets over the options; explicit keywords override them.
PRESETS: dict[str, dict] = {
    "default": {},
    "no_warmup": {"method": "gn"},
    "fast": {"warmup_max_steps": 150, "warmup_eval_points": 16384, "warmup_plateau_window": 3,
             "warmup_dtype": "float32"},
    "robust": {"warm_start_threshold": 0.001, "warmup_max_steps": 2000, "warmup_batch_size": 16384,
               "warmup_plateau_window": 10, "warmup_plateau_rtol": 0.001, "max_step_norm": 0.05},
}


def _multistart(value) -> int:
    try:
        return integer("multistart", value, 0)
    except InputError:
        raise InputError(f"`multistart` must be 'auto' or an integer >= 0; got {value!r}") from None


def _starts(value, name: str = "explore_starts"):
    """None, or starts as a tuple of rows of floats (their length is checked against p0 later)."""
    if value is None:
        return None
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim not in (1, 2) or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise InputError(f"`{name}` must be a sequence of start vectors (one value per parameter each, "
                         f"finite numbers); got {value!r}")
    return tuple(tuple(float(v) for v in row) for row in np.atleast_2d(arr))


def _budget(value) -> float:
    """A number >= 0; inf (every automatic candidate, whatever the data size) is allowed."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value) and value >= 0
    if not ok:
        raise InputError(f"`explore_budget` must be a number >= 0 (inf: no limit); got {value!r}")
    return float(value)


def _resume(value):
    """None/False (a new fit), True, "auto", or the path of a checkpoint file."""
    if value is None or value is False:
        return None
    if value is True or value == "auto":
        return value
    try:
        return file_path("resume", value)
    except InputError:
        raise InputError(f"`resume` must be None, True (resume from `checkpoint`), 'auto' (resume if `checkpoint` "
                         f"exists) or the path of a checkpoint file; got {value!r}") from None


def make_options(**kwargs) -> FitOptions:
    """Build and validate :class:`FitOptions` from keywords; unknown keywords are an error.

    numpy scalars are accepted and stored as Python numbers.
    """
    known = {f.name for f in fields(FitOptions)}
    preset = kwargs.pop("preset", "default")
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise InputError(f"unknown option(s) {', '.join(map(repr, unknown))}; known options are "
                         f"{', '.join(sorted(known | {'preset'}))}")
    opts = FitOptions(**{**PRESETS[choice("preset", preset, tuple(PRESETS))], **kwargs})
    if opts.method in SCIPY_METHODS:
        raise InputError(f"`method` must be one of {', '.join(map(repr, METHODS))}; got {opts.method!r}, which is "
                         "one of scipy's methods. hpcfit's 'gn' is a Levenberg–Marquardt trust region with bounds "
                         "(like scipy's 'lm' and 'trf'); 'hybrid' (the default) first explores on a sample of "
                         "the data and is never worse than 'gn' from the same start")
    checked = dict(
        method=choice("method", opts.method, METHODS),
        loss=choice("loss", opts.loss, LOSSES),
        normalize=choice("normalize", opts.normalize, STRATEGIES),
        jacobian_mode=choice("jacobian_mode", opts.jacobian_mode, JACOBIAN_MODES),
        parameter_groups=parameter_groups(opts.parameter_groups),
        f_scale=number("f_scale", opts.f_scale),
        ftol=number("ftol", opts.ftol, allow_zero=True),
        xtol=number("xtol", opts.xtol, allow_zero=True),
        gtol=number("gtol", opts.gtol, allow_zero=True),
        max_iterations=integer("max_iterations", opts.max_iterations, 0),
        max_nfev=None if opts.max_nfev is None else integer("max_nfev", opts.max_nfev, 1),
        max_time=None if opts.max_time is None else number("max_time", opts.max_time),
        chunk_size=None if opts.chunk_size is None else integer("chunk_size", opts.chunk_size, 1),
        initial_damping=number("initial_damping", opts.initial_damping),
        cov_rcond=number("cov_rcond", opts.cov_rcond),
        verbose=int(choice("verbose", opts.verbose, (0, 1))),   # True == 1, False == 0
        **{name: flag(name, getattr(opts, name)) for name in
           ("warm_start_detection", "adaptive_learning_rate", "cost_guard", "step_clipping")},
        warm_start_threshold=number("warm_start_threshold", opts.warm_start_threshold),
        learning_rate=number("learning_rate", opts.learning_rate),
        cost_guard_tolerance=number("cost_guard_tolerance", opts.cost_guard_tolerance, allow_zero=True),
        max_step_norm=number("max_step_norm", opts.max_step_norm),
        warmup_max_steps=integer("warmup_max_steps", opts.warmup_max_steps, 0),
        warmup_batch_size=integer("warmup_batch_size", opts.warmup_batch_size, 1),
        warmup_eval_points=integer("warmup_eval_points", opts.warmup_eval_points, 1),
        warmup_eval_every=integer("warmup_eval_every", opts.warmup_eval_every, 1),
        warmup_gtol=number("warmup_gtol", opts.warmup_gtol, allow_zero=True),
        warmup_plateau_window=integer("warmup_plateau_window", opts.warmup_plateau_window, 1),
        warmup_plateau_rtol=number("warmup_plateau_rtol", opts.warmup_plateau_rtol, allow_zero=True),
        warmup_seed=integer("warmup_seed", opts.warmup_seed, 0),
        warmup_dtype=choice("warmup_dtype", opts.warmup_dtype, DTYPES),
        explore_sample_points=integer("explore_sample_points", opts.explore_sample_points, 1),
        explore_refine_points=opts.explore_refine_points if opts.explore_refine_points == "auto"
        else integer("explore_refine_points", opts.explore_refine_points, 0, " or 'auto'"),
        multistart=opts.multistart if opts.multistart == "auto" else _multistart(opts.multistart),
        explore_starts=_starts(opts.explore_starts),
        explore_scan=_starts(opts.explore_scan, "explore_scan"),
        explore_budget=_budget(opts.explore_budget),
        explore_early_stop=flag("explore_early_stop", opts.explore_early_stop),
        checkpoint=None if opts.checkpoint is None else file_path("checkpoint", opts.checkpoint),
        checkpoint_every=None if opts.checkpoint_every is None else integer("checkpoint_every",
                                                                            opts.checkpoint_every, 1),
        checkpoint_seconds=None if opts.checkpoint_seconds is None else number("checkpoint_seconds",
                                                                               opts.checkpoint_seconds),
        resume=_resume(opts.resume),
        resume_force=flag("resume_force", opts.resume_force),
    )
    eps = float(np.finfo(float).eps)
    if max(checked["ftol"], checked["xtol"], checked["gtol"]) < eps:
        # as scipy.optimize.least_squares: otherwise only max_iterations could end a converged fit
        raise InputError(f"at least one of `ftol`, `xtol`, `gtol` must be >= machine epsilon ({eps:.3g}); got "
                         f"ftol={opts.ftol!r}, xtol={opts.xtol!r}, gtol={opts.gtol!r}")
    return replace(opts, **checked)
