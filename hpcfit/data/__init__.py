"""Data sources: in-memory arrays and HDF5 files streamed chunk by chunk, with optional
implicit coordinates (``hpcfit.RegularGrid``, ``hpcfit.PairGrid``) computed from the point index."""
from __future__ import annotations

import warnings

from .arrays import ArraySource as ArraySource
from .hdf5 import HDF5Source as HDF5Source

# The grids are coordinates, computed inside the kernels: their home is hpcfit.kernels.coords and
# their public name hpcfit.RegularGrid / hpcfit.PairGrid. The old names still work, with a warning.
_MOVED = ("RegularGrid", "PairGrid")


def __getattr__(name: str):
    if name in _MOVED:
        warnings.warn(f"hpcfit.data.{name} is now hpcfit.{name}; the old name will be removed",
                      DeprecationWarning, stacklevel=2)
        from ..kernels import coords
        return getattr(coords, name)
    raise AttributeError(f"module 'hpcfit.data' has no attribute {name!r}")
