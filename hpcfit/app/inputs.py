"""The run's inputs, read and checked: the model a configuration names (a built-in, a module's or a
file's function) and its parameters in the model's order; the [data] files (tables read on rank 0,
the two-time file's frame time, the simulated data's file). Local helpers; the kinds of data
(:mod:`hpcfit.app.kinds`) and the run call them inside ``Communicator.agree``."""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import math
import os
import sys

import numpy as np

from ..errors import InputError
from .config import BUILTIN, RunConfig


def load_function(spec: str, where: str = "[model] function"):
    """``"package.module:function"`` or ``"path/to/file.py:function"`` → the function."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise InputError(f"{where}: {spec!r} must be \"package.module:function\" or \"path/to/file.py:function\"")
    if module_name.endswith(".py"):
        if not os.path.isfile(module_name):
            raise InputError(f"{where}: the file {module_name} does not exist")
        name = "hpcfit_user_" + hashlib.sha256(os.path.abspath(module_name).encode()).hexdigest()[:12]
        module = sys.modules.get(name)
        if module is None:
            spec_obj = importlib.util.spec_from_file_location(name, module_name)
            module = importlib.util.module_from_spec(spec_obj)
            try:
                spec_obj.loader.exec_module(module)
            except Exception as exc:  # noqa: BLE001 - the user's file: say what it raised
                raise InputError(f"{where}: importing {module_name} raised {type(exc).__name__}: {exc}") from None
            sys.modules[name] = module
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise InputError(f"{where}: cannot import module {module_name!r} ({exc})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise InputError(f"{where}: {module_name} has no function {attr!r}")
    return fn


def builtin_model(name: str):
    from .. import models

    assert name in BUILTIN
    return getattr(models, name)


def model_parameter_names(fn) -> list[str]:
    """The names after x in ``f(x, a, b, ...)``."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        raise InputError(f"[model]: cannot read the signature of {fn!r}") from None
    names = [p.name for p in params[1:] if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not names or any(p.kind == p.VAR_POSITIONAL for p in params):
        raise InputError(f"[model]: the model must be f(x, p1, p2, ...) with named parameters; got "
                         f"{getattr(fn, '__name__', fn)}{inspect.signature(fn)}")
    return names


def ordered_parameters(cfg: RunConfig, names: list[str], defaults: dict | None = None):
    """p0, lower, upper (fixed: lower = upper = value) in ``names`` order; a parameter the model does
    not have, or one it has but the config lacks (without a default), is an error naming it."""
    given = {p.name: p for p in cfg.parameters}
    unknown = [n for n in given if n not in names]
    if unknown:
        import difflib
        close = difflib.get_close_matches(unknown[0], names, n=1)
        raise InputError(f"{cfg.source} [parameters]: the model has no parameter {unknown[0]!r}"
                         f"{f'; did you mean {close[0]!r}?' if close else ''} Its parameters: {', '.join(names)}")
    missing = [n for n in names if n not in given and (defaults is None or n not in defaults)]
    if missing:
        raise InputError(f"{cfg.source} [parameters]: missing start value(s) for {', '.join(missing)} (the model's "
                         f"parameters are {', '.join(names)})")
    p0, lower, upper = [], [], []
    for n in names:
        p = given.get(n)
        if p is None:
            value, lo, hi = defaults[n]
        else:
            value, lo, hi = p.value, (p.value if p.fixed else p.lower), (p.value if p.fixed else p.upper)
            if defaults is not None and n in defaults and p.lower == -math.inf and p.upper == math.inf and not p.fixed:
                lo, hi = defaults[n][1], defaults[n][2]
        p0.append(value)
        lower.append(lo)
        upper.append(hi)
    return p0, lower, upper


# ---------------------------------------------------------------- data of kind "file"

def file_suffix(path: str) -> str:
    return os.path.splitext(path)[1].lower()


TABLE_SUFFIXES = (".npz", ".npy", ".csv", ".txt")


def read_table(data: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """x, y, sigma of a small NPZ/NPY/CSV file (read on rank 0; shared by the caller). ``x`` may
    name several columns/arrays: x then has shape (d, n), as a model of several coordinates takes it."""
    path, suffix = data["file"], file_suffix(data["file"])
    if not os.path.isfile(path):
        raise InputError(f"[data] file {path} does not exist")
    x_key, y_key, s_key = data.get("x"), data.get("y"), data.get("sigma")
    try:
        if suffix == ".npz":
            with np.load(path) as z:
                names = list(z.keys())

                def take(key, role):
                    if key not in z:
                        raise InputError(f"[data] {path}: no array {key!r} (for {role}); it holds {', '.join(names)}")
                    return np.asarray(z[key], dtype=float)

                x = (np.stack([take(k, "x").reshape(-1) for k in x_key]) if isinstance(x_key, list)
                     else take(x_key or "x", "x"))
                y = take(y_key or "y", "y")
                sigma = take(s_key, "sigma") if s_key is not None else (take("sigma", "sigma") if "sigma" in z
                                                                         else None)
            return x, y, sigma
        if suffix == ".npy":
            table = np.load(path)
            header = None
        else:
            with open(path) as fh:
                first = fh.readline()
            has_header = any(c.isalpha() for c in first.replace("e", "").replace("E", ""))
            delimiter = "," if "," in first else None
            table = np.loadtxt(path, delimiter=delimiter, skiprows=1 if has_header else 0, ndmin=2)
            header = [h.strip() for h in first.strip().split(delimiter)] if has_header else None
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file: name it
        raise InputError(f"[data] {path} cannot be read as {suffix[1:].upper()}: {type(exc).__name__}: {exc}") from None
    if table.ndim != 2:
        raise InputError(f"[data] {path}: expected a table with one column per quantity (x, y[, sigma]); "
                         f"got shape {table.shape}")

    n_rows, n_cols = table.shape
    if x_key is None and y_key is None and n_cols == n_rows and n_cols >= 8:
        raise InputError(f"[data] {path}: a square {n_rows} x {n_cols} table of numbers (a map saved as text, such as "
                         "a two-time map?), not a table of points; accepted: one column per quantity, named with "
                         "x = (one column or a list of several), y = and sigma = (by number or header name); "
                         "two-time maps are fitted with kind = \"xpcs\" from an APS 8-ID-I result file")

    def index(key, role):
        if isinstance(key, str):
            if header is None or key not in header:
                raise InputError(f"[data] {path}: no column named {key!r} (for {role})"
                                 + (f"; columns: {', '.join(header)}" if header else "; the file has no header row"))
            key = header.index(key)
        if not 0 <= key < n_cols:
            raise InputError(f"[data] {path}: column {key} (for {role}) does not exist; the table has "
                             f"{n_cols} columns")
        return key

    # defaults: x column 0; y the first column x does not use; sigma the column after y when x does not use it
    x_cols = [index(k, "x") for k in (x_key if isinstance(x_key, list) else [0 if x_key is None else x_key])]
    free = [c for c in range(n_cols) if c not in x_cols]
    y_col = index(y_key, "y") if y_key is not None else (free[0] if free else index(len(x_cols), "y"))
    s_col = (index(s_key, "sigma") if s_key is not None
             else (y_col + 1 if y_col + 1 < n_cols and y_col + 1 not in x_cols else None))
    x = np.asarray(table[:, x_cols].T if isinstance(x_key, list) else table[:, x_cols[0]], dtype=float)
    return (x, np.asarray(table[:, y_col], dtype=float),
            None if s_col is None else np.asarray(table[:, s_col], dtype=float))


#: Tables with more points than this are not sent to every rank: rank 0 converts them once to an
#: HDF5 file in the output directory, which every rank then streams (its own chunks only).
SHARE_LIMIT = int(os.environ.get("HPCFIT_TABLE_SHARE_LIMIT", 1 << 22))


def _table_stamp(path: str) -> dict:
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def table_on_root(cfg: RunConfig) -> tuple[str, tuple]:
    """Rank 0: ("arrays", (x, y, sigma)) for a table small enough to share, or ("hdf5", (path,
    holds sigma)) for the HDF5 file a big one was converted to (made now, or reused while the table
    is unchanged)."""
    from ..data.hdf5 import table_file_sigma, write_table_file

    data = cfg.data
    stamp = _table_stamp(data["file"]) if os.path.isfile(data["file"]) else None
    name = os.path.splitext(os.path.basename(data["file"]))[0]
    target = os.path.join(cfg.output_dir, f"table-{name}-"
                          f"{hashlib.sha256(json.dumps([stamp, data], sort_keys=True).encode()).hexdigest()[:12]}.h5")
    reuse = table_file_sigma(target, stamp) if stamp is not None else None
    if reuse is not None:
        return "hdf5", (target, reuse)
    x, y, sigma = read_table(data)
    if y.size <= SHARE_LIMIT:
        return "arrays", (x, y, sigma)
    os.makedirs(cfg.output_dir, exist_ok=True)
    return "hdf5", (write_table_file(target, x, y, sigma, stamp), sigma is not None)


def frame_time(data: dict, warn: bool = True) -> float:
    """[data] dt, or the one the files record (frame time x stride x averaging; a series' files
    must agree); a given dt that disagrees with a recorded one is used, with a warning."""
    import warnings

    from ..xpcs.load import detect_layout, recorded_dt, series_dt

    paths = data["file"] if isinstance(data["file"], list) else [data["file"]]
    recorded = []
    for path in paths:
        detect_layout(path)            # a file without two-time maps is named as such before dt is asked for
        recorded.append(recorded_dt(path))
    if "dt" not in data:
        return series_dt(recorded, "[data] ")
    for value, what in recorded:
        if warn and value is not None and abs(data["dt"] - value) > 1e-9 * value:
            warnings.warn(f"[data] dt = {data['dt']:g} s is used, but {what}", UserWarning, stacklevel=2)
    return data["dt"]


def simulated_path(cfg: RunConfig) -> str:
    """The simulation's file; with the default name, one per set of settings (a hash in the name),
    so a changed [data] section never reuses data made for another."""
    settings = {k: v for k, v in sorted(cfg.data.items()) if k != "file"}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    path = cfg.data["file"]
    default = os.path.join(cfg.output_dir, "simulated-xpcs.h5")
    return path if path != default else os.path.join(cfg.output_dir, f"simulated-xpcs-{digest}.h5")


def is_simulation(path: str) -> bool:
    """A file simulate() wrote (a stream file, or a beamline file of several rings)."""
    from ..xpcs.simulate import is_simulated_file
    from ..xpcs.stream import is_stream_file

    return os.path.isfile(path) and (is_stream_file(path) or is_simulated_file(path))


def xpcs_parameters(cfg: RunConfig) -> tuple[list[str], dict]:
    """The physical parameters of the XPCS mode and their defaults (start, lower, upper);
    contrast/offset start from the data."""
    from ..models.xpcs import MODES, PHYSICAL_NAMES
    from ..xpcs.defaults import DEFAULT_BOUNDS, DEFAULT_P0

    names = list(PHYSICAL_NAMES[:MODES.get(cfg.model.get("mode", "laminar_flow"), 7)])
    return names, {n: (DEFAULT_P0[n], *DEFAULT_BOUNDS[n]) for n in names}
