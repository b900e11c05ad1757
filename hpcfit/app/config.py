"""The run configuration: a TOML file, read and validated once, on every rank, before any data is
read. Every error names the file, the section and the key, what was wrong and what is allowed
(with the closest valid name for a misspelling).

    [data]        where the points come from (see DATA_KINDS)
    [model]       a built-in model by name, or a user function "package.module:function" / "file.py:function"
    [parameters]  one entry per parameter: name = {value = ..., min = ..., max = ..., fixed = ...}
    [fit]         any FitOptions field by its name (method, loss, ftol, max_iterations, chunk_size, ...)
    [checkpoint]  path, every, seconds, resume, force
    [output]      directory, per_point, plots
"""
from __future__ import annotations

import difflib
import math
import os
import tomllib
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError

#: What [data] may describe, and the keys each kind takes (required keys first in the docs).
DATA_KINDS = {
    "file": {"file": "path", "y": "str|int", "x": "columns", "sigma": "str|int", "absolute_sigma": "bool"},
    "xpcs": {"file": "path|paths", "q": "rings", "dt": "float", "phi_ranges": "ranges", "frames": "frames",
             "convert": "bool"},
    "xpcs-simulated": {"file": "path", "n_phi": "int", "n_t": "int", "mode": "str", "dt": "float",
                       "q": "float|floats", "L": "float", "params": "floats", "contrast": "float|floats",
                       "offset": "float|floats", "noise": "float|floats", "noise_growth": "float", "seed": "int", "phi": "floats"},
}
DATA_KINDS["demo"] = {"n_points": "int", "seed": "int"}
# one-time g2 of multitau results (hpcfit.xpcs.fit_g2): files or glob patterns, every q bin fitted
DATA_KINDS["g2"] = {"file": "path|paths", "dt": "float", "tau_range": "floats"}
DATA_KINDS["g2-simulated"] = {"file": "path", "n_files": "int", "q": "floats", "D": "float", "exponent": "float",
                              "form": "str", "contrast": "float", "baseline": "float", "beta": "float",
                              "noise": "float", "seed": "int"}
REQUIRED = {"demo": (), "file": ("file",), "xpcs": ("file", "q"),
            "xpcs-simulated": ("n_phi", "n_t", "dt", "q", "L", "params", "contrast", "offset", "noise", "seed"),
            "g2": ("file",), "g2-simulated": ("q", "D")}
G2_KINDS = ("g2", "g2-simulated")

MODEL_KEYS = {"name": "str", "function": "str", "mode": "str", "L": "float", "scaling": "str", "form": "str",
              "triangle": "str", "scan": "bool", "noise": "noise", "per_file": "names", "weights": "str",
              "global": "bool", "exponent": "float"}
#: The [model] keys each family of [data] kinds takes beyond name/function.
G2_MODEL_KEYS = ("form", "weights", "global", "exponent")
PARAMETER_KEYS = {"value": "float", "min": "float", "max": "float", "fixed": "bool"}
CHECKPOINT_KEYS = {"path": "path", "every": "int", "seconds": "float", "resume": "resume", "force": "bool"}
OUTPUT_KEYS = {"directory": "path", "plots": "bool", "per_point": "bool"}
SECTIONS = ("data", "model", "parameters", "fit", "checkpoint", "output")


@dataclass(frozen=True)
class Parameter:
    name: str
    value: float
    lower: float = -math.inf
    upper: float = math.inf
    fixed: bool = False


@dataclass(frozen=True)
class RunConfig:
    """A validated configuration. ``raw`` is the resolved TOML (after ``--set``), for the result files."""

    source: str                          # the file it was read from
    data: dict
    model: dict
    parameters: tuple[Parameter, ...]
    fit: dict
    checkpoint: dict
    output: dict
    raw: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.data.get("kind", "file")

    @property
    def output_dir(self) -> str:
        return self.output.get("directory", "hpcfit-results")


