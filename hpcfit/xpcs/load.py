"""Reading APS 8-ID-I two-time correlation files (the stream file a selection converts to: :mod:`.stream`).

Serial and rank-0 only: nothing here is collective (no MPI, no JAX; NumPy and h5py).

The two beamline layouts, as the software that writes and reads them does it:

* **APS-U** (boost_corr ``twotime.py`` writes it, pyXpcsViewer ``core/twotime_utils.py`` reads it):
  ``xpcs/qmap/dynamic_v_list_dim0`` (q of each grid row), ``xpcs/qmap/dynamic_v_list_dim1`` (φ in degrees of each
  grid column), ``xpcs/twotime/processed_bins`` (1-based dynamic-bin labels, one per stored map) and
  ``xpcs/twotime/correlation_map/c2_00001, c2_00002, ...``: the k-th dataset (a counter from 1, zero-padded
  to 5 digits) belongs to ``processed_bins[k-1]`` and holds ``triu(c2)``, the diagonal at full value.
  A label b names the grid cell ``xpcs/qmap/dynamic_index_mapping[b-1]`` (0-based, q-major) when that dataset
  exists (pyXpcsViewer ``QMap.get_qbin_label``; cells without pixels get no label), else cell ``b-1``; the cell
  gives ``q_idx = cell // n_phi``, ``phi_idx = cell % n_phi``.
* **old** (MATLAB ``save_TwoTime_hdf5.m``; the pre-APS-U boost_corr): ``xpcs/dqlist`` and ``xpcs/dphilist`` of
  shape (1, M), the q and φ of each bin m, and ``exchange/C2T_all/<prefix>_<nnnnn>``. MATLAB names a map by its
  bin number (``C2T_00017``); boost_corr by a counter (``g2_00001``...) over ``xpcs/qphi_bin_to_process``
  (both sorted). The number is read as the bin number unless the names are exactly 1..K and
  ``qphi_bin_to_process`` holds K other bins: then name k is bin ``qphi_bin_to_process[k-1]``. MATLAB writes
  ``triu`` of a column-major array, which h5py reads back as the *lower* triangle; either half is accepted.

Every reader rebuilds ``c2 = h + hᵀ`` with the diagonal halved (pyXpcsViewer ``read_single_c2``), then replaces
the diagonal, which carries the speckle-visibility spike rather than the dynamics, by the mean of its neighbours
(pyXpcsViewer ``correct_diagonal_c2``).
"""
from __future__ import annotations

import warnings

import os
import re
from dataclasses import dataclass
from typing import NamedTuple

import h5py
import numpy as np

from ..errors import InputError
from ..validate import number

APS_U = "aps-u"
OLD = "old"

U_Q, U_PHI = "xpcs/qmap/dynamic_v_list_dim0", "xpcs/qmap/dynamic_v_list_dim1"
U_MAPPING = "xpcs/qmap/dynamic_index_mapping"
U_BINS, U_MAPS = "xpcs/twotime/processed_bins", "xpcs/twotime/correlation_map"
OLD_Q, OLD_PHI, OLD_MAPS = "xpcs/dqlist", "xpcs/dphilist", "exchange/C2T_all"
OLD_PROCESSED = "xpcs/qphi_bin_to_process"
# A layout is detected by any of its objects, so that a partial file is named in the error.
_MARKERS = {APS_U: ("xpcs/twotime", "xpcs/qmap"), OLD: (OLD_MAPS, OLD_Q, OLD_PHI)}
_LAYOUT_NAMES = {APS_U: "APS-U layout", OLD: "old layout", "multitau": "APS-U multitau result"}
# what names a layout in an error about a missing object (the multitau reader's too: .multitau)
_NAMED_BY = {**_MARKERS, "multitau": ("xpcs/multitau", "xpcs/qmap")}
# Bins whose q differ by less than this (relative) belong to the same ring: q is stored per bin in the old layout.
_Q_RTOL = 1e-6
_PHI_EPS = 1e-9          # degrees: range ends are inclusive despite rounding of stored angles


