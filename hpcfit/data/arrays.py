"""In-memory data: checking the user's arrays and cutting this rank's part into padded chunks.

``distribute="global"``: every rank passes the same full arrays (verified across ranks by shape,
dtype and checksum) and keeps the chunks the :class:`~hpcfit.data.grid.ChunkGrid` gives it.
``distribute="local"``: every rank passes its own shard; the fit is of the union in rank order.
Either way the result is a :class:`~hpcfit.data.chunks.LocalChunks`: the fixed-shape chunks this
rank computes and where they sit in the global chunk tree.
"""
from __future__ import annotations

import zlib
import numpy as np

from ..comm import Communicator
from ..errors import InputError
from .chunks import Chunk, LocalChunks, contiguous_runs, pad_chunk, reduction_slots
from .grid import ChunkGrid


def _as_real_array(name: str, value) -> np.ndarray:
    try:
        arr = np.asarray(value)
        if arr.dtype.kind == "c":
            raise InputError(f"`{name}` is complex (dtype {arr.dtype}); only real data can be fitted")
        return np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"`{name}` must be a real numeric array: {exc}") from None


def _check_finite(name: str, arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(f"`{name}` contains NaN or Inf ({int(bad.sum())} values; first at index "
                         f"{where if len(where) > 1 else where[0]}); all values must be finite")


NAN_POLICIES = ("raise", "omit")


def omit_non_finite(x: np.ndarray, y: np.ndarray, sig: np.ndarray | None):
    """The points whose x (every row), y and sigma are all finite, and how many were dropped."""
    keep = np.isfinite(y) & np.all(np.isfinite(x.reshape(-1, y.shape[0])), axis=0)
    if sig is not None:
        keep &= np.isfinite(sig)
    dropped = int(keep.size - keep.sum())
    if not dropped:
        return x, y, sig, 0
    return x[..., keep], y[keep], (None if sig is None else sig[keep]), dropped


def check_arrays(xdata, ydata, sigma, *, allow_empty: bool, nan_policy: str = "raise"):
    """Validate and convert the user's arrays (local, not collective); raises InputError.

    ``nan_policy="omit"`` drops points with a non-finite x, y or sigma first (scipy's curve_fit
    option); returns ``(x, y, sigma, dropped)``."""
    x = _as_real_array("xdata", xdata)
    y = _as_real_array("ydata", ydata)
    if x.ndim not in (1, 2):
        raise InputError(f"`xdata` must have shape (n,) or (k, n) with the points on the last axis; "
                         f"got shape {x.shape}")
    if y.ndim != 1:
        raise InputError(f"`ydata` must be 1-D of shape (n,); got shape {y.shape}")
    if x.shape[-1] != y.shape[0]:
        raise InputError(f"`xdata` and `ydata` disagree on the number of points: xdata has shape {x.shape} "
                         f"(points on the last axis: {x.shape[-1]}), ydata has {y.shape[0]}")
    if y.shape[0] == 0 and not allow_empty:
        raise InputError("`xdata` and `ydata` have no points (an empty shard is allowed only with "
                         "distribute='local')")
    sig = None
    if sigma is not None:
        sig = _as_real_array("sigma", sigma)
        if sig.shape != y.shape:
            raise InputError(f"`sigma` must be 1-D with one value per point, shape {y.shape}; got shape "
                             f"{sig.shape} (a 2-D covariance sigma is not supported)")
    dropped = 0
    if nan_policy == "omit":
        x, y, sig, dropped = omit_non_finite(x, y, sig)
        if y.shape[0] == 0 and not allow_empty:
            raise InputError("`nan_policy='omit'` dropped every point: no point has a finite x, y and sigma")
    for name, arr in (("xdata", x), ("ydata", y), ("sigma", sig)):
        if arr is not None:
            _check_finite(name, arr)
    if sig is not None and np.any(sig <= 0):
        i = int(np.argmax(sig <= 0))
        raise InputError(f"`sigma` must be > 0 everywhere; sigma[{i}] = {float(sig[i])!r}")
    return x, y, sig, dropped


def checksum(arr: np.ndarray | None) -> tuple | None:
    """Shape and a CRC32 of the bytes: a cheap fingerprint to compare an array across ranks."""
    if arr is None:
        return None
    return arr.shape, zlib.crc32(np.ascontiguousarray(arr).view(np.uint8).ravel())


class ArraySource:
    """In-memory arrays as a data source (what :func:`hpcfit.curve_fit` builds from its arguments).

    ``distribute="global"``: every rank passes the same full arrays; ``"local"``: its own shard.
    With ``grid`` (implicit coordinates, :mod:`hpcfit.kernels.coords`) ``xdata`` is None and x is
    computed in the kernel from the global point index.

    Memory: each rank keeps a device copy of its own chunks (x, y and weights 1/sigma) for the whole
    fit, on top of the arrays passed in: about 1.5x its share of the data on CPU.
    """

    def __init__(self, xdata, ydata, sigma=None, *, distribute: str = "global", grid=None,
                 nan_policy: str | None = "raise"):
        self.xdata, self.ydata, self.sigma, self.distribute, self.grid = xdata, ydata, sigma, distribute, grid
        self.nan_policy = "raise" if nan_policy is None else nan_policy
        self.n_omitted = 0       # points dropped on this rank by nan_policy="omit" (known after open)

    def check_arguments(self) -> None:
        """Local checks that need no data (run before any collective)."""
        if self.distribute not in ("global", "local"):
            raise InputError(f"`distribute` must be 'global' or 'local'; got {self.distribute!r}")
        if self.grid is not None and self.nan_policy == "omit":
            raise InputError("`nan_policy='omit'` cannot drop points of a `grid` (implicit coordinates): their "
                             "coordinates come from their position")
        if self.nan_policy not in NAN_POLICIES:
            raise InputError(f"`nan_policy` must be 'raise' (the default: a non-finite value is an error) or 'omit' "
                             f"(drop points with a non-finite x, y or sigma); got {self.nan_policy!r}")
        if self.grid is not None and (self.xdata is not None or not hasattr(self.grid, "n_points")
                                      or not callable(self.grid)):
            raise InputError("with `grid` (implicit coordinates) `xdata` must be None and `grid` a coordinates "
                             "object such as hpcfit.RegularGrid or PairGrid")

    def _check(self):
        xdata = self.xdata
        if self.grid is not None:       # placeholder x with the points axis only, never read
            xdata = np.zeros((0, np.shape(self.ydata)[0]))
        x, y, sig, self.n_omitted = check_arrays(xdata, self.ydata, self.sigma, nan_policy=self.nan_policy,
                                                 allow_empty=self.distribute == "local")
        return (None if self.grid is not None else x), y, sig

    def finite_arrays(self) -> tuple:
        """This rank's (x, y, sigma) as fitted: after ``nan_policy``, as float64 (local)."""
        return self._check()

    def open(self, comm: Communicator, chunk_size: int) -> LocalChunks:
        """Collective: check the arrays on every rank, agree on errors, and lay out this rank's chunks.

        The chunk size used is ``min(chunk_size, points)`` (points: global n, or the largest local
        shard), the same on every rank, so a small fit does not pad one chunk to a huge size.
        """
        x, y, sig = comm.agree(self._check)
        if self.distribute == "global":
            comm.check_same({"xdata": checksum(x), "ydata": checksum(y), "sigma": checksum(sig),
                             "grid": self.grid},
                            "with distribute='global' every rank must pass the same arrays (shape and CRC32 "
                            "are compared); use distribute='local' to pass one shard per rank")
            n = y.shape[0]
            if self.grid is not None and self.grid.n_points != n:
                raise InputError(f"`grid` has {self.grid.n_points} points but `ydata` has {n}")
            chunk_size = min(chunk_size, n)
            grid = ChunkGrid(n, chunk_size, comm.size)
            runs = [grid.rank_chunks(r) for r in range(comm.size)]
            start = grid.rank_points(comm.rank)[0]
        else:
            shapes = comm.allgather((() if x is None else x.shape[:-1], sig is not None, y.shape[0]))
            for r, (tail, has_sigma, _) in enumerate(shapes):
                if tail != shapes[0][0] or has_sigma != shapes[0][1]:   # every rank sees the same list
                    raise InputError(
                        "with distribute='local' every rank's xdata must have the same leading shape "
                        f"and sigma must be given on all ranks or none: rank 0 has x shape {shapes[0][0]}+(n,), "
                        f"sigma {'given' if shapes[0][1] else 'None'}; rank {r} has {tail}+(n,), "
                        f"sigma {'given' if has_sigma else 'None'}")
            counts = [s[2] for s in shapes]
            n = sum(counts)
            if self.grid is not None and self.grid.n_points != n:
                raise InputError(f"`grid` has {self.grid.n_points} points but the ranks' `ydata` have {n} together")
            chunk_size = max(1, min(chunk_size, max(counts)))
            runs = contiguous_runs([-(-c // chunk_size) for c in counts])
            start = sum(counts[: comm.rank])
        first, stop = runs[comm.rank]
        n_leaves = runs[-1][1]

        base = start if self.distribute == "global" else 0     # this rank's first point in the arrays

        def read(i: int) -> Chunk:
            lo = base + i * chunk_size
            hi = min(lo + chunk_size, y.shape[0])
            ws = np.ones(hi - lo) if sig is None else 1.0 / sig[lo:hi]
            xs, ys, ws = pad_chunk(None if x is None else x[..., lo:hi], y[lo:hi], ws, chunk_size)
            global_start = start + i * chunk_size
            return Chunk(np.asarray(global_start) if xs is None else xs, ys, ws, hi - lo, global_start)

        def take(indices: np.ndarray) -> tuple:
            at = indices - start + base
            return (None if x is None else x[..., at]), y[at], (np.ones(at.size) if sig is None else 1.0 / sig[at])

        if self.distribute == "global":
            point_runs = [grid.rank_points(r) for r in range(comm.size)]
        else:
            ends = np.cumsum(counts).tolist()
            point_runs = [(e - c, e) for e, c in zip(ends, counts)]
        x_shape = () if x is None else x.shape[:-1] + (chunk_size,)
        return LocalChunks(read, stop - first, chunk_size, first, n_leaves, reduction_slots(runs, n_leaves), n,
                           x_shape, cacheable=True, coords=self.grid, point_runs=tuple(point_runs), take=take)
