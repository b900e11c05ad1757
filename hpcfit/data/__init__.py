"""Data sources: in-memory arrays and HDF5 files streamed chunk by chunk, with optional
implicit coordinates computed from the point index."""
from ..kernels.coords import PairGrid as PairGrid
from ..kernels.coords import RegularGrid as RegularGrid
from .arrays import ArraySource as ArraySource
from .hdf5 import HDF5Source as HDF5Source