@dataclass(frozen=True, eq=False)
class TwoTimeData:
    """One q ring of a two-time file: the full matrices of the selected angles over the selected frames."""

    c2: np.ndarray                  # (n_phi, n_t, n_t) float64, read-only; symmetric, diagonal = neighbour mean
    phi: np.ndarray                 # (n_phi,) degrees, as stored
    q: float                        # the q chosen in the file (nearest to the requested one)
    dt: float                       # seconds per frame of the maps
    frames: tuple[int, int]         # (first, last) of the file's frames, 1-based, inclusive
    path: str                       # absolute path of the source file
    layout: str                     # APS_U or OLD
    source_stamp: tuple[int, int] | None = None   # (size, mtime_ns) of `path` when it was read
    maps: tuple = ()                # the map dataset of each angle in `path` (for messages)

    @property
    def n_t(self) -> int:
        return int(self.c2.shape[-1])

    @property
    def t(self) -> np.ndarray:
        """Time of each used frame, from 0: ``dt * arange(n_t)``."""
        return self.dt * np.arange(self.n_t)


# ---------------------------------------------------------------- pure numerics

def require_finite_pairs(values: np.ndarray, t1: np.ndarray, t2: np.ndarray, *, path, maps, phi, q: float,
                         first_frame: int, first_angle: int = 0) -> None:
    """Raise an InputError naming the file, map, angle and frame pair of the first NaN or Inf among
    ``values`` (n_angles, n_pairs): c2 at pairs (t1, t2) of angles ``first_angle`` onwards."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    a, k = (int(i) for i in np.argwhere(bad)[0])
    angle = first_angle + a
    name = maps[angle] if angle < len(maps) else f"c2[{angle}]"
    raise InputError(f"{path}: map '{name}' (angle {angle}, phi = {float(phi[angle]):g} deg, q = {q:g}) holds "
                     f"{int(bad[a].sum())} NaN or Inf value(s) among the fitted pairs; the first at frames (t1, t2) = "
                     f"({first_frame + int(t1[k])}, {first_frame + int(t2[k])}) (1-based frames of the file). A fit "
                     "needs finite c2: exclude this angle with `phi_ranges` or these frames with `frames`")

def reconstruct_c2(half: np.ndarray) -> np.ndarray:
    """Full matrices from stored triangular halves (..., n, n): ``h + hᵀ``, the diagonal halved."""
    h = np.asarray(half, dtype=np.float64)
    full = h + np.swapaxes(h, -1, -2)
    k = np.arange(h.shape[-1])
    full[..., k, k] /= 2
    return full


def replace_diagonal(c2: np.ndarray) -> np.ndarray:
    """Copy of ``c2`` (..., n, n), n >= 2, whose diagonal k is the mean of ``c2[k, k+1]`` and ``c2[k-1, k]``
    where they exist (the ends have one neighbour)."""
    out = np.array(c2, dtype=np.float64)
    if out.ndim < 2 or out.shape[-1] != out.shape[-2] or out.shape[-1] < 2:
        raise InputError(f"the diagonal needs neighbours: square matrices of at least 2x2 are expected, "
                         f"got shape {out.shape}")
    _replace_diagonal_inplace(out)
    return out


def _replace_diagonal_inplace(c2: np.ndarray) -> None:
    sup = np.diagonal(c2, offset=1, axis1=-2, axis2=-1).copy()       # c2[k, k+1], k = 0..n-2
    diag = np.empty(c2.shape[:-1])
    diag[..., 0], diag[..., -1] = sup[..., 0], sup[..., -1]
    diag[..., 1:-1] = (sup[..., :-1] + sup[..., 1:]) / 2
    k = np.arange(c2.shape[-1])
    c2[..., k, k] = diag


def phi_in_ranges(phi, phi_ranges) -> np.ndarray:
    """Boolean mask of the angles (degrees) inside any (lo, hi) range; None keeps all.

    Angles are compared modulo 360 and ends are inclusive. A range runs from lo upward to hi, so (350, 10)
    covers 350..360 and 0..10; a range of width >= 360 (e.g. (0, 360), (-180, 180)) covers every angle.
    """
    phi = np.asarray(phi, dtype=np.float64)
    if phi_ranges is None:
        return np.ones(phi.shape, dtype=bool)
    keep = np.zeros(phi.shape, dtype=bool)
    for lo, hi in _check_phi_ranges(phi_ranges):
        if hi - lo >= 360:
            return np.ones(phi.shape, dtype=bool)
        width = (hi - lo) % 360
        d = (phi - lo) % 360
        keep |= (d <= width + _PHI_EPS) | (d >= 360 - _PHI_EPS)
    return keep


# ---------------------------------------------------------------- argument checks



def _check_phi_ranges(phi_ranges) -> tuple[tuple[float, float], ...] | None:
    if phi_ranges is None:
        return None
    allowed = "a list of (lo, hi) pairs of finite angles in degrees, e.g. [(350, 10), (170, 190)], or None"
    try:
        ranges = tuple((float(lo), float(hi)) for lo, hi in phi_ranges)
    except (TypeError, ValueError):
        raise InputError(f"`phi_ranges` must be {allowed}; got {phi_ranges!r}") from None
    if not ranges or not np.all(np.isfinite(ranges)):
        raise InputError(f"`phi_ranges` must be {allowed} (None keeps every angle); got {phi_ranges!r}")
    return ranges


def _check_frames(frames) -> tuple[int, int] | None:
    if frames is None:
        return None
    ok = (isinstance(frames, (tuple, list)) and len(frames) == 2
          and all(isinstance(f, (int, np.integer)) and not isinstance(f, bool) for f in frames))
    if not ok:
        raise InputError(f"`frames` must be None or (first, last), two integers, 1-based and inclusive; "
                         f"got {frames!r}")
    return int(frames[0]), int(frames[1])


def _source_stamp(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return int(st.st_size), int(st.st_mtime_ns)


def _existing_file(path) -> str:
    p = os.path.abspath(os.fspath(path))
    if not os.path.exists(p):
        raise InputError(f"XPCS file not found: {p}")
    if not os.path.isfile(p):
        raise InputError(f"XPCS path is not a file: {p}")
    return p


#: What the readers take, for the message about a file they do not.
ACCEPTED = ("accepted: APS 8-ID-I two-time result files (HDF5 with xpcs/twotime/correlation_map, APS-U layout, or "
            "exchange/C2T_all, old layout)")


def _text_kind(path: str) -> str | None:
    """'a text file (...)' when the file's start is text, else None."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if b"\0" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:            # a multi-byte character cut at the end of the block
        if exc.start < len(head) - 4:
            return None
        text = head[:exc.start].decode("utf-8")
    first = text.splitlines()[0] if text.strip() else ""
    fields = first.replace(",", " ").split()
    try:
        [float(v) for v in fields]
    except ValueError:
        return "a text file"
    return f"a text file of numbers ({len(fields)} per line: a table or a map saved as text)" if fields else \
        "a text file"


