"""Solver options: one typed record, validated once where it enters (every rank, before any
collective), with errors that name the option, the value and what is allowed."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from .errors import InputError
from .validate import choice, integer, number
from .kernels.chunk import JACOBIAN_MODES
from .kernels.losses import LOSSES
from .phases.normalize import STRATEGIES

METHODS = ("gn",)


@dataclass(frozen=True)
class FitOptions:
    """Options of a fit. Every field can be passed to :func:`hpcfit.curve_fit` as a keyword."""

    method: str = "gn"
    loss: str = "linear"
    f_scale: float = 1.0
    ftol: float = 1e-8            # scipy's defaults for ftol, xtol, gtol
    xtol: float = 1e-8
    gtol: float = 1e-8
    max_iterations: int = 100
    max_time: float | None = None  # seconds of phase 2 wall time; None: no limit
    chunk_size: int | None = None  # points per chunk; None: chosen from the parameter count
    normalize: str = "auto"
    initial_damping: float = 1e-3  # λ₀ relative to Moré's scaling (Madsen et al. suggest 1e-6…1)
    cov_rcond: float = 1e-14       # eigenvalue cutoff of the equilibrated JᵀWJ, relative (Ceres' default)
    jacobian_mode: str = "forward"
    verbose: int = 1               # 0: quiet; 1: rank 0 prints the per-iteration table

    def chunk_size_for(self, n_params: int) -> int:
        """The chunk size: the option, or the power of two at or below 2¹⁹/(p+1) within [2¹², 2¹⁶].

        Measured on a 2-core CPU (docs/benchmarks.md): 65536 points was fastest for p = 3 and
        32768 for p = 9; larger chunks fall out of cache, smaller ones pay dispatch overhead.
        """
        if self.chunk_size is not None:
            return self.chunk_size
        target = max(1, (1 << 19) // (n_params + 1))
        return max(1 << 12, min(1 << 16, 1 << (target.bit_length() - 1)))










def make_options(**kwargs) -> FitOptions:
    """Build and validate :class:`FitOptions` from keywords; unknown keywords are an error.

    numpy scalars are accepted and stored as Python numbers.
    """
    known = {f.name for f in fields(FitOptions)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise InputError(f"unknown option(s) {', '.join(map(repr, unknown))}; known options are "
                         f"{', '.join(sorted(known))}")
    opts = FitOptions(**kwargs)
    checked = dict(
        method=choice("method", opts.method, METHODS),
        loss=choice("loss", opts.loss, LOSSES),
        normalize=choice("normalize", opts.normalize, STRATEGIES),
        jacobian_mode=choice("jacobian_mode", opts.jacobian_mode, JACOBIAN_MODES),
        f_scale=number("f_scale", opts.f_scale),
        ftol=number("ftol", opts.ftol, allow_zero=True),
        xtol=number("xtol", opts.xtol, allow_zero=True),
        gtol=number("gtol", opts.gtol, allow_zero=True),
        max_iterations=integer("max_iterations", opts.max_iterations, 0),
        max_time=None if opts.max_time is None else number("max_time", opts.max_time),
        chunk_size=None if opts.chunk_size is None else integer("chunk_size", opts.chunk_size, 1),
        initial_damping=number("initial_damping", opts.initial_damping),
        cov_rcond=number("cov_rcond", opts.cov_rcond),
        verbose=int(choice("verbose", opts.verbose, (0, 1))),   # True == 1, False == 0
    )
    eps = float(np.finfo(float).eps)
    if max(checked["ftol"], checked["xtol"], checked["gtol"]) < eps:
        # as scipy.optimize.least_squares: otherwise only max_iterations could end a converged fit
        raise InputError(f"at least one of `ftol`, `xtol`, `gtol` must be >= machine epsilon ({eps:.3g}); got "
                         f"ftol={opts.ftol!r}, xtol={opts.xtol!r}, gtol={opts.gtol!r}")
    return replace(opts, **checked)