def read_config(path, overrides=()) -> RunConfig:
    """Read ``path`` (TOML), apply ``overrides`` ("section.key=value", the value in TOML syntax or a
    bare string) and validate. Relative paths in the file are relative to the file's folder."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise InputError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise InputError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"config file {path} is not valid TOML: {exc}") from None
    for item in overrides:
        _override(raw, item)
    return validate(raw, path)


def _override(raw: dict, item: str) -> None:
    key, sep, text = item.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not section or not name:
        raise InputError(f"--set {item!r}: expected SECTION.KEY=VALUE (e.g. fit.ftol=1e-10)")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()                        # a bare word is a string: fit.method=gn
    target = raw.setdefault(section, {})
    if not isinstance(target, dict):
        raise InputError(f"--set {item!r}: [{section}] is not a section")
    parts = name.split(".")
    for part in parts[:-1]:                         # parameters.D0.value=1000
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise InputError(f"--set {item!r}: {section}.{part} is not a table")
    target[parts[-1]] = value


def _unknown(where: str, key: str, allowed) -> InputError:
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return InputError(f"{where}: unknown key {key!r}{hint} Allowed: {', '.join(sorted(allowed))}")


def _typed(where: str, key: str, value, typ: str):
    """``value`` as ``typ``; an error naming the key and the expected type otherwise."""
    def bad(expected: str):
        return InputError(f"{where}: `{key}` must be {expected}; got {value!r}")

    def is_number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if typ == "path":
        if not isinstance(value, str) or not value:
            raise bad("a file path (a string)")
        return value
    if typ == "path|paths":
        if isinstance(value, list):
            if not value or not all(isinstance(v, str) and v for v in value):
                raise bad("a file path, or a non-empty list of file paths (a series fitted jointly)")
            return value
        return _typed(where, key, value, "path")
    if typ == "str":
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if typ == "names":
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise bad("a list of parameter names, e.g. [\"D0\", \"D_offset\"]")
        return value
    if typ == "str|int":
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise bad("a dataset/key name (string) or a column number (integer)")
        return value
    if typ == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad("an integer")
        return value
    if typ == "columns":                           # x of a table: one column/array, or several (x of shape (d, n))
        if isinstance(value, list):
            if not value or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
                raise bad("a column/array name or number, or a non-empty list of them (several x coordinates)")
            return value
        return _typed(where, key, value, "str|int")
    if typ == "float":
        if not is_number(value):
            raise bad("a number")
        return float(value)
    if typ == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if typ == "floats":
        if not isinstance(value, list) or not value or not all(is_number(v) for v in value):
            raise bad("a list of numbers")
        return [float(v) for v in value]
    if typ == "float|floats":
        return float(value) if is_number(value) else _typed(where, key, value, "floats")
    if typ == "rings":          # one q ring, "all", a list of rings, or {min = ..., max = ...}
        if is_number(value):
            return float(value)
        if value == "all":
            return value
        if isinstance(value, dict) and set(value) == {"min", "max"} and all(is_number(v) for v in value.values()):
            return {"min": float(value["min"]), "max": float(value["max"])}
        if isinstance(value, list) and value and all(is_number(v) for v in value):
            return [float(v) for v in value]
        raise bad('a q ring (a number), "all", a list of rings [q, ...] or a range {min = q_min, max = q_max}')
    if typ == "noise":          # σ of the XPCS points: estimated, given, or every point alike
        if value in ("auto", "none"):
            return value
        if is_number(value) and value > 0:
            return float(value)
        raise bad('"auto" (estimated from the data), a number > 0 (σ of every point) or "none" (no weights)')
    if typ == "ranges":
        if not (isinstance(value, list) and all(isinstance(r, list) and len(r) == 2 and all(is_number(v) for v in r)
                                                for r in value)):
            raise bad("a list of [low, high] degree ranges, e.g. [[-10, 10], [170, 190]]")
        return [[float(a), float(b)] for a, b in value]
    if typ == "frames":
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                   for v in value)):
            raise bad("[first, last] (1-based frame numbers, inclusive)")
        return [int(v) for v in value]
    if typ == "resume":
        if value is False or value is True or value == "auto" or (isinstance(value, str) and value):
            return value
        raise bad("true, false, \"auto\" or the path of a checkpoint file")
    raise AssertionError(typ)


def _section(raw: dict, name: str, source: str) -> dict:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise InputError(f"{source}: `{name}` must be a section [{name}]; got {value!r}")
    return value


def _checked(table: dict, keys: dict, where: str) -> dict:
    out = {}
    for key, value in table.items():
        if key not in keys:
            raise _unknown(where, key, keys)
        out[key] = _typed(where, key, value, keys[key])
    return out


def _relative(base: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def validate(raw: dict, source: str = "<config>") -> RunConfig:
    """Check every section and key (local: no file of data is opened here)."""
    for name in raw:
        if name not in SECTIONS:
            raise _unknown(source, name, SECTIONS)
    base = os.path.dirname(os.path.abspath(source)) if source != "<config>" else os.getcwd()

    data_table = dict(_section(raw, "data", source))
    kind = data_table.pop("kind", "file")
    if kind not in DATA_KINDS:
        raise InputError(f"{source} [data]: `kind` must be one of {', '.join(map(repr, DATA_KINDS))}; got {kind!r}")
    data = _checked(data_table, DATA_KINDS[kind], f"{source} [data] (kind = {kind!r})")
    missing = [k for k in REQUIRED[kind] if k not in data]
    if missing:
        raise InputError(f"{source} [data] (kind = {kind!r}): missing key(s) {', '.join(map(repr, missing))}")
    if isinstance(data.get("file"), list):              # kind xpcs: a series of files fitted jointly
        data["file"] = [_relative(base, path) for path in data["file"]]
    elif "file" in data:
        data["file"] = _relative(base, data["file"])
    if isinstance(data.get("x"), list) and os.path.splitext(data["file"])[1].lower() in HDF5_SUFFIXES:
        raise InputError(f"{source} [data]: `x` must name one dataset of the HDF5 file {data['file']} (a 2-D "
                         f"dataset of shape (d, n) for several coordinates); got {data['x']!r}")
    data["kind"] = kind

    model = _checked(_section(raw, "model", source), MODEL_KEYS, f"{source} [model]")
    if kind == "demo":
        if model not in ({}, {"name": "gaussian_peaks"}):
            raise InputError(f"{source} [model]: the demo data are fitted with name = \"gaussian_peaks\"; got {model!r}")
        model = {"name": "gaussian_peaks"}
    elif kind in G2_KINDS:
        model.setdefault("name", "g2")
        other = sorted(set(model) - {"name", *G2_MODEL_KEYS})
        if model["name"] != "g2" or other:
            raise InputError(f"{source} [model]: g2 data are fitted with name = \"g2\" and the keys form "
                             f"(\"single\", \"stretched\" or \"double\"), weights (\"err\" or \"none\"), global (true: also the "
                             f"fit over q per file) and exponent (n of Γ = D·qⁿ held there); got "
                             f"{model!r}")
    elif kind.startswith("xpcs"):
        model.setdefault("name", "xpcs")
        if model["name"] != "xpcs" or "function" in model:
            raise InputError(f"{source} [model]: XPCS data are fitted with name = \"xpcs\" (mode = \"static\" or "
                             f"\"laminar_flow\"); got {model!r}")
        if model.get("mode", "laminar_flow") == "laminar_flow" and "L" not in model:   # checked by the dry run too
            raise InputError(f"{source} [model]: `L` (the sample-to-shear length scale, Å) is required for mode = "
                             "\"laminar_flow\" (the default); or mode = \"static\"")
    elif ("name" in model) == ("function" in model):
        raise InputError(f"{source} [model]: give exactly one of `name` (a built-in model: {', '.join(BUILTIN)}) or "
                         "`function` (\"package.module:function\" or \"path/to/file.py:function\")")
    elif "name" in model and model["name"] not in BUILTIN:
        close = difflib.get_close_matches(model["name"], BUILTIN, n=1)
        raise InputError(f"{source} [model]: unknown model name {model['name']!r}"
                         f"{f'; did you mean {close[0]!r}?' if close else ''} Built-in: {', '.join(BUILTIN)}")
    if "function" in model:               # "file.py:f" is a path: relative to the config's folder like every other
        module, sep, attr = model["function"].rpartition(":")
        if sep and module.endswith(".py"):
            model["function"] = f"{_relative(base, module)}:{attr}"
    xpcs_only = sorted(set(model) - {"name", "function"}) if not kind.startswith("xpcs") and kind not in G2_KINDS \
        else []
    if xpcs_only:
        raise InputError(f"{source} [model]: key(s) {', '.join(map(repr, xpcs_only))} apply to XPCS data only")

    parameters = []
    for name, spec in _section(raw, "parameters", source).items():
        where = f"{source} [parameters] {name}"
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            spec = {"value": spec}
        if not isinstance(spec, dict):
            raise InputError(f"{where}: must be a number or {{value = ..., min = ..., max = ..., fixed = ...}}; "
                             f"got {spec!r}")
        p = _checked(spec, PARAMETER_KEYS, where)
        lower, upper = p.get("min", -math.inf), p.get("max", math.inf)
        if kind in G2_KINDS and "value" not in p and not p.get("fixed", False):
            # g2 fits start each bin from its own data: a box alone is enough
            if not lower < upper:
                raise InputError(f"{where}: need min < max; got [{lower!r}, {upper!r}]")
            parameters.append(Parameter(name, math.nan, lower, upper, False))
            continue
        if "value" not in p:
            raise InputError(f"{where}: `value` ({'the fixed value' if kind in G2_KINDS else 'the start value'}) is "
                             "required")
        if not (lower <= p["value"] <= upper):
            raise InputError(f"{where}: value {p['value']!r} is outside [min, max] = [{lower!r}, {upper!r}]")
        parameters.append(Parameter(name, p["value"], lower, upper, p.get("fixed", False)))

    fit = dict(_section(raw, "fit", source))
    from ..options import FitOptions, make_options   # the FitOptions fields are the [fit] keys
    allowed = {f for f in FitOptions.__dataclass_fields__ if f not in ("checkpoint", "checkpoint_every",
                                                                        "checkpoint_seconds", "resume",
                                                                        "resume_force")} | {"preset"}
    for key in fit:
        if key not in allowed:
            raise _unknown(f"{source} [fit]", key, allowed)
    try:
        make_options(**fit)
    except InputError as exc:
        raise InputError(f"{source} [fit]: {exc}") from None

    checkpoint = _checked(_section(raw, "checkpoint", source), CHECKPOINT_KEYS, f"{source} [checkpoint]")
    for key in ("path",):
        if key in checkpoint:
            checkpoint[key] = _relative(base, checkpoint[key])
    if isinstance(checkpoint.get("resume"), str) and checkpoint["resume"] != "auto":
        checkpoint["resume"] = _relative(base, checkpoint["resume"])
    output = _checked(_section(raw, "output", source), OUTPUT_KEYS, f"{source} [output]")
    output["directory"] = _relative(base, output.get("directory", "hpcfit-results"))
    if kind == "xpcs-simulated":
        data.setdefault("file", os.path.join(output["directory"], "simulated-xpcs.h5"))
    if kind == "g2-simulated":                  # a folder of n_files multitau files
        data.setdefault("file", os.path.join(output["directory"], "simulated-g2"))
    return RunConfig(source, data, model, tuple(parameters), fit, checkpoint, output, raw)


#: Files of kind "file" streamed from HDF5 (the others are tables read on rank 0).
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".he5")

#: Built-in models for [model] name (XPCS data use name = "xpcs").
BUILTIN = ("exponential_decay", "gaussian_peaks")


def to_toml_value(value: Any) -> str:
    """A value in TOML syntax (for --dry-run and templates)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(to_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {to_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    return repr(value)


def dump_toml(raw: dict) -> str:
    """The resolved configuration as TOML."""
    lines = []
    for section in SECTIONS:
        if section not in raw:
            continue
        lines.append(f"[{section}]")
        lines += [f"{k} = {to_toml_value(v)}" for k, v in raw[section].items()]
        lines.append("")
    return "\n".join(lines)