def _open(path: str) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        if not h5py.is_hdf5(path):
            what = _text_kind(path) or "a file that is not HDF5"
            raise InputError(f"{path}: {what}, not HDF5; {ACCEPTED}; a map saved as text can be written into such "
                             "a file with hpcfit.xpcs.layouts.write_aps_u(path, c2[None, None], [q], [phi])") from None
        raise InputError(f"{path}: not a readable HDF5 file ({exc})") from None


# ---------------------------------------------------------------- layouts

def _without_maps(f: h5py.File, path: str) -> InputError | None:
    """A beamline result file that holds no two-time maps (a multitau-only result, say): the error
    saying so, or None when maps may be there."""
    if "xpcs/twotime" in f or OLD_MAPS in f:
        return None
    g2 = [n for n in ("xpcs/multitau/normalized_g2", "exchange/norm-0-g2", "exchange/g2") if n in f]
    if g2:
        return InputError(f"{path}: an APS multitau result file with g2 ({g2[0]}) but no two-time maps (no "
                          f"xpcs/twotime, no {OLD_MAPS}); {ACCEPTED}, made by a correlation run with two-time "
                          "analysis")
    if "xpcs/qmap" in f:
        return InputError(f"{path}: an APS-U result file without two-time maps (xpcs/qmap but no xpcs/twotime; it "
                          f"holds {sorted(f['xpcs'].keys())}); {ACCEPTED}")
    return None


def _detect(f: h5py.File, path: str) -> str:
    error = _without_maps(f, path)
    if error is not None:
        raise error
    for layout, markers in _MARKERS.items():
        if any(m in f for m in markers):
            return layout
    looked = ", ".join(m for markers in _MARKERS.values() for m in markers)
    raise InputError(f"{path}: an HDF5 file without the XPCS result layout (top-level keys {sorted(f.keys())}; "
                     f"none of {looked}); {ACCEPTED}")


def detect_layout(path) -> str:
    """APS_U or OLD, from which groups exist in the file (APS-U wins if both do)."""
    p = _existing_file(path)
    with _open(p) as f:
        return _detect(f, p)


def low_level_dataset(f: h5py.File, name: str):
    """h5py's low-level handle of the dataset ``name`` of ``f``, or None where there is no dataset
    with a shape (missing, a group, an empty dataspace). A multitau file has a dozen small datasets
    and a night hundreds of files: ``f.get(name)[()]`` costs ~0.25 ms a dataset in Python, this a
    fifth of it."""
    try:
        ds = h5py.h5d.open(f.id, name.encode())
    except Exception:  # noqa: BLE001 - h5py raises KeyError, ValueError or its own for each kind
        return None
    return ds if ds.shape is not None else None


