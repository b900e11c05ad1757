"""The results table of g2 fits (:class:`hpcfit.xpcs.g2.G2Fits`): one row per fitted bin — file,
bin, q, φ, each parameter and its error, χ², degrees of freedom, reduced χ², status, whether to
trust it and why not — as CSV (for spreadsheets and pandas) and as HDF5 (the same columns as
datasets of group ``g2_fits``, parameter names and the form as attributes). Both are written to
a temporary name and renamed, so a reader never sees half a table. Rank 0 only."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from ..result import Status


def table_columns(fits) -> dict[str, list]:
    """The table's columns in order: name → values per row."""
    cols = {"file": list(fits.file), "bin": fits.bin.tolist(), "q": fits.q.tolist(), "phi": fits.phi.tolist()}
    for c, name in enumerate(fits.names):
        cols[name] = fits.popt[:, c].tolist()
        cols[f"{name}_err"] = fits.perr[:, c].tolist()
    cols.update({"chi2": fits.chi2.tolist(), "dof": fits.dof.tolist(), "reduced_chi2": fits.reduced_chi2.tolist(),
                 "status": [Status(s).name for s in fits.status], "trustworthy": fits.trustworthy.tolist(),
                 "issues": list(fits.issues)})
    return cols


def write_csv(fits, path) -> Path:
    path = Path(path)
    cols = table_columns(fits)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(cols)
        for row in zip(*cols.values()):
            out.writerow([repr(v) if isinstance(v, float) else v for v in row])
    os.replace(tmp, path)
    return path


def write_hdf5(fits, path) -> Path:
    import h5py

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    text = h5py.string_dtype()
    with h5py.File(tmp, "w") as f:
        g = f.create_group("g2_fits")
        g.attrs["form"] = fits.form
        g.attrs["parameters"] = list(fits.names)
        g["file"] = np.array(fits.file, dtype=object).astype(text)
        for name in ("bin", "q", "phi", "popt", "perr", "chi2", "dof", "status"):
            g[name] = np.asarray(getattr(fits, name))
        g["reduced_chi2"] = fits.reduced_chi2
        g["trustworthy"] = fits.trustworthy
        g["issues"] = np.array(fits.issues, dtype=object).astype(text)
        g["skipped"] = np.array(fits.skipped, dtype=object).astype(text)
    os.replace(tmp, path)
    return path
