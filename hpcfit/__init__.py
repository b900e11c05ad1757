"""hpcfit: MPI-parallel streaming nonlinear least squares with JAX chunk kernels.

The public names are loaded on first use (PEP 562), so ``python -m hpcfit --help`` answers without
importing JAX; ``hpcfit.curve_fit`` and the rest behave as ordinary attributes."""
from __future__ import annotations

import importlib

from ._version import __version__ as __version__
from .errors import REQUEUE_EXIT_CODE as REQUEUE_EXIT_CODE
from .errors import FitError as FitError
from .errors import HpcfitError as HpcfitError
from .errors import InputError as InputError
from .errors import Preempted as Preempted
from .errors import RankDeficientWarning as RankDeficientWarning

from .jax_config import configure as _configure_jax

# float64 and the compilation cache, as soon as hpcfit is imported (the kernels set float64 again
# when they load): hpcfit.jax_config
_configure_jax()

_LAZY = {
    "curve_fit": (".api", "curve_fit"),
    "fit": (".api", "fit"),
    "FitOptions": (".options", "FitOptions"),
    "FitResult": (".result", "FitResult"),
    "ParameterGroups": (".groups", "ParameterGroups"),
    "RegularGrid": (".kernels.coords", "RegularGrid"),
    "PairGrid": (".kernels.coords", "PairGrid"),
    "Status": (".result", "Status"),
    "load_result": (".output.result_file", "load_result"),
    "save_result": (".output.result_file", "save_result"),
    "data": (".data", None),
    "models": (".models", None),
}

__all__ = ["__version__", "REQUEUE_EXIT_CODE", "FitError", "HpcfitError", "InputError", "Preempted",
           "RankDeficientWarning", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'hpcfit' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name, __name__)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
