"""Per-point outputs: the fitted values f(x, popt), the residuals y − f and the normalized
residuals (y − f)/σ of every point, in the data's own order, as datasets ``fitted``,
``residual`` and ``normalized_residual`` of an HDF5 file.

Collective: every rank evaluates its own chunks (one chunk in memory at a time). With parallel
h5py and more than one rank, every rank writes its chunks into the file itself ("mpio" driver);
otherwise rank 0 writes what the ranks send it, chunk by chunk, in rounds that each end in an
agreement, so a failure anywhere is an error on every rank and nobody is left waiting. The file is
written to ``NAME.tmp`` and renamed when complete.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import FitError
from ..kernels.chunk import prediction_kernel
from ..kernels.coords import implicit_model

DATASETS = ("fitted", "residual", "normalized_residual")


def _values(kernel, chunk, theta) -> np.ndarray:
    """(3, chunk_size): fitted, residual, normalized residual of one chunk (padding included)."""
    fitted = np.asarray(kernel(chunk.x, theta))
    residual = chunk.y - fitted
    return np.stack([fitted, residual, residual * chunk.weight])


def write_per_point(path, result, source, comm, chunk_size: int, parallel: bool | None = None) -> str:
    """Collective: write the per-point datasets of ``result`` on ``source``'s points to ``path``.
    ``parallel``: force the writer (None: "mpio" when h5py has parallel HDF5 and there are ranks)."""
    import h5py

    local = source.open(comm, chunk_size)
    try:
        kernel = prediction_kernel(implicit_model(result.model, local))
        theta = np.asarray(result.popt, dtype=np.float64)
        if parallel is None:
            parallel = comm.size > 1 and bool(h5py.get_config().mpi)
        tmp = f"{os.fspath(path)}.tmp"
        if parallel:
            _write_mpio(tmp, local, kernel, theta, comm)
        else:
            _write_gathered(tmp, local, kernel, theta, comm)
        comm.agree(lambda: os.replace(tmp, path) if comm.is_root else None)
    except BaseException:
        if comm.is_root and os.path.exists(tmp):
            os.remove(tmp)
        raise
    finally:
        if hasattr(source, "close"):
            source.close()
    return os.fspath(path)


def _create(f, n: int, writer: str) -> list:
    f.attrs["format"], f.attrs["writer"] = "hpcfit-per-point", writer
    f.attrs["columns"] = ",".join(DATASETS)
    return [f.create_dataset(name, shape=(n,), dtype="f8") for name in DATASETS]


def _write_mpio(tmp: str, local, kernel, theta, comm) -> None:
    import h5py

    with h5py.File(tmp, "w", driver="mpio", comm=comm.mpi) as f:
        dsets = _create(f, local.n_points, "mpio")
        for i in range(local.n_local):
            chunk = local.read(i)
            values = _values(kernel, chunk, theta)
            lo = chunk.global_start
            for dset, row in zip(dsets, values):
                dset[lo:lo + chunk.n_valid] = row[:chunk.n_valid]


def _write_gathered(tmp: str, local, kernel, theta, comm) -> None:
    """Round k: every rank computes its k-th chunk (if it has one), all agree, then the others send
    theirs to rank 0, which writes them at their global place."""
    import h5py

    layout = comm.allgather((local.n_local, local.first_leaf))
    rounds = max(n for n, _ in layout)
    size, n = local.chunk_size, local.n_points
    f = dsets = None
    pending = None

    def start():
        nonlocal f, dsets
        f = h5py.File(tmp, "w")
        dsets = _create(f, n, "gathered")

    try:
        comm.agree(lambda: start() if comm.is_root else None)
        buffer = np.empty((3, size))
        for k in range(rounds):
            mine = comm.agree(lambda: _values(kernel, local.read(k), theta) if k < local.n_local else None)
            if not comm.is_root:
                if mine is not None:
                    comm.send_array(mine, 0)
                comm.agree(_raise, None)
                continue
            for r, (count, first) in enumerate(layout):
                if k >= count:
                    continue
                values = mine if r == 0 else comm.recv_array(buffer, r)
                lo = (first + k) * size
                hi = min(n, lo + size)
                if pending is None:
                    try:
                        for dset, row in zip(dsets, values):
                            dset[lo:hi] = row[:hi - lo]
                    except Exception as exc:  # noqa: BLE001 - raised on every rank at the agreement
                        pending = FitError(f"writing per-point outputs to {tmp} failed: {type(exc).__name__}: {exc}")
            comm.agree(_raise, pending)
    finally:
        if f is not None:
            f.close()
    comm.agree(_raise, None)


def _raise(error) -> None:
    if error is not None:
        raise error
