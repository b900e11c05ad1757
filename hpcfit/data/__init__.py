"""Data sources: in-memory arrays and HDF5 files streamed chunk by chunk."""
from .arrays import ArraySource as ArraySource
