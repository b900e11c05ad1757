"""``fit --dry-run``: what the run would do, without fitting: points, parameters, the chunk grid and
each rank's share of it, memory per rank, the kernels that will be compiled."""
from __future__ import annotations

import os

from ..comm import Communicator
from .config import RunConfig


def count_points(cfg: RunConfig) -> tuple[int, int | None]:
    """(points, parameters or None when the model decides) — local, reading metadata only."""
    from .kinds import CONFIG_KINDS

    return CONFIG_KINDS[cfg.kind].count_points(cfg)


def check_model(cfg: RunConfig) -> list[str] | None:
    """Kind "file": the model's parameter names, its function loaded as the run loads it and the
    [parameters] checked against them (local); None for the other kinds (XPCS: [parameters] checked
    against the mode's physical parameters)."""
    from .kinds import CONFIG_KINDS

    return CONFIG_KINDS[cfg.kind].check(cfg)


def plan(cfg: RunConfig, comm=None) -> list[str]:
    """Collective (rank 0 reads metadata): the plan's lines."""
    from ..options import make_options
    from .kinds import CONFIG_KINDS
    from .run import fit_options, folders

    with Communicator(comm) as hc:
        names = hc.agree(check_model, cfg)          # the function the run will load, from the same path
        made = hc.on_root(lambda: [f for _, f in folders(cfg, create=False) if not os.path.isdir(f)])
        n, p = hc.on_root(count_points, cfg)
        size = hc.size
    if p is None:
        p = len(names) if names is not None else len(cfg.parameters)
    opts = make_options(**fit_options(cfg))
    width = p                       # the columns of a Jacobian chunk
    groups = CONFIG_KINDS[cfg.kind].angle_groups(cfg) if opts.parameter_groups is not None else None
    block_sparse = groups is not None
    if block_sparse:                # XPCS: the physical parameters and two angles' contrast/offset at most
        from ..groups import declared_groups, kernel_columns
        width = kernel_columns(declared_groups(groups, opts.parameter_groups), p)
    chunk = min(opts.chunk_size_for(width), n)
    n_chunks = -(-n // chunk)
    per_rank = (n_chunks // size, -(-n_chunks // size))
    # per rank: a chunk's x, y, w and its Jacobian block [J | r] (p + 1 columns), twice for double
    # buffering, in float64; plus the p x p normal equations
    bytes_per_rank = 8 * chunk * (3 + (width + 1)) * 2 + 8 * p * p * 4
    kernels = ["jacobian (" + ("block-sparse over the angles" if block_sparse else opts.jacobian_mode) + ")", "cost"]
    from ..phases.explore import WHOLE_DATA

    if opts.method == "hybrid" and n <= WHOLE_DATA * opts.explore_sample_points:
        kernels.append(f"phase 1 on all {n} points with the same kernels")
    elif opts.method == "hybrid":
        kernels.append("phase 1: a block-sparse Jacobian kernel for the sample (its chunk spans every angle)"
                       if block_sparse else "phase 1: the same two on the sample's chunk shape (none extra when it "
                       "matches)")
    return [
        "# plan",
        f"points: {n}",
        f"parameters: {p}",
        f"ranks: {size}",
        f"chunk size: {chunk} points, {n_chunks} chunks on the global grid, {per_rank[0]}-{per_rank[1]} per rank",
        f"memory per rank for the fit: about {bytes_per_rank / 2**20:.1f} MiB (chunk buffers; data held in "
        f"memory for in-memory arrays: {8 * 3 * n / 2**20 / size:.1f} MiB per rank)",
        f"compiled kernels: {', '.join(kernels)}",
        f"method: {opts.method}; checkpoint: {opts.checkpoint or 'none'}; output: {cfg.output_dir}",
    ] + [f"folder to be made by the run: {f}" for f in dict.fromkeys(made)]
