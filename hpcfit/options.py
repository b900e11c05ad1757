"""Solver options: one typed record, validated once where it enters (every rank, before any
collective), with errors that name the option, the value and what is allowed."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

from .errors import InputError
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
    cov_rcond: float = 1e-12       # eigenvalue cutoff of the equilibrated JᵀWJ, relative
    jacobian_mode: str = "forward"
    verbose: int = 1               # 0: quiet; 1: rank 0 prints the per-iteration table

    def chunk_size_for(self, n_params: int) -> int:
        """The chunk size: the option, or the power of two at or below 2¹⁹/(p+1) within [2¹², 2¹⁶].

        Measured on a 2-core CPU (docs/benchmarks.md): 65536 points was fastest for p = 3 and
        32768 for p = 9; larger chunks fall out of cache, smaller ones pay dispatch overhead.
        """
        if self.chunk_size is not None:
            return self.chunk_size
        target = (1 << 19) // (n_params + 1)
        return max(1 << 12, min(1 << 16, 1 << (target.bit_length() - 1)))


def _positive(name, value, allow_zero=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (
        value >= 0 if allow_zero else value > 0)
    if not ok:
        raise InputError(f"`{name}` must be a finite number {'>= 0' if allow_zero else '> 0'}; got {value!r}")


def _choice(name, value, allowed):
    if value not in allowed:
        raise InputError(f"`{name}` must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def make_options(**kwargs) -> FitOptions:
    """Build and validate :class:`FitOptions` from keywords; unknown keywords are an error."""
    known = {f.name for f in fields(FitOptions)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise InputError(f"unknown option(s) {', '.join(map(repr, unknown))}; known options are "
                         f"{', '.join(sorted(known))}")
    opts = FitOptions(**kwargs)
    _choice("method", opts.method, METHODS)
    _choice("loss", opts.loss, LOSSES)
    _choice("normalize", opts.normalize, STRATEGIES)
    _choice("jacobian_mode", opts.jacobian_mode, JACOBIAN_MODES)
    _positive("f_scale", opts.f_scale)
    for name in ("ftol", "xtol", "gtol"):
        _positive(name, getattr(opts, name), allow_zero=True)
    for name in ("max_iterations",):
        v = getattr(opts, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise InputError(f"`{name}` must be an integer >= 0; got {v!r}")
    if opts.max_time is not None:
        _positive("max_time", opts.max_time)
    if opts.chunk_size is not None and (not isinstance(opts.chunk_size, int) or isinstance(opts.chunk_size, bool)
                                        or opts.chunk_size < 1):
        raise InputError(f"`chunk_size` must be an integer >= 1 or None; got {opts.chunk_size!r}")
    _positive("initial_damping", opts.initial_damping)
    _positive("cov_rcond", opts.cov_rcond)
    if opts.verbose not in (0, 1, True, False):
        raise InputError(f"`verbose` must be 0 or 1; got {opts.verbose!r}")
    return opts
