"""``fit --dry-run``: what the run would do, without fitting: points, parameters, the chunk grid and
each rank's share of it, memory per rank, the kernels that will be compiled."""
from __future__ import annotations

import os

from ..comm import Communicator
from .config import RunConfig


def count_points(cfg: RunConfig) -> tuple[int, int | None]:
    """(points, parameters or None when the data decide it) — local, reading metadata only."""
    data = cfg.data
    if cfg.kind == "demo":
        return int(data.get("n_points", 100_000)), 9
    if cfg.kind == "xpcs-simulated":
        from ..xpcs.stream import n_pairs

        n = int(data["n_phi"]) * n_pairs(int(data["n_t"]), cfg.model.get("triangle", "upper"))
        return n, None
    if cfg.kind == "xpcs":
        from ..xpcs.load import select
        from ..xpcs.stream import n_pairs

        from .run import _dt

        sel = select(data["file"], q=data["q"], phi_ranges=data.get("phi_ranges"), frames=data.get("frames"))
        _dt(data)                       # required when the file does not record it, as for the run
        sel.warn_about_q()              # the run's warning when the q ring used is far from the one asked for
        return sel.phi.size * n_pairs(sel.n_t, cfg.model.get("triangle", "upper")), None
    from .run import HDF5_SUFFIXES, read_table
    if os.path.splitext(data["file"])[1].lower() in HDF5_SUFFIXES:
        from ..data import HDF5Source
        n = HDF5Source(data["file"], y=data.get("y", "y"), x=data.get("x", "x"), sigma=data.get("sigma")).inspect()
    else:
        n = read_table(data)[1].size
    return n, None


def check_model(cfg: RunConfig) -> list[str] | None:
    """Kind "file": the model's parameter names, its function loaded as the run loads it and the
    [parameters] checked against them (local); None for the other kinds (XPCS: [parameters] checked
    against the mode's physical parameters)."""
    from .run import builtin_model, load_function, model_parameter_names, ordered_parameters, xpcs_parameters

    if cfg.kind.startswith("xpcs"):
        ordered_parameters(cfg, *xpcs_parameters(cfg))
    if cfg.kind != "file":
        return None

    model = builtin_model(cfg.model["name"]) if "name" in cfg.model else load_function(cfg.model["function"])
    names = model_parameter_names(model)
    ordered_parameters(cfg, names)
    return names


def plan(cfg: RunConfig, comm=None) -> list[str]:
    """Collective (rank 0 reads metadata): the plan's lines."""
    from ..options import make_options
    from .run import fit_options, folders

    with Communicator(comm) as hc:
        names = hc.agree(check_model, cfg)          # the function the run will load, from the same path
        made = hc.on_root(lambda: [f for _, f in folders(cfg, create=False) if not os.path.isdir(f)])
        n, p = hc.on_root(count_points, cfg)
        size = hc.size
    if p is None and names is not None:
        p = len(names)
    if p is None:
        if cfg.kind.startswith("xpcs"):
            from ..models.xpcs import MODES
            n_phi = cfg.data.get("n_phi") or 1
            scale = {"individual": 2 * n_phi, "fixed": 0}.get(cfg.model.get("scaling", "individual"), 2)
            p = MODES.get(cfg.model.get("mode", "laminar_flow"), 7) + scale
        else:
            p = len(cfg.parameters)
    opts = make_options(**fit_options(cfg))
    width = p                       # the columns of a Jacobian chunk
    block_sparse = cfg.kind.startswith("xpcs") and opts.parameter_groups is not None
    if block_sparse:                # XPCS: the physical parameters and two angles' contrast/offset at most
        from ..groups import declared_groups, kernel_columns
        from ..models.xpcs import angle_groups
        groups = declared_groups(angle_groups(cfg.model.get("mode", "laminar_flow"),
                                              cfg.model.get("scaling", "individual")), opts.parameter_groups)
        width = kernel_columns(groups, p)
    chunk = min(opts.chunk_size_for(width), n)
    n_chunks = -(-n // chunk)
    per_rank = (n_chunks // size, -(-n_chunks // size))
    # per rank: a chunk's x, y, w and its Jacobian block [J | r] (p + 1 columns), twice for double
    # buffering, in float64; plus the p x p normal equations
    bytes_per_rank = 8 * chunk * (3 + (width + 1)) * 2 + 8 * p * p * 4
    kernels = ["jacobian (" + ("block-sparse over the angles" if block_sparse else opts.jacobian_mode) + ")", "cost"]
    if opts.method == "hybrid":
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
