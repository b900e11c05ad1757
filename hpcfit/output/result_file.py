"""Result files that last: ``result.json`` (every field of a FitResult, exact: floats are written
with ``repr`` and read back to the same bits; NaN and ±inf as the strings "NaN", "Infinity",
"-Infinity" so that strict JSON readers accept the file) and ``result.h5`` (the same JSON as an
attribute, plus the arrays and the iteration history as datasets for HDF5 tools).

``save_result(result, path)`` and :func:`load_result` round-trip both.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..result import ExploreReport, FitResult, IterationRecord, Status, WarmupReport

FORMAT, FORMAT_VERSION = "hpcfit-result", 1
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def jsonable(value):
    """Plain JSON types; arrays as (nested) lists; non-finite floats as strings."""
    if isinstance(value, float) or isinstance(value, np.floating):
        v = float(value)
        return v if math.isfinite(v) else ("NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity"))
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, enum.Enum):
        return int(value)
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, type(None))):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return repr(value)


def _floats(value) -> np.ndarray:
    def conv(v):
        if isinstance(v, list):
            return [conv(x) for x in v]
        return _SPECIAL.get(v, v) if isinstance(v, str) else v
    return np.asarray(conv(value), dtype=float)


def _float(value) -> float:
    return _SPECIAL[value] if isinstance(value, str) else float(value)


def result_document(result, extra: dict | None = None) -> dict:
    """What result.json holds: a readable summary, then every field of the FitResult."""
    from .. import __version__

    names = result.names or [f"p[{i}]" for i in range(result.n_params)]
    doc = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "hpcfit": __version__,
        "parameters": {n: {"value": jsonable(v), "error": jsonable(e)}
                       for n, v, e in zip(names, result.popt, result.perr)},
        "reduced_chi2": jsonable(result.reduced_chi2),
        "result": {f.name: jsonable(getattr(result, f.name)) for f in dataclasses.fields(result)
                   if f.name != "model"},                 # the model is code: it is not saved
    }
    doc.update(jsonable(extra or {}))
    return doc


def from_document(doc: dict, where: str = "result"):
    """A FitResult from :func:`result_document`'s output."""

    if doc.get("format") != FORMAT:
        raise InputError(f"{where} is not an hpcfit result file (no format={FORMAT!r})")
    r = dict(doc["result"])
    for key in ("popt", "pcov", "perr", "grad"):
        r[key] = _floats(r[key])
    r["active_mask"] = np.asarray(r["active_mask"], dtype=int)
    r["fixed"] = None if r.get("fixed") is None else np.asarray(r["fixed"], dtype=bool)
    for key in ("cost", "chi2", "optimality"):
        r[key] = _float(r[key])
    r["status"] = Status[r["status"]]
    r["history"] = [IterationRecord(**{k: (_float(v) if isinstance(v, (float, str)) else v) for k, v in row.items()})
                    for row in r["history"]]
    r["timings"] = {k: _float(v) for k, v in r["timings"].items()}
    r["trust_issues"] = tuple(r.get("trust_issues", ()))
    if r.get("warmup") is not None:
        r["warmup"] = WarmupReport(**{k: (_float(v) if isinstance(v, str) and v in _SPECIAL else v)
                                      for k, v in r["warmup"].items()})
    if r.get("explore") is not None:
        r["explore"] = ExploreReport(**{**r["explore"], "candidates": tuple(r["explore"]["candidates"]),
                                        "skipped": tuple(r["explore"].get("skipped", ()))})
    known = {f.name for f in dataclasses.fields(FitResult)}
    return FitResult(**{k: v for k, v in r.items() if k in known})


def save_result(result: FitResult, path, extra: dict | None = None, links: dict | None = None) -> Path:
    """Write ``result`` to ``path``: JSON for ``.json``, HDF5 for ``.h5``/``.hdf5``. Written to a
    temporary name and renamed, so a reader never sees half a file. ``links`` (HDF5 only): name →
    file, external links to the root of other files beside it (the per-point outputs)."""
    path = Path(path)
    doc = result_document(result, extra)
    text = json.dumps(doc, indent=1, allow_nan=False)
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".json":
        tmp.write_text(text + "\n")
    elif path.suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(tmp, "w") as f:
            f.attrs["format"], f.attrs["format_version"] = FORMAT, FORMAT_VERSION
            f.attrs["result_json"] = text
            names = result.names or [f"p[{i}]" for i in range(result.n_params)]
            f["names"] = np.array(names, dtype=h5py.string_dtype())
            for key in ("popt", "perr", "pcov", "grad", "active_mask"):
                f[key] = np.asarray(getattr(result, key))
            columns = [fl.name for fl in dataclasses.fields(IterationRecord)]
            table = np.array([[getattr(row, c) for c in columns] for row in result.history], dtype=float)
            f.create_dataset("history", data=table.reshape(-1, len(columns))).attrs["columns"] = ",".join(columns)
            for name, target in (links or {}).items():
                f[name] = h5py.ExternalLink(target, "/")
    else:
        raise InputError(f"`path` must end in .json, .h5 or .hdf5; got {path}")
    os.replace(tmp, path)
    return path


def load_result(path):
    """Read a FitResult back from ``result.json`` or ``result.h5``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"result file {path} does not exist")
    try:
        if path.suffix == ".json":
            doc = json.loads(path.read_text())
        else:
            import h5py

            with h5py.File(path, "r") as f:
                doc = json.loads(f.attrs["result_json"])
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"result file {path} cannot be read: {type(exc).__name__}: {exc}") from None
    return from_document(doc, str(path))
