"""Fitting straight from a beamline two-time file: the points t1 < t2 streamed from the maps, no conversion.

A map is stored as a full (n_t, n_t) dataset holding one triangle (:mod:`.load`), so the pairs t1 < t2
of a row are one contiguous hyperslab of it (of a column, when the lower triangle is stored). A chunk
of the flat point index (:class:`~hpcfit.PairGrid` order: angle, t1, t2) is read as one block of
rows per angle it touches and the pairs are picked out of it; values keep the file's dtype (float32
maps stay float32 in memory and in transfer; the kernels accumulate in float64). Each rank reads
only its own chunks. The diagonal, which :func:`~.load.load` replaces, is not a point of the fit.

``beamline(path, q=…, dt=…)`` describes the selection; :func:`hpcfit.xpcs.fit` takes it as ``data``.
Nothing here is collective except :meth:`BeamlineSource.open` (through the communicator).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np

from ..data.chunks import Chunk, LocalChunks, pad_chunk, reduction_slots
from ..data.grid import ChunkGrid
from ..data.hdf5 import file_change, file_stamp
from ..errors import InputError
from ..kernels.coords import PairGrid
from ..validate import number
from .load import (Selection, _check_frames, _check_phi_ranges, _Ctx, _existing_file, _open, both_halves_error,
                   map_dataset, q_request, recorded_dt, series_dt)
from ..pairs import pair_at, pair_position, pair_rows

UPPER, LOWER = "upper", "lower"


@dataclass(frozen=True)
class BeamlineData:
    """A selection of a beamline two-time file to fit directly (from :func:`beamline`)."""

    path: str | tuple   # one file, or the files of a series fitted jointly
    q: object           # a number, "all", QRings or QRange (hpcfit.xpcs.load.q_request)
    dt: float
    phi_ranges: tuple | None = None
    frames: tuple | None = None


def beamline(path, *, q, dt=None, phi_ranges=None, frames=None) -> BeamlineData:
    """Maps of an APS 8-ID-I two-time file (either layout) to pass to :func:`hpcfit.xpcs.fit` as
    ``data``: the q ring nearest to ``q`` (a number), or several rings in one fit: ``q="all"``, a
    list ``[q, ...]`` (the ring nearest to each) or a tuple ``(q_min, q_max)`` (every ring in
    between). ``phi_ranges`` (applied to every ring) and ``frames`` as in :func:`~.load.load`.
    ``path`` may be a list of files (a series of the same sample: repeats, temperatures): their
    maps are fitted jointly, the physical parameters shared and contrast/offset per map, each
    file's selection made alike; the files must give the same dt and number of frames.
    ``dt`` (seconds per frame of the maps) defaults to the one the file records (frame_time ×
    stride_frame × avg_frame); when it does not record all three, dt is required. Local: reads
    only metadata."""
    series = isinstance(path, (list, tuple))
    paths = tuple(_existing_file(p) for p in (path if series else [path]))
    if not paths:
        raise InputError("`path`: a series needs at least one file; got []")
    q = q_request(q)
    if dt is None:
        dt = series_dt([recorded_dt(p) for p in paths])
    return BeamlineData(paths if series else paths[0], q, number("dt", dt), _check_phi_ranges(phi_ranges),
                        _check_frames(frames))


def _stored_halves(sel: Selection) -> tuple[str, ...]:
    """Which triangle each selected map stores (a row and a column of the frame window read), its
    shape and dtype checked; an error names the map."""
    first, last = sel.frames
    out = []
    with _open(sel.path) as f:
        c = _Ctx(f, sel.path, sel.layout)
        for name in sel.names:
            ds = map_dataset(c, name, sel.n_t_file)
            row = np.asarray(ds[first - 1, first:last])            # above the diagonal
            col = np.asarray(ds[first:last, first - 1])            # below it
            if np.any(row) and np.any(col):
                raise both_halves_error(c, name)
            out.append(LOWER if np.any(col) else UPPER)
    return tuple(out)


class BeamlineSource:
    """The points t1 < t2 of a selection — or of several, one per file of a series fitted jointly,
    their maps one after the other — read chunk by chunk from the beamline files themselves."""

    def __init__(self, selection: Selection | tuple):
        self.parts = selection if isinstance(selection, tuple) else (selection,)
        self.sel = self.parts[0]
        sizes = [part.phi.size for part in self.parts]
        self.n_t = self.sel.n_t
        self.grid = PairGrid(sum(sizes), self.n_t, "upper")
        self.per_angle = self.grid.n_points // sum(sizes)
        # map m of the fit is map local[m] of part part_of[m]
        self.part_of = np.repeat(np.arange(len(sizes)), sizes)
        self.local = np.concatenate([np.arange(n) for n in sizes])
        self._files = {}
        self._halves = None
        self._stamps = None

    def check_arguments(self) -> None:
        if not all(isinstance(part, Selection) for part in self.parts):
            raise InputError(f"BeamlineSource needs Selections (hpcfit.xpcs.load.select); got "
                             f"{[type(part).__name__ for part in self.parts]}")
        other = [part for part in self.parts if part.n_t != self.n_t]
        if other:
            raise InputError(f"the files of a series must give maps of the same number of frames: {self.sel.path} "
                             f"has {self.n_t} (frames {self.sel.frames[0]}-{self.sel.frames[1]}), {other[0].path} has "
                             f"{other[0].n_t}; choose `frames` so that they agree")

    @property
    def phi(self) -> np.ndarray:
        return np.concatenate([part.phi for part in self.parts])

    @property
    def q(self):
        """One ring of one file: its q; else the q of every map (the model's form)."""
        if len(self.parts) == 1 and isinstance(self.sel.q, float):
            return self.sel.q
        return tuple(float(v) for part in self.parts for v in part.q_maps)

    @property
    def describe(self) -> str:
        if len(self.parts) == 1:
            return f"two-time file {self.sel.path} ({self.sel.describe_q()}, {self.sel.phi.size} maps, frames " \
                   f"{self.sel.frames[0]}-{self.sel.frames[1]})"
        return f"{len(self.parts)} two-time files ({self.sel.path}, ...; {self.grid.n_groups} maps of {self.n_t} frames)"

    def open(self, comm, chunk_size: int) -> LocalChunks:
        """Collective: rank 0 checks which half each map stores, every rank opens the files and lays
        out its chunks. On any error the files are closed again."""
        try:
            return self._open(comm, chunk_size)
        except BaseException:
            self.close()
            raise

    def _open(self, comm, chunk_size: int) -> LocalChunks:
        # rank 0 probes the maps (once: a sample read for the start values already did)
        self._halves = comm.on_root(self._halves_now)
        comm.check_same({"two-time files": [os.path.abspath(part.path) for part in self.parts],
                         "maps": [part.names for part in self.parts], "frames": [part.frames for part in self.parts]},
                        "every rank must stream the same selection of the same files")

        def open_files():
            self.close()
            self._stamps = [file_stamp(part.path) for part in self.parts]
            for part in self.parts:
                self._file(part.path)

        comm.agree(open_files)
        n = self.grid.n_points
        chunk_size = min(chunk_size, n)
        grid = ChunkGrid(n, chunk_size, comm.size)
        runs = [grid.rank_chunks(r) for r in range(comm.size)]
        first, stop = runs[comm.rank]

        def read(i: int) -> Chunk:
            lo, hi = grid.chunk_points(first + i)
            ys = self._read_points(lo, hi, first + i)
            _, ys, ws = pad_chunk(None, ys, np.ones(hi - lo), chunk_size)
            return Chunk(np.asarray(lo), ys, ws, hi - lo, lo)

        def take(indices: np.ndarray) -> tuple:
            unique, back = np.unique(indices, return_inverse=True)
            ys = self.values(unique)[back]
            return None, ys, np.ones(indices.size)

        return LocalChunks(read, stop - first, chunk_size, first, grid.n_chunks, reduction_slots(runs, grid.n_chunks),
                           n, (), cacheable=False, coords=self.grid, describe=self.describe,
                           point_runs=tuple(grid.rank_points(r) for r in range(comm.size)), take=take,
                           verify=self._verify_unchanged)

    # -- reading ----------------------------------------------------------------------------------

    def _file(self, path: str):
        if path not in self._files:              # a sample read before (or without) open() opens it too
            self._files[path] = _open(path)
        return self._files[path]

    def _map(self, m: int) -> tuple[Selection, str, h5py.Dataset]:
        """Map m's selection, dataset name and dataset."""
        part = self.parts[self.part_of[m]]
        name = part.names[self.local[m]]
        return part, name, self._file(part.path)[name]

    def _halves_now(self) -> tuple:
        if self._halves is None:
            self._halves = tuple(h for part in self.parts for h in _stored_halves(part))
        return self._halves

    def _read_points(self, lo: int, hi: int, chunk: int) -> np.ndarray:
        """Values of global points [lo, hi): one block of rows (or columns) per map touched."""
        parts = []
        n_t = self.n_t
        for angle in range(lo // self.per_angle, (hi - 1) // self.per_angle + 1):
            base = angle * self.per_angle
            k0, k1 = max(lo, base) - base, min(hi, base + self.per_angle) - base
            rows = pair_rows(k0, k1, n_t)                   # (t1, first t2, count) along each row
            r0, r1 = rows[0][0], rows[-1][0]
            part, name, ds = self._map(angle)
            f0 = part.frames[0] - 1
            try:
                if self._halves_now()[angle] == UPPER:
                    block = ds[f0 + r0: f0 + r1 + 1, f0 + r0 + 1: f0 + n_t]
                    values = np.concatenate([block[t1 - r0, t2 - r0 - 1:t2 - r0 - 1 + c] for t1, t2, c in rows])
                else:
                    block = ds[f0 + r0 + 1: f0 + n_t, f0 + r0: f0 + r1 + 1]
                    values = np.concatenate([block[t2 - r0 - 1:t2 - r0 - 1 + c, t1 - r0] for t1, t2, c in rows])
            except Exception as exc:  # noqa: BLE001 - h5py raises OSError, RuntimeError, ... for damaged files
                raise InputError(f"{part.path}: reading map '{name}' failed at frames "
                                 f"{f0 + r0 + 1}-{f0 + r1 + 1} (chunk {chunk}): {type(exc).__name__}: {exc}. The "
                                 "file is damaged or unreadable there") from None
            self._require_finite(values, angle, lambda: pair_at(np.arange(k0, k1), n_t))
            parts.append(values)
        out = np.concatenate(parts) if len(parts) > 1 else parts[0]
        return out if out.dtype == np.float32 else out.astype(np.float64)

    def values(self, index: np.ndarray) -> np.ndarray:
        """Values at sorted distinct global points (a sample): one element selection per map."""
        out = np.empty(index.size, dtype=np.float64)
        angle = index // self.per_angle
        for a in np.unique(angle):
            where = np.flatnonzero(angle == a)
            t1, t2 = pair_at(index[where] - a * self.per_angle, self.n_t)
            rows, cols = (t1, t2) if self._halves_now()[a] == UPPER else (t2, t1)
            part, _, ds = self._map(int(a))
            f0 = part.frames[0] - 1
            space = ds.id.get_space()
            space.select_elements(np.stack([f0 + rows, f0 + cols], axis=1).astype(np.uint64))
            values = np.empty(where.size, dtype=ds.dtype)
            ds.id.read(h5py.h5s.create_simple((where.size,)), space, values)
            self._require_finite(values, int(a), lambda: (t1, t2))
            out[where] = values
        return out

    def pairs(self, angle, t1, t2) -> np.ndarray:
        """c2 at frame pairs (t1 < t2, 0-based in the window) of maps ``angle`` (for start values)."""
        t1, t2 = np.asarray(t1), np.asarray(t2)
        index = np.asarray(angle) * self.per_angle + pair_position(t1, t2, self.n_t, "upper")
        order = np.argsort(index, kind="stable")
        unique, back = np.unique(index[order], return_inverse=True)
        out = np.empty(index.size)
        out[order] = self.values(unique)[back]
        return out

    def _require_finite(self, values: np.ndarray, angle: int, frames) -> None:
        """``values`` all finite, or an error naming the first bad one at its frames (``frames()``:
        (t1, t2) of the values, found only then)."""
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.argmax(bad))
            t1, t2 = frames()
            part, name, _ = self._map(angle)
            j = self.local[angle]
            first = part.frames[0]
            raise InputError(f"{part.path}: map '{name}' (angle index {j}, φ = "
                             f"{part.phi[j]:g}°, q = {part.q_maps[j]:g}) holds {values[i]} at frames "
                             f"({int(t1[i]) + first}, {int(t2[i]) + first}) (1-based, in the file), and "
                             f"{int(bad.sum())} non-finite value(s) in this read; a fit needs finite c2. Restrict "
                             "`frames` or `phi_ranges` to leave them out")

    def _verify_unchanged(self) -> None:
        for part, stamp in zip(self.parts, self._stamps or ()):
            change = file_change(part.path, stamp)
            if change is not None:
                raise InputError(f"{part.path}: the two-time file changed while the fit was reading it ({change}): "
                                 "its answer would mix two versions of the data. Fit a file that is complete and "
                                 "not being written")

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}