def whole(ds) -> np.ndarray:
    """All of a dataset's values (a high-level ``h5py.Dataset`` or a low-level handle)."""
    if isinstance(ds, h5py.Dataset):
        return np.asarray(ds[()])
    out = np.empty(ds.shape, dtype=ds.dtype)
    if out.size:
        ds.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
    return out


class _Ctx(NamedTuple):
    f: h5py.File
    path: str
    layout: str

    def missing(self, name: str, what: str = "dataset") -> InputError:
        found = [m for m in _NAMED_BY[self.layout] if m in self.f]
        return InputError(f"{self.path}: {what} '{name}' is missing ({_LAYOUT_NAMES[self.layout]} detected from "
                          f"{', '.join(found)})")

    def dataset(self, name: str, obj=None) -> h5py.Dataset:
        """The dataset ``name`` (``obj``: it, already looked up), or an error naming what is there."""
        obj = self.f.get(name) if obj is None else obj
        if obj is None:
            raise self.missing(name)
        if not isinstance(obj, h5py.Dataset):
            raise InputError(f"{self.path}: '{name}' is a group; a dataset is expected "
                             f"({_LAYOUT_NAMES[self.layout]})")
        return obj

    def group(self, name: str) -> h5py.Group:
        obj = self.f.get(name)
        if obj is None:
            raise self.missing(name, "group")
        if not isinstance(obj, h5py.Group):
            raise InputError(f"{self.path}: '{name}' is a dataset; a group is expected "
                             f"({_LAYOUT_NAMES[self.layout]})")
        return obj

    def vector(self, name: str, *, integer: bool = False, optional: bool = False) -> np.ndarray | None:
        """A 1-D numeric dataset, also accepted as (1, N) or (N, 1)."""
        ds = low_level_dataset(self.f, name)
        if ds is None:                  # missing or a group: the high-level path names what is there
            obj = self.f.get(name)
            if optional and obj is None:
                return None
            ds = self.dataset(name, obj)
        shape = ds.shape
        size = 0 if shape is None else int(np.prod(shape))      # None: an empty dataspace
        shape = tuple(shape or ())
        if ds.dtype.kind not in "iuf" or len(shape) > 2 or (len(shape) == 2 and min(shape) != 1) or size == 0:
            raise InputError(f"{self.path}: dataset '{name}' has shape {shape} and dtype {ds.dtype}; expected "
                             f"a non-empty numeric vector of shape (N,) or (1, N) ({_LAYOUT_NAMES[self.layout]})")
        v = whole(ds).reshape(-1)
        if not np.all(np.isfinite(v)) or (integer and np.any(v != np.round(v))):
            kind = "integers" if integer else "finite numbers"
            raise InputError(f"{self.path}: dataset '{name}' must hold {kind}; got {v[:8]!r}"
                             f"{' ...' if v.size > 8 else ''}")
        return v.astype(np.int64) if integer else v.astype(np.float64)


class _Entries(NamedTuple):
    """Every stored map: its q, φ and dataset name, in grid (bin) order."""

    q: np.ndarray
    phi: np.ndarray
    names: list[str]


def _entries_aps_u(c: _Ctx) -> _Entries:
    q_values, phi_values = c.vector(U_Q), c.vector(U_PHI)
    bins = c.vector(U_BINS, integer=True)
    mapping = c.vector(U_MAPPING, integer=True, optional=True)
    n_cells = q_values.size * phi_values.size
    n_labels = n_cells if mapping is None else mapping.size
    if np.any(bins < 1) or np.any(bins > n_labels) or np.unique(bins).size != bins.size:
        raise InputError(f"{c.path}: dataset '{U_BINS}' must hold distinct bin labels in 1..{n_labels} "
                         f"({'entries of ' + U_MAPPING if mapping is not None else 'n_q * n_phi cells'}); "
                         f"got {bins.tolist()[:16]}")
    if mapping is not None and (np.any(mapping < 0) or np.any(mapping >= n_cells)):
        raise InputError(f"{c.path}: dataset '{U_MAPPING}' must hold 0-based cells of the {q_values.size} x "
                         f"{phi_values.size} (q, phi) grid, in 0..{n_cells - 1}")
    cells = bins - 1 if mapping is None else mapping[bins - 1]
    group = c.group(U_MAPS)
    names = [f"{U_MAPS}/c2_{k:05d}" for k in range(1, bins.size + 1)]
    for name in names:
        if name.rsplit("/", 1)[1] not in group:
            raise InputError(f"{c.path}: dataset '{name}' is missing: '{U_BINS}' has {bins.size} entries, so "
                             f"c2_00001..c2_{bins.size:05d} are expected in '{U_MAPS}' (APS-U layout)")
    order = np.argsort(cells, kind="stable")
    q_idx, phi_idx = np.divmod(cells[order], phi_values.size)
    return _Entries(q_values[q_idx], phi_values[phi_idx], [names[i] for i in order])


