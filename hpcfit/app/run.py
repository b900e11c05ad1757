"""``python -m hpcfit fit CONFIG``: from a validated :class:`~hpcfit.app.config.RunConfig` to a fit
and its result directory. Collective under MPI: every rank runs the same steps, each local step
inside ``Communicator.agree`` so that a failure on one rank is the same error on every rank."""
from __future__ import annotations

import os

import numpy as np

from ..comm import Communicator
from ..errors import InputError
from .config import RunConfig
from ..output.result_file import save_result
from .inputs import ordered_parameters
from .kinds import CONFIG_KINDS


#: Exit codes of ``python -m hpcfit fit``.
EXIT_OK, EXIT_ERROR, EXIT_UNTRUSTED, EXIT_PREEMPTED = 0, 1, 2, 75


def prepare(cfg: RunConfig, comm=None, say=print):
    """Collective: the model and the data, checked up front, as the object of their kind
    (:mod:`hpcfit.app.kinds`: a table, an HDF5 file or XPCS two-time maps). XPCS beamline files are
    streamed as they are (converted to a stream file once with ``convert = true`` or ``triangle =
    "both"``), simulated XPCS data made on first use."""
    return CONFIG_KINDS[cfg.kind].prepare(cfg, comm, say)


# ---------------------------------------------------------------- folders

def folders(cfg: RunConfig, create: bool = True) -> list[tuple[str, str]]:
    """Local: the folders the run writes into ((key, folder): the output directory and the
    checkpoint's folder), made when missing (``create``) or only checked that they can be made (the
    dry run). Every problem is one error naming the key and the folder."""
    wanted = [("[output] directory", cfg.output_dir)]
    if "path" in cfg.checkpoint:
        wanted.append(("[checkpoint] path", os.path.dirname(os.path.abspath(cfg.checkpoint["path"]))))
    for key, folder in wanted:
        if os.path.isdir(folder):
            if not os.access(folder, os.W_OK | os.X_OK):
                raise InputError(f"{key}: the folder {folder} is not writable")
            continue
        top = folder                                    # the nearest part of the path that exists
        while not os.path.exists(top) and os.path.dirname(top) != top:
            top = os.path.dirname(top)
        if not os.path.isdir(top):
            raise InputError(f"{key}: the folder {folder} cannot be made: {top} is a file, not a folder")
        if not os.access(top, os.W_OK | os.X_OK):
            raise InputError(f"{key}: the folder {folder} cannot be made: {top} is not writable")
        if create:
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as exc:
                raise InputError(f"{key}: the folder {folder} cannot be made: {exc.strerror or exc}") from None
    return wanted


# ---------------------------------------------------------------- the fit

def fit_options(cfg: RunConfig) -> dict:
    """[fit] plus [checkpoint] as keywords of the fit. The application shows its per-iteration table
    unless ``verbose = 0`` (or ``--quiet``); the Python API is quiet by default, like scipy."""
    options = {"verbose": 1, **cfg.fit}
    ck = cfg.checkpoint
    if "path" in ck:
        options["checkpoint"] = ck["path"]
        options["resume"] = ck.get("resume", "auto")
    elif ck.get("resume") not in (None, False):
        options["resume"] = ck["resume"]
    if "every" in ck:
        options["checkpoint_every"] = ck["every"]
    if "seconds" in ck:
        options["checkpoint_seconds"] = ck["seconds"]
    if ck.get("force"):
        options["resume_force"] = True
    if options.get("resume") is False or (options.get("resume") == "auto" and "checkpoint" not in options):
        options["resume"] = None      # "auto" with no checkpoint path (e.g. from slurm/fit.sbatch): a new fit
    return options


def run_fit(cfg: RunConfig, prepared, comm=None):
    """Collective: the fit the configuration describes (the output and checkpoint folders made first)."""
    options = fit_options(cfg)
    with Communicator(comm) as hc:
        p0, lower, upper = hc.agree(ordered_parameters, cfg, *prepared.parameters(cfg))
        hc.agree(lambda: folders(cfg) if hc.is_root else None)   # made once data, model and parameters are good
    return prepared.fit(cfg, p0, lower, upper, options, comm)


def exit_code(result) -> int:
    """0 converged and trustworthy; 2 finished but not converged or not trustworthy."""
    return EXIT_OK if (result.success and result.trustworthy) else EXIT_UNTRUSTED


# ---------------------------------------------------------------- results

def write_results(cfg: RunConfig, prepared, result, comm=None) -> tuple[str, str | None]:
    """Collective: rank 0 writes ``result.json`` and ``result.h5`` into the output directory (the
    resolved configuration and the data's description with them) and the plots; every rank returns
    the directory and rank 0 a note when the plots were skipped (one starting "warning:" when one
    could not be drawn: a plot never fails the fit)."""
    from .. import __version__
    from .config import dump_toml

    out = cfg.output_dir

    def write():
        import platform

        import h5py
        import jax

        os.makedirs(out, exist_ok=True)
        extra = {"config": cfg.raw, "config_file": os.path.abspath(cfg.source), "config_toml": dump_toml(cfg.raw),
                 "data": data_fingerprint(cfg, prepared, result),
                 "versions": {"hpcfit": __version__, "python": platform.python_version(), "jax": jax.__version__,
                              "numpy": np.__version__, "h5py": h5py.__version__}}
        save_result(result, os.path.join(out, "result.json"), extra)
        save_result(result, os.path.join(out, "result.h5"), extra,
                    links={"per_point": "per_point.h5"} if cfg.output.get("per_point", False) else None)
        if not cfg.output.get("plots", True):
            return None
        from ..output.plots import write_plots

        x_key = cfg.data.get("x")
        names = [str(k) for k in x_key] if isinstance(x_key, list) else None
        _, note = write_plots(result, out, **prepared.plot_data(), x_names=names)
        return note

    with Communicator(comm) as hc:
        note = hc.agree(lambda: write() if hc.is_root else None)
        if cfg.output.get("per_point", False):
            from ..output.per_point import write_per_point

            write_per_point(os.path.join(out, "per_point.h5"), result, hc.agree(per_point_source, prepared, cfg, result), hc,
                            int(result.info["chunk_size"]))
    return out, note


def data_fingerprint(cfg: RunConfig, prepared, result) -> dict:
    """What identifies the fitted data in the result files: the kind, the source, the points, and
    the file's size, modification time and inode (for a table, the SHA-256 of x, y and sigma as
    fitted; hashing a 10⁹-point file would cost a pass, so files are identified by their stat)."""
    return prepared.fingerprint(cfg, result)


def per_point_source(prepared, cfg: RunConfig, result=None):
    """The fitted points again, as a data source (opened anew: the fit closed its own), with the σ
    the fit used."""
    return prepared.per_point_source(cfg, result)
