"""HDF5 files as a streaming data source: each rank reads only the hyperslabs of its own chunks.

Datasets: ``y`` (n,), optionally ``x`` (n,) or (k, n) and ``sigma`` (n,). For data on a regular
grid pass ``grid`` (a :mod:`hpcfit.kernels.coords` object) instead of ``x``: coordinates are then
computed in the kernel, never read. Chunks follow the same global grid as in-memory data, so a
fit from a file gives the same bits as from the same arrays in memory, on any rank count.
"""
from __future__ import annotations

import os

import numpy as np

from ..comm import Communicator
from ..errors import InputError
from .chunks import Chunk, LocalChunks, pad_chunk, reduction_slots
from .grid import ChunkGrid


class HDF5Source:
    """Stream ``y`` (and ``x``/``sigma``) from the HDF5 file ``path``.

    ``cache_bytes``: if this rank's share of the data (y, x and weights, padded) fits in this many
    bytes it is kept in memory after the first pass instead of being read again (default 0:
    always stream, memory bounded by a few chunks).
    """

    def __init__(self, path, y: str = "y", x: str | None = None, sigma: str | None = None, *, grid=None,
                 cache_bytes: int = 0):
        self.path, self.y, self.x, self.sigma, self.grid, self.cache_bytes = path, y, x, sigma, grid, cache_bytes
        self._file = None

    def check_arguments(self) -> None:
        """Local checks that need no file (run before any collective)."""
        if not isinstance(self.path, (str, os.PathLike)):
            raise InputError(f"HDF5Source `path` must be a file path; got {type(self.path).__name__}")
        for name in ("y", "x", "sigma"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise InputError(f"HDF5Source `{name}` must be a dataset name (str); got {value!r}")
        if (self.x is None) == (self.grid is None):
            raise InputError("HDF5Source needs exactly one of `x` (a dataset of coordinates) and `grid` "
                             "(implicit coordinates, e.g. hpcfit.RegularGrid or PairGrid)")
        if self.grid is not None and not (callable(self.grid) and hasattr(self.grid, "n_points")):
            raise InputError(f"HDF5Source `grid` must be a coordinates object such as hpcfit.RegularGrid; "
                             f"got {type(self.grid).__name__}")
        if not isinstance(self.cache_bytes, int) or self.cache_bytes < 0:
            raise InputError(f"HDF5Source `cache_bytes` must be an integer >= 0; got {self.cache_bytes!r}")

    def _where(self, name: str) -> str:
        return f"file {os.fspath(self.path)!r}, dataset {name!r}"

    def inspect(self) -> int:
        """Check the file and its datasets now (local, no collective) and return the number of
        points; the file is closed again. For checking a configuration up front."""
        self.check_arguments()
        try:
            return self._inspect()[0]
        finally:
            self.close()

    def blocks(self, size: int = 1 << 20):
        """(x, y, sigma or None) blocks of ``size`` points in order, read by this process alone (for
        plots and summaries on rank 0: memory bounded by the block). Needs ``x`` (not a grid)."""
        import h5py

        with h5py.File(self.path, "r") as f:
            n = f[self.y].shape[0]
            for lo in range(0, n, size):
                hi = min(n, lo + size)
                yield (np.asarray(f[self.x][..., lo:hi], dtype=float), np.asarray(f[self.y][lo:hi], dtype=float),
                       None if self.sigma is None else np.asarray(f[self.sigma][lo:hi], dtype=float))

    def _checked_inspect(self):
        try:
            return self._inspect()
        except BaseException:
            self.close()
            raise

    def _inspect(self):
        """Open the file and check the datasets (local): the layout every rank must agree on."""
        import h5py

        path = os.fspath(self.path)
        if not os.path.exists(path):
            raise InputError(f"HDF5Source: file {path!r} does not exist")
        try:
            self._stamp = file_stamp(path)
            self._file = h5py.File(path, "r")
        except OSError as exc:
            raise InputError(f"HDF5Source: cannot open {path!r} as HDF5: {exc}") from None
        shapes = {}
        for role in ("y", "x", "sigma"):
            name = getattr(self, role)
            if name is None:
                continue
            if name in self._file and not isinstance(self._file[name], h5py.Dataset):
                kind = "a group" if isinstance(self._file[name], h5py.Group) else "not a dataset"
                raise InputError(f"HDF5Source: {self._where(name)} is {kind}, not a dataset (the `{role}` dataset "
                                 f"must be an array); give the path of the dataset inside it, e.g. "
                                 f"{name.rstrip('/')}/<name>")
            if name not in self._file:
                raise InputError(f"HDF5Source: {self._where(name)} does not exist (the `{role}` dataset); "
                                 f"datasets at the top level: {sorted(k for k in self._file.keys())}")
            dset = self._file[name]
            if dset.dtype.kind not in "fiu":
                raise InputError(f"HDF5Source: {self._where(name)} has dtype {dset.dtype}; a real numeric "
                                 "dtype is needed")
            shapes[role] = dset.shape
        n = shapes["y"][0] if len(shapes["y"]) == 1 else None
        if n is None or n == 0:
            raise InputError(f"HDF5Source: {self._where(self.y)} must be 1-D with at least one point; "
                             f"got shape {shapes['y']}")
        if "x" in shapes and (len(shapes["x"]) not in (1, 2) or shapes["x"][-1] != n):
            raise InputError(f"HDF5Source: {self._where(self.x)} must have shape ({n},) or (k, {n}) to match "
                             f"{self.y!r}; got {shapes['x']}")
        if "sigma" in shapes and shapes["sigma"] != (n,):
            raise InputError(f"HDF5Source: {self._where(self.sigma)} must have shape ({n},) to match "
                             f"{self.y!r}; got {shapes['sigma']}")
        if self.grid is not None and self.grid.n_points != n:
            raise InputError(f"HDF5Source: `grid` has {self.grid.n_points} points but {self._where(self.y)} "
                             f"has {n}")
        return n, shapes

    def open(self, comm: Communicator, chunk_size: int) -> LocalChunks:
        """Collective: open and check the file on every rank, and lay out this rank's chunks.
        On any error the file is closed again."""
        try:
            return self._open(comm, chunk_size)
        except BaseException:
            self.close()
            raise

    def _open(self, comm: Communicator, chunk_size: int) -> LocalChunks:
        n, shapes = comm.agree(self._checked_inspect)
        comm.check_same({"HDF5 file": os.path.abspath(os.fspath(self.path)),
                         "HDF5 datasets": (self.y, self.x, self.sigma, tuple(sorted(shapes.items()))),
                         "grid": self.grid},
                        "every rank must stream the same file, datasets and grid")
        chunk_size = min(chunk_size, n)
        grid = ChunkGrid(n, chunk_size, comm.size)
        runs = [grid.rank_chunks(r) for r in range(comm.size)]
        first, stop = runs[comm.rank]
        y, x = self._file[self.y], None if self.x is None else self._file[self.x]
        sigma = None if self.sigma is None else self._file[self.sigma]

        def read(i: int) -> Chunk:
            lo, hi = grid.chunk_points(first + i)
            ys = self._checked(self.y, self._read(y, self.y, lo, hi, first + i), lo, keep_single=True)
            ws = np.ones(hi - lo)
            if sigma is not None:
                ss = self._checked(self.sigma, self._read(sigma, self.sigma, lo, hi, first + i), lo)
                self._check_positive(ss, lo)
                ws = 1.0 / ss
            xs = None if x is None else self._checked(self.x, self._read(x, self.x, lo, hi, first + i), lo)
            xs, ys, ws = pad_chunk(xs, ys, ws, chunk_size)
            return Chunk(np.asarray(lo) if xs is None else xs, ys, ws, hi - lo, lo)

        def take(indices: np.ndarray) -> tuple:
            # h5py reads increasing, distinct indices: read each point once, then expand repeats
            unique, back = np.unique(indices, return_inverse=True)
            ys = self._checked(self.y, self._take(y, self.y, unique), unique)[back]
            ws = np.ones(indices.size)
            if sigma is not None:
                ss = self._checked(self.sigma, self._take(sigma, self.sigma, unique), unique)
                self._check_positive(ss, unique)
                ws = 1.0 / ss[back]
            xs = None if x is None else self._checked(self.x, self._take(x, self.x, unique), unique)[..., back]
            return xs, ys, ws

        width = 2 + (0 if x is None else (shapes["x"][0] if len(shapes["x"]) == 2 else 1))   # y, weight, x rows
        shard_bytes = (stop - first) * chunk_size * 8 * width
        x_shape = () if self.grid is not None else tuple(shapes["x"][:-1]) + (chunk_size,)
        return LocalChunks(read, stop - first, chunk_size, first, grid.n_chunks, reduction_slots(runs, grid.n_chunks),
                           n, x_shape, cacheable=shard_bytes <= self.cache_bytes, coords=self.grid,
                           describe=f"HDF5 {os.fspath(self.path)}:{self.y}",
                           point_runs=tuple(grid.rank_points(r) for r in range(comm.size)), take=take,
                           verify=self._verify_unchanged)

    def _verify_unchanged(self) -> None:
        """The file is the one the fit opened: same inode, size and modification time (local)."""
        change = file_change(os.fspath(self.path), self._stamp)
        if change is not None:
            raise InputError(f"HDF5Source: file {os.fspath(self.path)!r} changed while the fit was reading it "
                             f"({change}): its answer would mix two versions of the data. Fit a file that is "
                             "complete and not being written (copy it first if another program updates it)")

    def _read(self, dset, name: str, lo: int, hi: int, chunk: int) -> np.ndarray:
        """Points [lo, hi) of a dataset; a read failure (a corrupt compressed block, an I/O error)
        names the file, the dataset, the chunk and its points."""
        try:
            return dset[..., lo:hi]
        except Exception as exc:  # noqa: BLE001 - h5py raises OSError, RuntimeError, ... for damaged files
            raise InputError(f"HDF5Source: reading {self._where(name)} failed at points [{lo}, {hi}) (chunk {chunk}): "
                             f"{type(exc).__name__}: {exc}. The file is damaged or unreadable there") from None

    def _take(self, dset, name: str, indices: np.ndarray) -> np.ndarray:
        """Sampled points of a dataset (phase 1); a read failure names the file, dataset and points."""
        try:
            return dset[..., indices]
        except Exception as exc:  # noqa: BLE001 - as in _read
            raise InputError(f"HDF5Source: reading {self._where(name)} failed at {indices.size} sampled points in "
                             f"[{int(indices[0])}, {int(indices[-1])}]: {type(exc).__name__}: {exc}. The file is "
                             "damaged or unreadable there") from None

    def _checked(self, name: str, values: np.ndarray, at, keep_single: bool = False) -> np.ndarray:
        """Values read from global points ``at`` (along the last axis: a start index for a contiguous
        read, or an index array), checked finite; float64, or float32 as stored with ``keep_single``
        (y: the kernels accumulate in float64, the chunk travels at half the size)."""
        values = np.asarray(values)
        if not (keep_single and values.dtype == np.float32):
            values = values.astype(np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            k = int(np.flatnonzero(bad.reshape(-1, bad.shape[-1]).any(axis=0))[0])   # first bad point
            raise InputError(f"HDF5Source: {self._where(name)} contains NaN or Inf; first at global point "
                             f"index {_global_index(at, k)}")
        return values

    def _check_positive(self, sigma: np.ndarray, at) -> None:
        if np.any(sigma <= 0):
            k = int(np.argmax(sigma <= 0))
            raise InputError(f"HDF5Source: {self._where(self.sigma)} must be > 0; value "
                             f"{float(sigma[k])!r} at global index {_global_index(at, k)}")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def file_change(path: str, stamp: tuple) -> str | None:
    """What changed in a file since ``stamp`` (:func:`file_stamp`) was taken, or None."""
    try:
        now = file_stamp(path)
    except OSError as exc:
        return f"it is gone ({exc})"
    if now == stamp:
        return None
    fields = ("device", "inode", "size", "modification time")
    return "; ".join(f"{name} {a} → {b}" for name, a, b in zip(fields, stamp, now) if a != b)


def file_stamp(path) -> tuple:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _global_index(at, k: int) -> int:
    """Global index of the k-th value of a read from ``at`` (start index or index array)."""
    return int(at) + k if np.ndim(at) == 0 else int(at[k])


def write_table_file(path, x: np.ndarray, y: np.ndarray, sigma: np.ndarray | None, source_stamp: dict) -> str:
    """Write x, y (and sigma) as an HDF5 file that :class:`HDF5Source` streams (a big table, read
    once on one process, then streamed by every rank). ``source_stamp`` (the table's path, size and
    mtime) is recorded, so that :func:`table_file_sigma` can tell the file may be reused. Written to a
    temporary name and renamed."""
    import json

    import h5py

    tmp = f"{os.fspath(path)}.tmp"
    with h5py.File(tmp, "w") as f:
        f["x"], f["y"] = x, y
        if sigma is not None:
            f["sigma"] = sigma
        f.attrs["hpcfit_table_source"] = json.dumps(source_stamp, sort_keys=True)
    os.replace(tmp, path)
    return os.fspath(path)


def table_file_sigma(path, source_stamp: dict) -> bool | None:
    """None unless ``path`` is a table file written from this very table (same path, size, mtime);
    then whether it holds sigma."""
    import json

    import h5py

    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("hpcfit_table_source") != json.dumps(source_stamp, sort_keys=True):
                return None
            return "sigma" in f
    except Exception:  # noqa: BLE001 - missing or not ours: not current
        return None