def _entries_old(c: _Ctx) -> _Entries:
    dq, dphi = c.vector(OLD_Q), c.vector(OLD_PHI)
    if dq.size != dphi.size:
        raise InputError(f"{c.path}: '{OLD_Q}' has {dq.size} bins but '{OLD_PHI}' has {dphi.size}; both must "
                         f"have shape (1, M), one q and one phi per bin (old layout)")
    group = c.group(OLD_MAPS)
    keys = list(group.keys())
    numbers = [re.search(r"(\d+)$", k) for k in keys]
    bad = [k for k, m in zip(keys, numbers) if m is None]
    if not keys or bad:
        raise InputError(f"{c.path}: group '{OLD_MAPS}' must hold maps named <prefix>_<bin number> "
                         f"(e.g. C2T_00001 or g2_00001); got {bad or 'no maps'} (old layout)")
    nums = np.array([int(m.group(1)) for m in numbers], dtype=np.int64)
    bins = nums
    processed = c.vector(OLD_PROCESSED, integer=True, optional=True)
    counter = np.arange(1, nums.size + 1)
    if (processed is not None and processed.size == nums.size and np.array_equal(np.sort(nums), counter)
            and not np.array_equal(np.sort(processed), counter)):
        bins = processed[nums - 1]                       # boost_corr: g2_<k> is the k-th processed bin
    if np.any(bins < 1) or np.any(bins > dq.size) or np.unique(bins).size != bins.size:
        raise InputError(f"{c.path}: the maps in '{OLD_MAPS}' name bins {sorted(bins.tolist())[:16]}; "
                         f"distinct bins in 1..{dq.size} (the length of '{OLD_Q}') are expected (old layout)")
    if processed is not None:
        missing = sorted(set(processed.tolist()) - set(bins.tolist()))
        if missing:
            raise InputError(f"{c.path}: '{OLD_PROCESSED}' lists bin(s) {missing[:16]} (q = "
                             f"{[float(dq[b - 1]) for b in missing[:4] if 1 <= b <= dq.size]}, phi = "
                             f"{[float(dphi[b - 1]) for b in missing[:4] if 1 <= b <= dphi.size]}) but "
                             f"'{OLD_MAPS}' has no map for them: the file is incomplete (old layout)")
    order = np.argsort(bins, kind="stable")
    return _Entries(dq[bins[order] - 1], dphi[bins[order] - 1], [f"{OLD_MAPS}/{keys[i]}" for i in order])


_ENTRIES = {APS_U: _entries_aps_u, OLD: _entries_old}


def map_dataset(c: _Ctx, name: str, n_t: int) -> h5py.Dataset:
    """A selected map's dataset, checked to be a numeric (n_t, n_t) matrix like the first one."""
    ds = c.dataset(name)
    if ds.ndim != 2 or ds.shape != (n_t, n_t) or ds.dtype.kind not in "iuf":
        raise InputError(f"{c.path}: dataset '{name}' has shape {ds.shape} and dtype {ds.dtype}; every selected "
                         f"map must be a numeric ({n_t}, {n_t}) matrix like the first one "
                         f"({_LAYOUT_NAMES[c.layout]})")
    return ds


def both_halves_error(c: _Ctx, name: str) -> InputError:
    return InputError(f"{c.path}: dataset '{name}' holds values on both sides of the diagonal; a triangular "
                      f"half (zeros on one side) is expected ({_LAYOUT_NAMES[c.layout]})")


def _read_half(c: _Ctx, name: str, n_t: int, first: int, last: int) -> np.ndarray:
    h = np.asarray(map_dataset(c, name, n_t)[first - 1:last, first - 1:last], dtype=np.float64)
    if np.any(np.tril(h, -1)) and np.any(np.triu(h, 1)):
        raise both_halves_error(c, name)
    return h


