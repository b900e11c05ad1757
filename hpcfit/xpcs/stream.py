"""Stream files: the points of a two-time selection as one flat dataset that a fit reads in hyperslabs.

Serial and rank-0 only: nothing here is collective (no MPI, no JAX; NumPy and h5py).

A stream file holds 1-D datasets ``y`` (c2 at every point, C order over (angle, pair), the pairs of an angle
ordered as :func:`hpcfit.pairs.pair_frames`) and ``phi`` (degrees), and attributes ``format``, ``version``, ``n_t``, ``dt``,
``q``, ``triangle``, ``frames``, ``layout``, ``n_pairs`` and the source's ``source_path``, ``source_size`` and
``source_mtime_ns`` (see :func:`is_current`). Point p is angle ``p // n_pairs``, pair ``p % n_pairs``.
A file with no source file (a simulation) records ``source_path=""`` and size and mtime -1, so
:func:`is_current` is False for it whatever the source asked about.

:func:`convert_to_stream` writes one from loaded data; :func:`open_stream_writer` writes one angle at a time, so a
producer (a simulator) holds one map at a time.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..validate import number
from .piecewise import PiecewiseFile
# Argument checks and file helpers shared with the loader (same package, same messages).
from .load import (TwoTimeData, _check_frames, _check_phi_ranges, _existing_file, _open, _source_stamp,
                   require_finite_pairs)
from ..pairs import check_triangle as _check_triangle, n_pairs, pair_frames, pair_mask

STREAM_FORMAT = "hpcfit.xpcs.twotime-stream"
STREAM_VERSION = 1
NO_SOURCE = ("", -1, -1)        # (path, size, mtime_ns) recorded for a file that was not converted from one


# ---------------------------------------------------------------- writing

class StreamWriter(PiecewiseFile):
    """A stream file being written one angle at a time (from :func:`open_stream_writer`). Rank 0 only.

    ``y`` is created at its full size when the writer opens; :meth:`write` fills one angle's slice. The file is
    written under a temporary name and renamed by :meth:`close` once every angle is written, so a reader never
    sees a partial file; leaving a ``with`` block by an exception (or :meth:`abort`) removes it.
    """

    piece = "angle"

    def __init__(self, path: Path, phi: np.ndarray, n_t: int, triangle: str, attrs: dict, dtype=np.float64):
        self.n_t, self.triangle, self.n_phi = n_t, triangle, phi.size
        self._mask = pair_mask(n_t, triangle)
        self._n_pairs = n_pairs(n_t, triangle)

        def setup(f):
            self._y = f.create_dataset("y", shape=(self.n_phi * self._n_pairs,), dtype=dtype)
            f.create_dataset("phi", data=phi)
            f.attrs.update(attrs)

        super().__init__(path, path.with_name(f".{path.name}.tmp-{os.getpid()}"), range(self.n_phi), setup)

    def write(self, phi_idx: int, c2_map) -> None:
        """Store the points of angle ``phi_idx`` (0-based) taken from its full (n_t, n_t) map."""
        self._file()
        if phi_idx not in self._todo:
            state = "was already written" if 0 <= phi_idx < self.n_phi else f"is not in 0..{self.n_phi - 1}"
            raise InputError(f"angle index {phi_idx!r} {state} ({self.path})")
        m = np.asarray(c2_map, dtype=np.float64)
        if m.shape != (self.n_t, self.n_t):
            raise InputError(f"`c2_map` must have shape ({self.n_t}, {self.n_t}); got {m.shape}")
        start = phi_idx * self._n_pairs
        try:
            self._y[start:start + self._n_pairs] = m[self._mask].astype(self._y.dtype)
        except OSError as exc:
            raise InputError(f"cannot write the stream file {self.path}: {exc}") from None
        self._done(phi_idx)


def open_stream_writer(out_path, *, phi, n_t: int, dt: float, q: float, triangle: str = "upper", frames=None,
                       layout: str, source: tuple[str, int, int] | None = None, attrs=None,
                       dtype=np.float64) -> StreamWriter:
    """Start a stream file at ``out_path`` for the angles ``phi`` (degrees) of (n_t, n_t) maps.

    ``frames``: (first, last) of the source's frames, default (1, n_t); ``layout``: the source's layout (a free
    string, e.g. "simulated"); ``source``: (path, size, mtime_ns) of the source file, None for no source
    (:data:`NO_SOURCE`); ``attrs``: further root attributes (e.g. what a simulation was made from); ``dtype`` of
    ``y``: float32 for float32 maps, so that a conversion adds half the source's size, not its double. Rank 0 only.
    """
    tri = _check_triangle(triangle)
    if isinstance(n_t, bool) or not isinstance(n_t, (int, np.integer)) or n_t < 2:
        raise InputError(f"`n_t` must be an integer >= 2; got {n_t!r}")
    n_t = int(n_t)
    phi = np.asarray(phi, dtype=np.float64)
    if phi.ndim != 1 or phi.size == 0 or not np.all(np.isfinite(phi)):
        raise InputError(f"`phi` must be a non-empty 1-D array of finite angles in degrees; got shape {phi.shape}")
    frames = (1, n_t) if frames is None else _check_frames(frames)
    source_path, size, mtime_ns = NO_SOURCE if source is None else source
    own = {"format": STREAM_FORMAT, "version": STREAM_VERSION, "n_t": n_t, "dt": number("dt", dt),
           "q": number("q", q), "triangle": tri, "frames": np.asarray(frames, dtype=np.int64),
           "layout": str(layout), "n_pairs": n_pairs(n_t, tri), "source_path": str(source_path),
           "source_size": int(size), "source_mtime_ns": int(mtime_ns)}
    clash = sorted(set(own) & set(attrs or {}))
    if clash:
        raise InputError(f"`attrs` must not set the stream format's own attributes {clash}")
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise InputError(f"`dtype` must be float32 or float64; got {dtype!r}")
    return StreamWriter(Path(out_path), phi, n_t, tri, {**own, **(attrs or {})}, np.dtype(dtype))


def convert_to_stream(data: TwoTimeData, out_path, *, triangle: str = "upper") -> Path:
    """Write ``data`` as a stream file (see the module's docstring), the source's path, size and mtime recorded
    for :func:`is_current`. Written to a temporary name and renamed, so a reader never sees a partial file.
    Rank 0 only."""
    tri = _check_triangle(triangle)
    if not isinstance(data, TwoTimeData):
        raise InputError(f"`data` must be a TwoTimeData (from hpcfit.xpcs.load.load); got {type(data).__name__}")
    try:
        size, mtime_ns = data.source_stamp or _source_stamp(data.path)
    except OSError:
        raise InputError(f"source file of `data` not found: {data.path}; it is needed to record the source's "
                         f"size and mtime") from None
    t1, t2 = pair_frames(data.n_t, tri)
    for a in range(data.phi.size):
        require_finite_pairs(data.c2[a, t1, t2][None], t1, t2, path=data.path, maps=data.maps, phi=data.phi,
                             q=data.q, first_frame=data.frames[0], first_angle=a)
    with open_stream_writer(out_path, phi=data.phi, n_t=data.n_t, dt=data.dt, q=data.q, triangle=tri,
                            frames=data.frames, layout=data.layout, source=(data.path, size, mtime_ns)) as w:
        for a in range(data.phi.size):
            w.write(a, data.c2[a])
    return w.path


# ---------------------------------------------------------------- reading

@dataclass(frozen=True, eq=False)
class StreamMeta:
    """What a stream file says about its implicit grid: point p is angle p // n_pairs, pair p % n_pairs."""

    path: str
    phi: np.ndarray
    n_t: int
    dt: float
    q: float
    triangle: str
    frames: tuple[int, int]
    layout: str
    n_pairs: int
    n_points: int
    source_path: str
    source_size: int
    source_mtime_ns: int

    @property
    def t(self) -> np.ndarray:
        return self.dt * np.arange(self.n_t)


def is_stream_file(path) -> bool:
    """Whether ``path`` carries hpcfit's stream-file marker (even if the rest of it is damaged)."""
    try:
        with _open(Path(path)) as f:
            return f.attrs.get("format") == STREAM_FORMAT
    except Exception:  # noqa: BLE001 - anything HDF5 cannot open is not one of ours
        return False


def read_stream_meta(path) -> StreamMeta:
    """The metadata of a stream file (``y`` itself is not read)."""
    p = _existing_file(path)
    with _open(p) as f:
        if f.attrs.get("format") != STREAM_FORMAT or f.attrs.get("version") != STREAM_VERSION:
            raise InputError(f"{p}: not an hpcfit two-time stream file: attribute 'format' = "
                             f"{f.attrs.get('format')!r}, 'version' = {f.attrs.get('version')!r}; expected "
                             f"{STREAM_FORMAT!r} version {STREAM_VERSION}")
        a = f.attrs
        try:
            n_t, tri = int(a["n_t"]), str(a["triangle"])
            phi = np.asarray(f["phi"][()], dtype=np.float64)
            n_y = f["y"].shape
            meta = StreamMeta(p, phi, n_t, float(a["dt"]), float(a["q"]), tri,
                              tuple(int(v) for v in a["frames"]), str(a["layout"]), n_pairs(n_t, tri),
                              int(n_y[0]) if len(n_y) == 1 else -1, str(a["source_path"]),
                              int(a["source_size"]), int(a["source_mtime_ns"]))
        except KeyError as exc:
            raise InputError(f"{p}: stream file lacks {exc.args[0]!r} (dataset or attribute)") from None
    if meta.n_points != phi.size * meta.n_pairs:
        raise InputError(f"{p}: dataset 'y' has shape {n_y}; expected ({phi.size * meta.n_pairs},) = "
                         f"{phi.size} angles x {meta.n_pairs} pairs (n_t={n_t}, triangle={tri!r})")
    return meta


def converted_path(path, q, phi_ranges=None, frames=None, triangle: str = "upper") -> Path:
    """Deterministic sibling file name for the conversion of this selection of ``path``.

    The name holds a 12-hex-digit SHA-256 of the source's file name and the selection as requested
    (q, phi_ranges, frames, triangle), so the same request finds the same file next time; check it with
    :func:`is_current` before reusing it.
    """
    key = json.dumps({"source": Path(os.fspath(path)).name, "q": number("q", q),
                      "phi_ranges": _check_phi_ranges(phi_ranges), "frames": _check_frames(frames),
                      "triangle": _check_triangle(triangle), "version": STREAM_VERSION}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    p = Path(os.path.abspath(os.fspath(path)))
    return p.with_name(f"{p.stem}.hpcfit-{digest}.h5")


def is_current(stream_path, source_path) -> bool:
    """True when ``stream_path`` is a stream file converted from ``source_path`` as it is now (same path,
    size and mtime); False if either file is missing or unreadable, or the source changed."""
    try:
        meta = read_stream_meta(stream_path)
        size, mtime_ns = _source_stamp(os.fspath(source_path))
    except Exception:  # noqa: BLE001 - any unreadable or malformed file is simply not current
        return False
    same_file = os.path.realpath(meta.source_path) == os.path.realpath(os.fspath(source_path))
    return same_file and meta.source_size == size and meta.source_mtime_ns == mtime_ns
