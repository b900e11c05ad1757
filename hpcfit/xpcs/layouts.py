"""Writers of synthetic two-time files in the two APS 8-ID-I layouts, for tests and simulators (NumPy + h5py).

Both store one triangular half per (q, φ) bin the way the beamline software does (see :mod:`hpcfit.xpcs.load` for
the sources): ``half="upper"`` is boost_corr's ``triu(c2)``, the diagonal kept at full value; ``half="lower"`` is
what h5py reads from the MATLAB writer of the old layout. The other half of ``c2`` is not stored, so for a symmetric
``c2``, :func:`hpcfit.xpcs.load.load` gives back every off-diagonal value exactly; the diagonal it replaces by the
mean of its neighbours.

:func:`open_aps_u_writer` and :func:`open_old_writer` write one (n_t, n_t) map at a time (a :class:`MapWriter`);
:func:`write_aps_u` and :func:`write_old` write full arrays (n_q, n_phi, n_t, n_t) through them. Rank 0 only.

Bins are numbered q-major from 1: bin ``q_idx * n_phi + phi_idx + 1`` (:func:`bin_number`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..pairs import check_n_t
from .piecewise import PiecewiseFile
from .load import OLD_MAPS, OLD_PHI, OLD_PROCESSED, OLD_Q, U_BINS, U_MAPPING, U_MAPS, U_PHI, U_Q

_HALVES = ("upper", "lower")
_OLD_NAMING = ("bin", "counter")


def bin_number(q_idx: int, phi_idx: int, n_phi: int) -> int:
    """1-based bin number of grid cell (q_idx, phi_idx), q-major."""
    return q_idx * n_phi + phi_idx + 1


def _check(c2, q_values, phi_values, half):
    c2 = np.asarray(c2, dtype=np.float64)
    q, phi = _grid(q_values, phi_values)
    if c2.ndim != 4 or c2.shape[2] != c2.shape[3] or c2.shape[:2] != (q.size, phi.size) or c2.shape[2] < 2:
        raise InputError(f"`c2` must have shape (n_q, n_phi, n_t, n_t) = ({q.size}, {phi.size}, n_t, n_t) with "
                         f"n_t >= 2, matching `q_values` and `phi_values`; got {c2.shape}")
    _check_half(half)
    return c2, q, phi


def _grid(q_values, phi_values) -> tuple[np.ndarray, np.ndarray]:
    return (np.asarray(q_values, dtype=np.float64).reshape(-1), np.asarray(phi_values, dtype=np.float64).reshape(-1))


def _check_half(half) -> str:
    if half not in _HALVES:
        raise InputError(f"`half` must be one of {_HALVES}; got {half!r}")
    return half


def _triangle(m: np.ndarray, half: str) -> np.ndarray:
    return np.triu(m) if half == "upper" else np.tril(m)


def _labels(processed, n_labels: int) -> np.ndarray:
    if processed is None:
        return np.arange(1, n_labels + 1, dtype=np.int64)
    p = np.asarray(processed).reshape(-1)
    if (p.size == 0 or p.dtype.kind not in "iu" or np.any(p < 1) or np.any(p > n_labels)
            or np.unique(p).size != p.size):
        raise InputError(f"`processed` must be distinct bin labels in 1..{n_labels}; got {processed!r}")
    return p.astype(np.int64)


class MapWriter(PiecewiseFile):
    """A two-time file being written one (n_t, n_t) map at a time (from :func:`open_aps_u_writer` or
    :func:`open_old_writer`), so a producer never holds more than one map. Rank 0 only.

    ``cells`` lists the (q_idx, phi_idx) of every map the file expects, in storage order. :meth:`close` (or the
    end of a ``with`` block) checks that each was written; a missing map, or leaving the ``with`` block by an
    exception (:meth:`abort`), removes the file, which a loader could not read.
    """

    piece = "map"

    def __init__(self, path, header: dict, group: str, names: dict, n_t: int, half: str, attrs):
        self.n_t, self.half = n_t, half
        self._names = dict(names)                  # (q_idx, phi_idx) -> dataset path, in storage order

        def setup(f):
            for name, value in header.items():
                f.create_dataset(name, data=value)
            f.attrs.update(attrs or {})
            f.create_group(group)

        super().__init__(Path(path), None, self._names, setup)

    @property
    def cells(self) -> list[tuple[int, int]]:
        return list(self._names)

    def write(self, q_idx: int, phi_idx: int, c2_map) -> None:
        """Store the ``half`` triangle of the full (n_t, n_t) map of grid cell (q_idx, phi_idx)."""
        f = self._file()
        cell = (int(q_idx), int(phi_idx))
        if cell not in self._todo:
            state = "was already written" if cell in self._names else "gets no map in this file"
            raise InputError(f"grid cell (q_idx, phi_idx) = {cell} {state}; the file's maps are for cells "
                             f"{self.cells[:16]}{' ...' if len(self._names) > 16 else ''}")
        m = np.asarray(c2_map, dtype=np.float64)
        if m.shape != (self.n_t, self.n_t):
            raise InputError(f"`c2_map` must have shape ({self.n_t}, {self.n_t}); got {m.shape}")
        try:
            # float32, as the beamline software writes maps
            f.create_dataset(self._names[cell], data=_triangle(m, self.half).astype(np.float32))
        except OSError as exc:
            raise InputError(f"cannot write {self.path}: {exc}") from None
        self._done(cell)


def open_aps_u_writer(path, q_values, phi_values, n_t: int, *, processed=None, empty=(), half: str = "upper",
                      attrs=None) -> MapWriter:
    """Start an APS-U layout file of (n_t, n_t) maps on the (q_values x phi_values) grid.

    ``empty``: (q_idx, phi_idx) grid cells with no pixels; they get no bin label, so labels 1..K name the other
    cells in q-major order through ``xpcs/qmap/dynamic_index_mapping``. ``processed``: the labels that get a map
    (default all), written as ``processed_bins`` in the given order, map k as ``correlation_map/c2_<k:05d>``.
    ``attrs``: root attributes to add.
    """
    q, phi = _grid(q_values, phi_values)
    n_t, half = check_n_t(n_t, 2, " (frames of each map)"), _check_half(half)
    n_phi = phi.size
    skip = {bin_number(int(i), int(j), n_phi) - 1 for i, j in empty}
    if any(not 0 <= cell < q.size * n_phi for cell in skip):
        raise InputError(f"`empty` must list (q_idx, phi_idx) cells of the {q.size} x {n_phi} grid; got {empty!r}")
    mapping = np.array([cell for cell in range(q.size * n_phi) if cell not in skip], dtype=np.int64)
    labels = _labels(processed, mapping.size)
    names = {divmod(int(mapping[label - 1]), n_phi): f"{U_MAPS}/c2_{k:05d}"
             for k, label in enumerate(labels, start=1)}
    header = {U_Q: q, U_PHI: phi, U_MAPPING: mapping, U_BINS: labels}
    return MapWriter(path, header, U_MAPS, names, n_t, half, attrs)


def open_old_writer(path, q_values, phi_values, n_t: int, *, processed=None, naming: str = "bin",
                    half: str = "upper", attrs=None) -> MapWriter:
    """Start an old-layout file: ``xpcs/dqlist``, ``xpcs/dphilist`` of shape (1, n_q * n_phi) and one map per
    processed bin (default all) in ``exchange/C2T_all``, named by bin number (``naming="bin"``: ``C2T_00017``,
    as MATLAB) or by a counter over ``xpcs/qphi_bin_to_process`` (``naming="counter"``: ``g2_00001``, as the
    pre-APS-U boost_corr). ``attrs``: root attributes to add."""
    q, phi = _grid(q_values, phi_values)
    n_t, half = check_n_t(n_t, 2, " (frames of each map)"), _check_half(half)
    if naming not in _OLD_NAMING:
        raise InputError(f"`naming` must be one of {_OLD_NAMING}; got {naming!r}")
    n_phi = phi.size
    bins = _labels(processed, q.size * n_phi)
    if np.any(np.diff(bins) <= 0):   # both real writers sort; a counter over an unsorted list is ambiguous
        raise InputError(f"`processed` must be ascending for the old layout; got {processed!r}")
    names = {divmod(int(b) - 1, n_phi): f"{OLD_MAPS}/{f'C2T_{b:05d}' if naming == 'bin' else f'g2_{k:05d}'}"
             for k, b in enumerate(bins, start=1)}
    header = {OLD_Q: np.repeat(q, n_phi).reshape(1, -1), OLD_PHI: np.tile(phi, q.size).reshape(1, -1),
              OLD_PROCESSED: bins}
    return MapWriter(path, header, OLD_MAPS, names, n_t, half, attrs)


def _write_every_map(writer: MapWriter, c2: np.ndarray) -> Path:
    with writer:
        for q_idx, phi_idx in writer.cells:
            writer.write(q_idx, phi_idx, c2[q_idx, phi_idx])
    return writer.path


def write_aps_u(path, c2, q_values, phi_values, *, processed=None, empty=(), half: str = "upper") -> Path:
    """Write an APS-U layout file from full maps ``c2`` (n_q, n_phi, n_t, n_t); the other arguments as
    :func:`open_aps_u_writer`."""
    c2, q, phi = _check(c2, q_values, phi_values, half)
    return _write_every_map(open_aps_u_writer(path, q, phi, c2.shape[2], processed=processed, empty=empty,
                                              half=half), c2)


def write_old(path, c2, q_values, phi_values, *, processed=None, naming: str = "bin",
              half: str = "upper") -> Path:
    """Write an old-layout file from full maps ``c2`` (n_q, n_phi, n_t, n_t); the other arguments as
    :func:`open_old_writer`."""
    c2, q, phi = _check(c2, q_values, phi_values, half)
    return _write_every_map(open_old_writer(path, q, phi, c2.shape[2], processed=processed, naming=naming,
                                            half=half), c2)


def multitau_delays(n_delays: int, per_level: int = 8) -> np.ndarray:
    """The delays (in frames) of a multitau correlator as boost_corr writes them: 1 … ``per_level``,
    then ``per_level/2`` delays per level, each level twice as coarse (1..8, 10, 12, 14, 16, 20, …;
    the real files' 61 delays end at 81920)."""
    half = per_level // 2
    out = list(range(1, per_level + 1))
    level = 1
    while len(out) < n_delays:
        out += [(half + i + 1) << level for i in range(half)]
        level += 1
    return np.array(out[:n_delays], dtype=np.int64)


def write_multitau(path, g2, err, delays, q_values, phi_values=(0.0,), *, frame_time: float,
                   stride: int = 1, averaging: int = 1, mapping=None) -> Path:
    """A multitau result file in the APS-U layout (boost_corr's datasets, :mod:`.multitau` reads
    them): ``g2``/``err`` (delays, bins), ``delays`` in frames, the q × φ grid and, per column, its
    cell (``mapping``, 0-based q-major; default: every cell in order)."""
    import h5py

    q, phi = _grid(q_values, phi_values)
    g2, err = np.asarray(g2, np.float32), np.asarray(err, np.float32)
    mapping = np.arange(g2.shape[1]) if mapping is None else np.asarray(mapping)
    if g2.ndim != 2 or err.shape != g2.shape or len(delays) != g2.shape[0] or mapping.size != g2.shape[1] \
            or mapping.max(initial=0) >= q.size * phi.size:
        raise InputError(f"write_multitau: g2 and err (delays, bins) {g2.shape}/{err.shape}, {len(delays)} delays, "
                         f"{mapping.size} mapped bins of a {q.size} x {phi.size} grid must agree")
    path = Path(path)
    with h5py.File(path, "w") as f:
        f["xpcs/multitau/normalized_g2"] = g2
        f["xpcs/multitau/normalized_g2_err"] = err
        f["xpcs/multitau/delay_list"] = np.asarray(delays, np.int64)
        f["xpcs/multitau/config/stride_frame"] = np.int64(stride)
        f["xpcs/multitau/config/avg_frame"] = np.int64(averaging)
        f["entry/instrument/detector_1/frame_time"] = float(frame_time)
        f[U_Q], f[U_PHI] = q, phi
        f[U_MAPPING] = mapping.astype(np.uint16)
        f["xpcs/qmap/map_names"] = np.array([b"q", b"phi"], dtype=object)
        f["xpcs/qmap/dynamic_num_pts"] = np.array([q.size, phi.size], np.int64)
    return path