def _frame_window(c: _Ctx, frames, name: str) -> tuple[int, int, int]:
    ds = c.dataset(name)
    if ds.ndim != 2 or ds.shape[0] != ds.shape[1]:
        raise InputError(f"{c.path}: dataset '{name}' has shape {ds.shape}; a square (n_t, n_t) two-time map "
                         f"is expected ({_LAYOUT_NAMES[c.layout]})")
    n_t = int(ds.shape[0])
    first, last = (1, n_t) if frames is None else frames
    if not 1 <= first < last <= n_t:
        raise InputError(f"{c.path}: `frames`={frames if frames is not None else (first, last)} is out of range "
                         f"for dataset '{name}' with {n_t} frames: allowed is 1 <= first < last <= {n_t} "
                         f"(1-based, inclusive; at least 2 frames)")
    return n_t, first, last


@dataclass(frozen=True)
class QRange:
    """Every q ring in [low, high] (inclusive)."""

    low: float
    high: float


@dataclass(frozen=True)
class QRings:
    """The ring nearest to each of ``values``, in one fit."""

    values: tuple


ALL_RINGS = "all"


def q_request(q):
    """Which q rings a selection takes: a number (the ring nearest to it, fitted alone), ``"all"``
    (every ring), a list of numbers (the ring nearest to each) or a ``(q_min, q_max)`` tuple (every
    ring in between, inclusive), as a number, ``"all"``, :class:`QRings` or :class:`QRange`."""
    if isinstance(q, (QRange, QRings)) or (isinstance(q, str) and q == ALL_RINGS):
        return q
    if isinstance(q, dict) and set(q) == {"min", "max"}:          # TOML's q = {min = ..., max = ...}
        q = (q["min"], q["max"])
    if isinstance(q, tuple):
        if len(q) != 2:
            raise InputError(f"`q` as a tuple is a range (q_min, q_max); got {q!r} (a list [q, ...] names rings)")
        low, high = number("q_min", q[0]), number("q_max", q[1])
        if low > high:
            raise InputError(f"`q` range (q_min, q_max) must have q_min <= q_max; got {q!r}")
        return QRange(low, high)
    if isinstance(q, (list, np.ndarray)):
        values = tuple(number("q", v) for v in np.asarray(q, dtype=object).reshape(-1).tolist())
        if not values:
            raise InputError("`q` as a list must name at least one ring; got []")
        return QRings(values)
    if isinstance(q, str):
        raise InputError(f"`q` must be a number, 'all', a list of numbers or a (q_min, q_max) range; got {q!r}")
    return number("q", q)


@dataclass(frozen=True)
class Selection:
    """Which maps of a beamline file a selection (q rings, angle ranges, frame window) uses."""

    path: str
    layout: str
    q: float | tuple            # the ring chosen (one ring), or the q of every map (several rings)
    phi: np.ndarray             # (n_maps,) degrees
    names: tuple                # the map dataset of each map
    n_t_file: int               # frames in the file
    frames: tuple[int, int]     # (first, last), 1-based inclusive
    stamp: tuple[int, int]      # (size, mtime_ns) of the file when selected
    q_note: str | None = None   # set when a chosen q is more than a bin width from the requested one

    def warn_about_q(self) -> None:
        """Warn (the caller's rank 0) when the q used is far from the one asked for."""
        if self.q_note is not None:
            warnings.warn(self.q_note, QSelectionWarning, stacklevel=3)

    @property
    def n_t(self) -> int:
        return self.frames[1] - self.frames[0] + 1

    @property
    def q_maps(self) -> np.ndarray:
        """The q of every selected map."""
        return np.broadcast_to(np.asarray(self.q, dtype=float), self.phi.shape)

    @property
    def rings(self) -> tuple:
        """The distinct q rings used, ascending."""
        return tuple(np.unique(self.q_maps).tolist())

    def describe_q(self) -> str:
        rings = self.rings
        if isinstance(self.q, float):
            return f"q={self.q:g}"
        shown = ", ".join(f"{r:g}" for r in rings[:6]) + (" ..." if len(rings) > 6 else "")
        return f"{len(rings)} q ring(s) ({shown})"


class QSelectionWarning(UserWarning):
    """The q ring used is more than a bin width away from the requested q."""


