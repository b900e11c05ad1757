"""Writers of synthetic two-time files in the two APS 8-ID-I layouts, for tests and simulators (NumPy + h5py).

Both take full matrices ``c2`` of shape (n_q, n_phi, n_t, n_t) and store one triangular half per (q, φ) bin the
way the beamline software does (see :mod:`hpcfit.xpcs.load` for the sources): ``half="upper"`` is boost_corr's
``triu(c2)``, the diagonal kept at full value; ``half="lower"`` is what h5py reads from the MATLAB writer of the
old layout. The other half of ``c2`` is not stored, so for a symmetric ``c2``, :func:`hpcfit.xpcs.load.load`
gives back every off-diagonal value exactly; the diagonal it replaces by the mean of its neighbours.

Bins are numbered q-major from 1: bin ``q_idx * n_phi + phi_idx + 1`` (:func:`bin_number`).
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ..errors import InputError
from . import load as L

_HALVES = ("upper", "lower")
_OLD_NAMING = ("bin", "counter")


def bin_number(q_idx: int, phi_idx: int, n_phi: int) -> int:
    """1-based bin number of grid cell (q_idx, phi_idx), q-major."""
    return q_idx * n_phi + phi_idx + 1


def _check(c2, q_values, phi_values, half):
    c2 = np.asarray(c2, dtype=np.float64)
    q = np.asarray(q_values, dtype=np.float64).reshape(-1)
    phi = np.asarray(phi_values, dtype=np.float64).reshape(-1)
    if c2.ndim != 4 or c2.shape[2] != c2.shape[3] or c2.shape[:2] != (q.size, phi.size) or c2.shape[2] < 2:
        raise InputError(f"`c2` must have shape (n_q, n_phi, n_t, n_t) = ({q.size}, {phi.size}, n_t, n_t) with "
                         f"n_t >= 2, matching `q_values` and `phi_values`; got {c2.shape}")
    if half not in _HALVES:
        raise InputError(f"`half` must be one of {_HALVES}; got {half!r}")
    return c2, q, phi


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


def write_aps_u(path, c2, q_values, phi_values, *, processed=None, empty=(), half: str = "upper") -> Path:
    """Write an APS-U layout file.

    ``empty``: (q_idx, phi_idx) grid cells with no pixels; they get no bin label, so labels 1..K name the other
    cells in q-major order through ``xpcs/qmap/dynamic_index_mapping``. ``processed``: the labels that get a map
    (default all), written as ``processed_bins`` in the given order, map k as ``correlation_map/c2_<k:05d>``.
    """
    c2, q, phi = _check(c2, q_values, phi_values, half)
    n_phi = phi.size
    skip = {bin_number(int(i), int(j), n_phi) - 1 for i, j in empty}
    if any(not 0 <= cell < q.size * n_phi for cell in skip):
        raise InputError(f"`empty` must list (q_idx, phi_idx) cells of the {q.size} x {n_phi} grid; got {empty!r}")
    mapping = np.array([cell for cell in range(q.size * n_phi) if cell not in skip], dtype=np.int64)
    labels = _labels(processed, mapping.size)
    with h5py.File(path, "w") as f:
        f.create_dataset(L.U_Q, data=q)
        f.create_dataset(L.U_PHI, data=phi)
        f.create_dataset(L.U_MAPPING, data=mapping)
        f.create_dataset(L.U_BINS, data=labels)
        group = f.create_group(L.U_MAPS)
        for k, label in enumerate(labels, start=1):
            q_idx, phi_idx = divmod(int(mapping[label - 1]), n_phi)
            group.create_dataset(f"c2_{k:05d}", data=_triangle(c2[q_idx, phi_idx], half))
    return Path(path)


def write_old(path, c2, q_values, phi_values, *, processed=None, naming: str = "bin",
              half: str = "upper") -> Path:
    """Write an old-layout file: ``xpcs/dqlist``, ``xpcs/dphilist`` of shape (1, n_q * n_phi) and one map per
    processed bin (default all) in ``exchange/C2T_all``, named by bin number (``naming="bin"``: ``C2T_00017``,
    as MATLAB) or by a counter over ``xpcs/qphi_bin_to_process`` (``naming="counter"``: ``g2_00001``, as the
    pre-APS-U boost_corr)."""
    c2, q, phi = _check(c2, q_values, phi_values, half)
    if naming not in _OLD_NAMING:
        raise InputError(f"`naming` must be one of {_OLD_NAMING}; got {naming!r}")
    n_phi = phi.size
    bins = _labels(processed, q.size * n_phi)
    if np.any(np.diff(bins) <= 0):   # both real writers sort; a counter over an unsorted list is ambiguous
        raise InputError(f"`processed` must be ascending for the old layout; got {processed!r}")
    with h5py.File(path, "w") as f:
        f.create_dataset(L.OLD_Q, data=np.repeat(q, n_phi).reshape(1, -1))
        f.create_dataset(L.OLD_PHI, data=np.tile(phi, q.size).reshape(1, -1))
        f.create_dataset(L.OLD_PROCESSED, data=bins)
        group = f.create_group(L.OLD_MAPS)
        for k, b in enumerate(bins, start=1):
            q_idx, phi_idx = divmod(int(b) - 1, n_phi)
            name = f"C2T_{b:05d}" if naming == "bin" else f"g2_{k:05d}"
            group.create_dataset(name, data=_triangle(c2[q_idx, phi_idx], half))
    return Path(path)
