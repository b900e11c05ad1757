"""Setup: open the data and build the :class:`~hpcfit.problem.Problem` every phase and evaluator
takes — the data's chunks, the model checked on one chunk, the residual scale and the parameters'
normalization, the layout of the Jacobian passes. Collective (every failure agreed)."""
from __future__ import annotations

import math

from ..comm import Communicator
from ..errors import InputError
from ..groups import GroupLayout, declared_groups, kernel_columns, resolve_groups
from ..kernels.chunk import model_output_shape
from ..kernels.coords import implicit_model
from ..problem import Problem
from ..report import IterationTable
from .scales import data_scales


def build_problem(hc: Communicator, source, args, absolute_sigma: bool) -> Problem:
    """Collective: open ``source`` on this rank and build the Problem from the checked ``args``
    (:class:`hpcfit.arguments.Arguments`). The caller closes the source."""
    f, opts, p0, lower, upper = args.model, args.options, args.p0, args.lower, args.upper
    p = p0.size
    local = source.open(hc, opts.chunk_size_for(kernel_width(f, p, opts)))
    if local.n_points <= p:                     # every rank knows the global n
        raise InputError(f"the fit needs more points than parameters: n = {local.n_points} points, "
                         f"p = {p} parameters (n must be > p)")
    hc.agree(check_model, implicit_model(f, local), local, p, opts)
    weight_scale, norm = data_scales(hc, local, f, opts.normalize, args.norm, p0, lower, upper)
    groups = hc.agree(group_layout, f, local, p, opts)
    problem = Problem(hc, local, f, opts, norm, p0, lower, upper, norm.to_u(lower), norm.to_u(upper),
                      bool(absolute_sigma), IterationTable(bool(opts.verbose) and hc.is_root), weight_scale, groups)
    if weight_scale != 1.0:
        problem.table.line(f"the data (y/sigma) are of order 2^{-math.frexp(weight_scale)[1] + 1}: residuals are "
                           f"scaled by 2^{math.frexp(weight_scale)[1] - 1} inside the fit (exact); the table "
                           "shows scaled costs, the result is in your units")
    return problem


def kernel_width(f, p: int, opts) -> int:
    return kernel_columns(declared_groups(getattr(f, "parameter_groups", None), opts.parameter_groups), p)


def group_layout(f, local, p: int, opts) -> GroupLayout | None:
    """The block-sparse layout of this fit's Jacobian passes (hpcfit.groups), or None for dense ones.

    "auto" takes the model's own ``parameter_groups`` where its groups can be placed on the points
    (a grid source, or no per-group parameters) and forward mode is asked for; a declaration the
    user gave must hold, or the error says why.
    """
    groups = declared_groups(getattr(f, "parameter_groups", None), opts.parameter_groups)
    if opts.parameter_groups == "auto":
        if groups is None or opts.jacobian_mode != "forward" or (
                groups.per_group and groups.group_sizes is None and local.coords is None):
            return None
    elif groups is None:
        return None
    elif opts.jacobian_mode != "forward":
        raise InputError(f"`parameter_groups` (block-sparse Jacobian passes) works with jacobian_mode='forward'; got "
                         f"{opts.jacobian_mode!r}")
    return resolve_groups(groups, p, local.n_points, local.coords, local.chunk_size)


def check_model(model, local, p: int, opts) -> None:
    """The model traces with p parameters on one chunk and returns one value per point."""
    if local.coords is not None and opts.jacobian_mode != "forward":
        raise InputError(f"jacobian_mode={opts.jacobian_mode!r} needs explicit x; sources with implicit "
                         "coordinates support jacobian_mode='forward' only")
    try:
        shape = model_output_shape(model, local.x_shape, p, implicit=local.coords is not None)
    except Exception as exc:  # noqa: BLE001 - any failure to trace the model is the user's to see
        raise InputError(f"calling the model f(x, *p0) with len(p0) = {p} parameters failed while tracing it "
                         f"with JAX: {type(exc).__name__}: {exc}. f must be JAX-traceable (use jax.numpy) and "
                         f"take x followed by one argument per entry of p0") from None
    if shape != (local.chunk_size,):
        raise InputError(f"the model f must return one value per point: for a chunk of {local.chunk_size} points "
                         f"it must return shape ({local.chunk_size},), but it returned shape {shape}")