def _q_note(path, requested: float, chosen: float, rings: np.ndarray) -> str | None:
    """A bin width is the smallest spacing between the file's q rings (5 % of q with one ring)."""
    distinct = np.unique(np.round(rings, 12))
    width = float(np.min(np.diff(distinct))) if distinct.size > 1 else 0.05 * chosen
    if abs(chosen - requested) <= width:
        return None
    return (f"{path}: no q ring near the requested q={requested:g}: using the nearest, q={chosen:g}, "
            f"{abs(chosen - requested) / width:.3g} bin widths ({width:g}) away; the file's rings are "
            f"{distinct.tolist()[:12]}{' ...' if distinct.size > 12 else ''}")


def _rings(path, request, q: np.ndarray) -> tuple[list[float], str | None]:
    """The file's rings ``request`` (from :func:`q_request`) names, ascending, and the note on any
    chosen far from the one asked for."""
    distinct = np.unique(q)
    nearest = lambda v: float(q[np.argmin(np.abs(q - v))])        # noqa: E731
    if isinstance(request, float):
        return [nearest(request)], _q_note(path, request, nearest(request), q)
    if request == ALL_RINGS:
        return sorted({float(v) for v in distinct}), None
    if isinstance(request, QRange):
        chosen = [float(v) for v in distinct if request.low * (1 - _Q_RTOL) <= v <= request.high * (1 + _Q_RTOL)]
        if not chosen:
            raise InputError(f"{path}: no q ring in `q` = ({request.low:g}, {request.high:g}); the file's rings are "
                             f"{distinct.tolist()[:24]}{' ...' if distinct.size > 24 else ''}")
        return chosen, None
    notes = [_q_note(path, v, nearest(v), q) for v in request.values]
    notes = [n for n in notes if n is not None]
    return sorted({nearest(v) for v in request.values}), "; ".join(notes) or None


def select(path, *, q, phi_ranges=None, frames=None) -> Selection:
    """Read the metadata of an APS 8-ID-I two-time file (either layout) and choose the maps: the q
    rings ``q`` names (:func:`q_request`), the angles in ``phi_ranges`` (see :func:`phi_in_ranges`;
    None keeps all) of each, and ``frames`` = (first, last), 1-based and inclusive. Rings may have
    different angles (the file's mapping says which cells have maps); maps are ordered by ring,
    then as stored."""
    request = q_request(q)
    ranges, frames = _check_phi_ranges(phi_ranges), _check_frames(frames)
    path = _existing_file(path)
    stamp = _source_stamp(path)
    with _open(path) as f:
        c = _Ctx(f, path, _detect(f, path))
        e = _ENTRIES[c.layout](c)
        chosen, note = _rings(path, request, e.q)
        keep, empty = [], []
        for ring in chosen:
            at_q = np.abs(e.q - ring) <= _Q_RTOL * ring
            here = np.flatnonzero(at_q & phi_in_ranges(e.phi, ranges))
            keep.extend(here.tolist())
            if here.size == 0:
                empty.append((ring, np.round(e.phi[at_q], 6).tolist()))
        if empty and (isinstance(request, (float, QRings)) or not keep):
            ring, angles = empty[0]
            asked = f" (nearest to the requested {request:g})" if isinstance(request, float) else ""
            raise InputError(f"{path}: no angle is left after `phi_ranges`={list(ranges)} at q={ring:g}{asked}; "
                             f"the angles available there are {angles} degrees (ranges are inclusive, compared "
                             f"modulo 360; (lo, hi) with lo > hi wraps through 0)")
        keep = np.asarray(keep, dtype=np.int64)
        names = tuple(e.names[i] for i in keep)
        n_t, first, last = _frame_window(c, frames, names[0])
    phi = e.phi[keep].copy()
    phi.flags.writeable = False
    q_used = chosen[0] if isinstance(request, float) else tuple(float(v) for v in e.q[keep])
    return Selection(path, c.layout, q_used, phi, names, n_t, (first, last), stamp, note)


def one_ring(q, what: str) -> float:
    """``q`` for ``what``, which takes one q ring: a number; an error saying where several go otherwise."""
    request = q_request(q)
    if isinstance(request, float):
        return request
    raise InputError(f"`q`: {what} takes one q ring (a number); got {q!r}. Several rings are fitted straight "
                     "from the file: hpcfit.xpcs.fit(hpcfit.xpcs.beamline(path, q=...)), or [data] kind = "
                     "\"xpcs\" with convert = false")


def map_dtype(selection: Selection) -> np.dtype:
    """float32 when the selection's first map is stored in float32 (as at APS), else float64: the
    precision a copy of its points keeps."""
    with _open(selection.path) as f:
        kind = f[selection.names[0]].dtype
    return np.dtype(np.float32) if kind == np.float32 else np.dtype(np.float64)


