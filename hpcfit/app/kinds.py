"""The kinds of prepared data a run fits, one class each, and the [data] kinds of the configuration
that prepare them.

A [data] section is prepared (collective) into one of

    :class:`Table`     x, y, sigma in memory on every rank (the demo data, a small table file)
    :class:`HDF5Data`  an HDF5 file streamed chunk by chunk (an HDF5 file, or a big table converted to one)
    :class:`TwoTime`   XPCS two-time maps: a beamline file's selection or a stream file

and the run asks that object for what differs between them: the parameters, the fit, the plots'
data, the points again for the per-point file, and the data's fingerprint in the result files.
:data:`CONFIG_KINDS` maps each [data] ``kind`` of :data:`~hpcfit.app.config.DATA_KINDS` to how it is
prepared and what the dry run reads of it.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..comm import Communicator
from ..errors import InputError
from .config import HDF5_SUFFIXES, RunConfig
from .inputs import (TABLE_SUFFIXES, builtin_model, file_suffix, frame_time, is_simulation, load_function,
                     model_parameter_names, ordered_parameters, read_table, simulated_path, table_on_root,
                     xpcs_parameters)


class PreparedData:
    """What the fit needs, built from [data] and [model] (the same on every rank)."""

    describe: str = ""

    def parameters(self, cfg: RunConfig) -> tuple[list[str], dict | None]:
        """The parameters' names in the model's order, and their defaults (start, lower, upper) or None."""
        return self.names, None

    def fit(self, cfg: RunConfig, p0, lower, upper, options: dict, comm=None):
        """Collective: the fit of these data from ``p0`` within [lower, upper]."""
        raise NotImplementedError

    def plot_data(self) -> dict:
        """The keywords ``curve`` (a callable giving (x, y, sigma) blocks) and ``xpcs`` of ``write_plots``."""
        return {"curve": None, "xpcs": None}

    def per_point_source(self, cfg: RunConfig, result=None):
        """The fitted points again, as a data source (opened anew: the fit closed its own)."""
        raise NotImplementedError

    def _file(self, cfg: RunConfig) -> str | None:
        return cfg.data.get("file")

    def fingerprint(self, cfg: RunConfig, result) -> dict:
        """What identifies the fitted data in the result files: the kind, the source, the points, and
        the file's size, modification time and inode (hashing a 10⁹-point file would cost a pass, so
        files are identified by their stat)."""
        out = {"kind": cfg.kind, "source": result.info.get("source"), "n_points": result.n_points}
        path = self._file(cfg)
        paths = list(path) if isinstance(path, (list, tuple)) else [path]
        stats = [_file_stat(p) for p in paths if p and os.path.isfile(p)]
        if stats:
            out["file"] = stats[0] if len(paths) == 1 else stats       # a series: one entry per file
        return out


def _file_stat(path: str) -> dict:
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


@dataclass
class Table(PreparedData):
    """x, y, sigma in memory (a small table, shared by rank 0; the demo data). ``absolute_sigma``: the
    default of [data] absolute_sigma (the demo's sigma is the true noise)."""

    model: object
    names: list
    arrays: tuple
    describe: str = ""
    absolute_sigma: bool = False

    def fit(self, cfg, p0, lower, upper, options, comm=None):
        from ..api import curve_fit

        x, y, sigma = self.arrays
        return curve_fit(self.model, x, y, p0=p0, sigma=sigma, bounds=(lower, upper), comm=comm,
                         absolute_sigma=bool(cfg.data.get("absolute_sigma", self.absolute_sigma)), **options)

    def plot_data(self):
        return {"curve": lambda: iter([self.arrays]), "xpcs": None}     # one block: the table is small

    def per_point_source(self, cfg, result=None):
        from ..data import ArraySource

        x, y, sigma = self.arrays
        return ArraySource(x, y, sigma)

    def fingerprint(self, cfg, result):
        """As for every kind, plus the SHA-256 of x, y and sigma as fitted."""
        out = super().fingerprint(cfg, result)
        digest = hashlib.sha256()
        for a in self.arrays:
            if a is not None:
                digest.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
        out["sha256"] = digest.hexdigest()
        return out


@dataclass
class HDF5Data(PreparedData):
    """An HDF5 file every rank streams its own chunks of (an :class:`~hpcfit.data.HDF5Source`)."""

    model: object
    names: list
    source: object
    describe: str = ""

    def fit(self, cfg, p0, lower, upper, options, comm=None):
        from ..api import fit

        return fit(self.model, self.source, p0, bounds=(lower, upper), comm=comm,
                   absolute_sigma=bool(cfg.data.get("absolute_sigma", False)), **options)

    def plot_data(self):
        return {"curve": self.source.blocks if self.source.x is not None else None, "xpcs": None}

    def per_point_source(self, cfg, result=None):
        return self.source


@dataclass
class TwoTime(PreparedData):
    """XPCS two-time maps: ``data`` is a beamline file's selection (``hpcfit.xpcs.beamline``, its maps
    streamed as they are) or the path of a stream file; the model is the [model] mode's."""

    data: object
    describe: str = ""

    def parameters(self, cfg):
        """The mode's physical parameters and their defaults; contrast/offset start from the data."""
        return xpcs_parameters(cfg)

    def fit(self, cfg, p0, lower, upper, options, comm=None):
        from ..xpcs import fit as xpcs_fit

        kw = {k: cfg.model[k] for k in ("L", "scaling", "form", "triangle", "scan") if k in cfg.model}
        if "noise" in cfg.model:
            kw["noise"] = None if cfg.model["noise"] == "none" else cfg.model["noise"]
        if cfg.model.get("per_file"):
            kw["per_file"] = tuple(cfg.model["per_file"])
        return xpcs_fit(self.data, mode=cfg.model.get("mode", "laminar_flow"), p0=p0, bounds=(lower, upper),
                        comm=comm, **kw, **options)

    def plot_data(self):
        return {"curve": None, "xpcs": self.data}

    def per_point_source(self, cfg, result=None):
        """The fit's points, with the σ the fit used (``result``'s noise) for normalized residuals."""
        from ..xpcs.fit import fit_points, weighted_points

        triangle = cfg.model.get("triangle", "upper")
        noise = None if result is None else result.info.get("xpcs", {}).get("noise")
        return weighted_points(fit_points(self.data, triangle), noise, triangle)

    def _file(self, cfg):
        return getattr(self.data, "path", self.data)


# ---------------------------------------------------------------- [data] kinds: preparing (collective)

def prepare_demo(cfg: RunConfig, comm=None, say=print) -> Table:
    from ..demo import demo_data
    from ..models import gaussian_peaks

    arrays = demo_data(cfg.data.get("n_points", 100_000), cfg.data.get("seed", 2024))
    return Table(gaussian_peaks, model_parameter_names(gaussian_peaks), arrays,
                 describe="built-in demo data (three Gaussian peaks)", absolute_sigma=True)


def _model(cfg: RunConfig):
    return builtin_model(cfg.model["name"]) if "name" in cfg.model else load_function(cfg.model["function"])


def prepare_file(cfg: RunConfig, comm=None, say=print) -> Table | HDF5Data:
    """An HDF5 file (checked, then streamed) or a table (read on rank 0 and shared, or converted
    once to an HDF5 file when it is too big to share)."""
    from ..data import HDF5Source

    data = cfg.data
    with Communicator(comm) as hc:
        model = hc.agree(_model, cfg)
        names = hc.agree(model_parameter_names, model)
        suffix = file_suffix(data["file"])
        if suffix in HDF5_SUFFIXES:
            def check():
                if not os.path.isfile(data["file"]):
                    raise InputError(f"[data] file {data['file']} does not exist")
                for role in ("y", "x", "sigma"):
                    if isinstance(data.get(role), int):
                        raise InputError(f"[data] `{role}` must name a dataset of the HDF5 file; got {data[role]}")
                source = HDF5Source(data["file"], y=data.get("y", "y"), x=data.get("x", "x"), sigma=data.get("sigma"))
                source.inspect()            # the file and its datasets, checked before any fit
                return source

            return HDF5Data(model, names, hc.agree(check), describe=f"HDF5 {data['file']}")
        if suffix not in TABLE_SUFFIXES:      # the same on every rank: the configuration is
            raise InputError(f"[data] file {data['file']}: unknown format {suffix!r}; use HDF5 "
                             f"({', '.join(HDF5_SUFFIXES)}) or {', '.join(TABLE_SUFFIXES)}")
        how, what = hc.on_root(table_on_root, cfg)
    if how == "hdf5":                    # too big to share: converted once, streamed by every rank
        path, has_sigma = what
        source = HDF5Source(path, y="y", x="x", sigma="sigma" if has_sigma else None)
        return HDF5Data(model, names, source, describe=f"HDF5 {path} (from {data['file']})")
    return Table(model, names, what, describe=data["file"])


def prepare_simulated(cfg: RunConfig, comm=None, say=print) -> TwoTime:
    """Simulated XPCS data, made on first use and reused while [data] is unchanged: a stream file
    for one q ring, a beamline file (APS-U layout) fitted with every ring for a list of rings."""
    rings = isinstance(cfg.data["q"], list)
    with Communicator(comm) as hc:
        path = hc.agree(simulated_path, cfg)
        exists = hc.on_root(is_simulation, path)
    if exists:
        say(f"hpcfit: using the simulated data made earlier for this configuration: {path}")
    else:
        from ..xpcs import simulate

        os.makedirs(os.path.dirname(path), exist_ok=True)
        args = {k: v for k, v in cfg.data.items() if k not in ("kind", "file")}
        summary = simulate(path, layout="aps-u" if rings else "stream", comm=comm, **args)
        say(f"hpcfit: simulated XPCS data: {summary.brief()}")
    if not rings:
        return TwoTime(path, describe=path)
    from ..xpcs import beamline

    with Communicator(comm) as hc:
        return TwoTime(hc.agree(beamline, path, q="all", dt=cfg.data["dt"]), describe=path)


def prepare_xpcs(cfg: RunConfig, comm=None, say=print) -> TwoTime:
    """A beamline file's maps, streamed as they are (converted to a stream file once with
    ``convert = true`` or ``triangle = "both"``)."""
    data = cfg.data
    triangle = cfg.model.get("triangle", "upper")
    convert = data.get("convert", False) or triangle != "upper"
    if convert:
        from ..xpcs.load import one_ring

        one_ring(data["q"], "[data] convert = true or [model] triangle = \"both\" (a stream file)")
        if isinstance(data["file"], list):
            raise InputError("[data] `file`: convert = true or [model] triangle = \"both\" (a stream file) takes one "
                             f"file; got a series of {len(data['file'])}. A series is fitted straight from its files")
    if not convert:                                                  # the maps streamed as they are
        from ..xpcs import beamline

        with Communicator(comm) as hc:
            dt = hc.agree(frame_time, data, hc.is_root)             # rank 0 warns
            ref = hc.agree(beamline, data["file"], q=data["q"], dt=dt, phi_ranges=data.get("phi_ranges"),
                           frames=data.get("frames"))
        series = isinstance(data["file"], list)
        return TwoTime(ref, describe=f"{len(data['file'])} files: {', '.join(data['file'])}" if series else data["file"])
    from ..xpcs import prepare_stream
    from ..xpcs.stream import converted_path

    out = os.path.join(cfg.output_dir, converted_path(data["file"], data["q"], data.get("phi_ranges"),
                                                      data.get("frames"), triangle).name)
    with Communicator(comm) as hc:
        hc.agree(lambda: os.makedirs(cfg.output_dir, exist_ok=True) if hc.is_root else None)
        dt = hc.agree(frame_time, data, hc.is_root)
    stream = prepare_stream(data["file"], q=data["q"], dt=dt, phi_ranges=data.get("phi_ranges"),
                            frames=data.get("frames"), triangle=triangle, out=out, comm=comm)
    return TwoTime(os.fspath(stream), describe=data["file"])


# ---------------------------------------------------------------- [data] kinds: the dry run (local)

def _demo_points(cfg: RunConfig) -> tuple[int, int]:
    return int(cfg.data.get("n_points", 100_000)), 9


def _file_points(cfg: RunConfig) -> tuple[int, None]:
    data = cfg.data
    if file_suffix(data["file"]) in HDF5_SUFFIXES:
        from ..data import HDF5Source

        source = HDF5Source(data["file"], y=data.get("y", "y"), x=data.get("x", "x"), sigma=data.get("sigma"))
        return source.inspect(), None
    return read_table(data)[1].size, None


def _xpcs_physical_count(cfg: RunConfig) -> int:
    """The physical parameters as fitted: the mode's, those of [model] per_file once per file."""
    from ..models.xpcs import MODES

    files = cfg.data.get("file")
    n_files = len(files) if isinstance(files, list) else 1
    return MODES.get(cfg.model.get("mode", "laminar_flow"), 7) + len(cfg.model.get("per_file", ())) * (n_files - 1)


def _xpcs_parameter_count(cfg: RunConfig, n_phi: int) -> int:
    """Physical parameters, then contrast and offset: per angle (individual), shared, or none (fixed)."""
    scale = {"individual": 2 * n_phi, "fixed": 0}.get(cfg.model.get("scaling", "individual"), 2)
    return _xpcs_physical_count(cfg) + scale


def _simulated_points(cfg: RunConfig) -> tuple[int, int]:
    from ..pairs import n_pairs

    data = cfg.data
    n_maps = int(data["n_phi"]) * len(np.atleast_1d(data["q"]))
    return n_maps * n_pairs(int(data["n_t"]), cfg.model.get("triangle", "upper")), _xpcs_parameter_count(cfg, n_maps)


def _xpcs_points(cfg: RunConfig) -> tuple[int, int]:
    from ..xpcs.load import select
    from ..pairs import n_pairs

    data = cfg.data
    paths = data["file"] if isinstance(data["file"], list) else [data["file"]]
    parts = [select(p, q=data["q"], phi_ranges=data.get("phi_ranges"), frames=data.get("frames")) for p in paths]
    frame_time(data)                       # required when the file does not record it, as for the run
    for sel in parts:
        sel.warn_about_q()          # the run's warning when the q ring used is far from the one asked for
    n_maps = sum(sel.phi.size for sel in parts)
    return n_maps * n_pairs(parts[0].n_t, cfg.model.get("triangle", "upper")), _xpcs_parameter_count(cfg, n_maps)


def _no_check(cfg: RunConfig) -> None:
    return None


def _check_file_model(cfg: RunConfig) -> list[str]:
    """The model's parameter names, its function loaded as the run loads it and [parameters]
    checked against them."""
    names = model_parameter_names(_model(cfg))
    ordered_parameters(cfg, names)
    return names


def _check_xpcs_parameters(cfg: RunConfig) -> None:
    names, defaults = xpcs_parameters(cfg)
    ordered_parameters(cfg, names, defaults)
    per_file = cfg.model.get("per_file", [])
    if any(n not in names for n in per_file) or len(set(per_file)) != len(per_file):
        raise InputError(f"{cfg.source}: [model] `per_file` must name physical parameters of the mode "
                         f"({', '.join(names)}), each once; got {per_file!r}")
    if per_file and not isinstance(cfg.data.get("file"), list):
        raise InputError(f"{cfg.source}: [model] `per_file` ({', '.join(per_file)}) fits parameters once per file of "
                         "a series: [data] kind = \"xpcs\" with file = [\"first.hdf\", \"second.hdf\", ...]")


def _xpcs_groups(cfg: RunConfig):
    from ..models.xpcs import angle_groups

    return angle_groups(cfg.model.get("mode", "laminar_flow"), cfg.model.get("scaling", "individual"),
                        _xpcs_physical_count(cfg))


@dataclass(frozen=True)
class ConfigKind:
    """One [data] kind: ``prepare(cfg, comm, say)`` (collective) makes its :class:`PreparedData`; for
    the dry run (local, metadata only), ``count_points(cfg)`` gives (points, parameters or None when
    the model decides), ``check(cfg)`` checks [model] and [parameters] (the model's parameter names,
    or None) and ``angle_groups(cfg)`` the parameter groups of a block-sparse Jacobian (or None)."""

    prepare: Callable
    count_points: Callable
    check: Callable = _no_check
    angle_groups: Callable = _no_check


#: The [data] kinds of :data:`~hpcfit.app.config.DATA_KINDS` (the TOML interface), each with how it is prepared.
CONFIG_KINDS = {
    "demo": ConfigKind(prepare_demo, _demo_points),
    "file": ConfigKind(prepare_file, _file_points, check=_check_file_model),
    "xpcs": ConfigKind(prepare_xpcs, _xpcs_points, check=_check_xpcs_parameters, angle_groups=_xpcs_groups),
    "xpcs-simulated": ConfigKind(prepare_simulated, _simulated_points, check=_check_xpcs_parameters,
                                 angle_groups=_xpcs_groups),
}
