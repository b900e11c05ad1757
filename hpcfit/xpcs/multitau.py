"""Reading APS 8-ID-I multitau results: g2(τ) of every dynamic q bin, for one-time correlation fits.

Serial and rank-0 only (NumPy and h5py; no MPI, no JAX). What boost_corr writes and pyXpcsViewer
reads (both real files in ``../shared/data/real`` hold it):

* ``xpcs/multitau/normalized_g2`` and ``normalized_g2_err``: (delays, bins) float32;
* ``xpcs/multitau/delay_list``: the delays in frames; τ = delay × dt with dt = ``frame_time`` ×
  ``xpcs/multitau/config/stride_frame`` × ``avg_frame`` as recorded (:func:`~.load.recorded_dt`);
* column k is dynamic bin label k + 1, the cell ``xpcs/qmap/dynamic_index_mapping[k]`` (0-based,
  q-major) of the grid ``dynamic_v_list_dim0`` × ``dynamic_v_list_dim1``; ``map_names`` says which
  axis is q and which φ (["q", "phi"] in every file seen).

A delay of a bin where no photon pair was counted is stored as g2 = 0 with error 0: that point has
no data and is left out. A bin with no data at any delay is named in :attr:`G2Data.empty` and
skipped by the fits.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..validate import number
from .load import U_MAPPING, U_PHI, U_Q, _Ctx, _existing_file, _open, low_level_dataset, recorded_dt_in, whole

G2, G2_ERR, DELAYS = "xpcs/multitau/normalized_g2", "xpcs/multitau/normalized_g2_err", "xpcs/multitau/delay_list"
MAP_NAMES = "xpcs/qmap/map_names"
MULTITAU = "multitau"


@dataclass(frozen=True, eq=False)
class G2Data:
    """The g2 of one multitau result file: ``g2[i, k]`` at delay ``tau[i]`` (seconds) of bin k at
    ``q[k]`` (Å⁻¹) and ``phi[k]`` (degrees). ``has_data[i, k]`` is False where the file holds no data
    (error 0 or a value that is not finite); ``empty`` lists the bins without any."""

    path: str
    tau: np.ndarray
    g2: np.ndarray
    err: np.ndarray
    q: np.ndarray
    phi: np.ndarray
    has_data: np.ndarray
    dt: float

    @property
    def n_bins(self) -> int:
        return self.q.size

    @property
    def empty(self) -> tuple[int, ...]:
        return tuple(int(k) for k in np.flatnonzero(~self.has_data.any(axis=0)))

    def describe_bin(self, k: int) -> str:
        return f"bin {k} (q = {self.q[k]:.5g} Å⁻¹, φ = {self.phi[k]:g}°)"


def read_g2(path, *, dt=None) -> G2Data:
    """g2(τ) of every dynamic bin of an APS 8-ID-I multitau result file. ``dt`` (seconds per delay
    step) defaults to the one the file records; it is required when the file does not record it."""
    p = _existing_file(path)
    with _open(p) as f:
        if G2 not in f:
            inside = sorted(f["xpcs"].keys()) if "xpcs" in f else sorted(f.keys())
            raise InputError(f"{p}: no multitau g2 ('{G2}' is missing; the file holds {inside}); accepted: APS "
                             "8-ID-I result files of a multitau correlation (boost_corr)")
        if dt is None:
            dt, what = recorded_dt_in(f, p, MULTITAU)
            if dt is None:
                raise InputError(f"`dt` is required: {what}")
        dt = number("dt", dt)
        c = _Ctx(f, p, MULTITAU)
        g2 = _table(c, G2)
        err = _table(c, G2_ERR)
        if err.shape != g2.shape:
            raise InputError(f"{p}: '{G2_ERR}' has shape {err.shape}, '{G2}' has {g2.shape}; they must agree")
        delays = c.vector(DELAYS)
        if delays.size != g2.shape[0] or np.any(delays <= 0) or np.any(np.diff(delays) <= 0):
            raise InputError(f"{p}: '{DELAYS}' must hold {g2.shape[0]} increasing positive delays (one per row of "
                             f"'{G2}'); got {delays.size} values: {delays[:8].tolist()}")
        q, phi = _bin_coordinates(c, g2.shape[1])
    has_data = np.isfinite(g2) & np.isfinite(err) & (err > 0)
    return G2Data(p, delays * dt, g2, err, q, phi, has_data, dt)


def _table(c: _Ctx, name: str) -> np.ndarray:
    ds = low_level_dataset(c.f, name)
    if ds is None:                       # missing, a group or empty: the high-level path says which
        ds = c.dataset(name)
    shape = tuple(ds.shape or ())
    if len(shape) != 2 or ds.dtype.kind not in "iuf" or 0 in shape:
        raise InputError(f"{c.path}: '{name}' has shape {shape} and dtype {ds.dtype}; expected a non-empty "
                         "numeric (delays, bins) table")
    return whole(ds).astype(np.float64)


def _bin_coordinates(c: _Ctx, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """q and φ of each column of the g2 table, through the dynamic q map."""
    stored = low_level_dataset(c.f, MAP_NAMES)
    names = ["q", "phi"] if stored is None else \
        [v.decode() if isinstance(v, bytes) else str(v) for v in whole(stored).reshape(-1)]
    if sorted(names) != ["phi", "q"]:
        raise InputError(f"{c.path}: '{MAP_NAMES}' is {names}; the q map's axes must be q and phi")
    axis0, axis1 = c.vector(U_Q), c.vector(U_PHI)
    n_cells = axis0.size * axis1.size
    mapping = c.vector(U_MAPPING, integer=True, optional=True)
    cells = np.arange(n_bins) if mapping is None else mapping
    if cells.size < n_bins or np.any(cells < 0) or np.any(cells >= n_cells):
        raise InputError(f"{c.path}: '{U_MAPPING}' must give each of the {n_bins} g2 columns a cell of the "
                         f"{axis0.size} x {axis1.size} ({names[0]}, {names[1]}) grid (0..{n_cells - 1}); got "
                         f"{cells.size} entries {cells[:8].tolist()}")
    i0, i1 = np.divmod(cells[:n_bins], axis1.size)
    first, second = axis0[i0], axis1[i1]
    return (first, second) if names[0] == "q" else (second, first)