class MapReader:
    """Reads the selected maps one at a time: rebuilt from the stored half, diagonal replaced."""

    def __init__(self, selection: Selection):
        self.sel = selection
        self._file = _open(selection.path)
        self._ctx = _Ctx(self._file, selection.path, selection.layout)

    def read(self, j: int, out: np.ndarray | None = None) -> np.ndarray:
        """Map of the j-th selected angle, (n_t, n_t), into ``out`` if given."""
        first, last = self.sel.frames
        c2 = reconstruct_c2(_read_half(self._ctx, self.sel.names[j], self.sel.n_t_file, first, last))
        _replace_diagonal_inplace(c2)
        if out is None:
            return c2
        out[...] = c2
        return out

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load(path, *, q, dt, phi_ranges=None, frames=None) -> TwoTimeData:
    """Read the q ring nearest to ``q`` from an APS 8-ID-I two-time file (either layout).

    ``phi_ranges``: (lo, hi) degree ranges to keep (see :func:`phi_in_ranges`), None keeps all angles.
    ``frames``: (first, last), 1-based and inclusive, cut on both time axes before the diagonal is replaced.
    ``dt``: seconds per frame of the maps (frame time x stride x averaging of the two-time run).
    """
    dt, q = number("dt", dt), one_ring(q, "hpcfit.xpcs.load")
    sel = select(path, q=q, phi_ranges=phi_ranges, frames=frames)
    sel.warn_about_q()
    c2 = np.empty((sel.phi.size, sel.n_t, sel.n_t))        # one map in flight: peak ~ 1x c2
    with MapReader(sel) as reader:
        for j in range(sel.phi.size):
            reader.read(j, c2[j])
    c2.flags.writeable = False
    return TwoTimeData(c2, sel.phi, sel.q, dt, sel.frames, sel.path, sel.layout, sel.stamp, tuple(sel.names))


#: Where an APS 8-ID-I result file records what dt is made of: frame time x stride x averaging (the
#: last two in the config of the analysis: "twotime" or "multitau").
FRAME_TIME = "entry/instrument/detector_1/frame_time"


def dt_datasets(analysis: str = "twotime") -> tuple[str, str, str]:
    return FRAME_TIME, f"xpcs/{analysis}/config/stride_frame", f"xpcs/{analysis}/config/avg_frame"


_, STRIDE, AVERAGING = dt_datasets()


def series_dt(recorded: list, where: str = "") -> float:
    """The one dt that ``recorded`` ([(dt or None, what) per file], from :func:`recorded_dt`) gives;
    an error (prefixed ``where``) when a file records none or the files disagree."""
    missing = [what for value, what in recorded if value is None]
    if missing:
        raise InputError(f"{where}`dt` is required: {missing[0]}")
    values = [value for value, _ in recorded]
    if max(values) - min(values) > 1e-9 * max(values):
        raise InputError(f"{where}the files record different dt ({'; '.join(w for _, w in recorded[:3])}): one fit "
                         "has one dt; give `dt` to fit them together")
    return values[0]


def recorded_dt(path, analysis: str = "twotime") -> tuple[float | None, str]:
    """dt (seconds per frame of the two-time maps, or per delay step of the multitau g2 with
    ``analysis="multitau"``) as the file records it, ``frame_time × stride_frame × avg_frame``
    ((1, 1) arrays squeezed), or None when any of the three is missing; and a sentence saying what
    was found."""
    p = _existing_file(path)
    with _open(p) as f:
        return recorded_dt_in(f, p, analysis)


def recorded_dt_in(f: h5py.File, p: str, analysis: str = "twotime") -> tuple[float | None, str]:
    """:func:`recorded_dt` of the open file ``f`` (at path ``p``)."""
    frame, stride, averaging = dt_datasets(analysis)
    found = {}
    for name in (frame, stride, averaging):
        ds = low_level_dataset(f, name)
        if ds is not None and int(np.prod(ds.shape)) == 1 and ds.dtype.kind in "iuf":
            found[name] = float(whole(ds).reshape(()))
    if len(found) == 3 and all(np.isfinite(v) and v > 0 for v in found.values()):
        dt = found[frame] * found[stride] * found[averaging]
        return dt, (f"{p} records frame_time {found[frame]:g} s x stride_frame {found[stride]:g} x "
                    f"avg_frame {found[averaging]:g} = dt {dt:g} s")
    missing = [n for n in (frame, stride, averaging) if n not in found]
    return None, f"{p} does not record dt (missing or unusable: {', '.join(missing)})"
