"""numpy's BLAS runs on one thread during a fit.

numpy's dense linear algebra (the trust-region solves, phase 1's LM on the sample on every rank, the
covariance) runs in OpenBLAS, which starts one thread per core in every process. With one MPI rank per
core, n ranks × n busy-waiting BLAS threads share n cores: phase 1 of a 300-map XPCS fit (p = 607) took
460 s on 2 ranks of a 2-core machine, 20 s with one BLAS thread per rank (docs/benchmarks.md, issue 20).
A result can also depend on the number of BLAS threads, and a fit must give the same bits on any rank
count. So a fit runs with one BLAS thread on every rank count and restores the count afterwards; the
matrices are small (p × p), and the work per point is JAX's, which keeps its own threads.

A count the user chose is left alone: when OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, GOTO_NUM_THREADS or
MKL_NUM_THREADS is set, nothing changes. Only OpenBLAS (numpy's and scipy's wheels) is limited; another
BLAS (MKL in conda's numpy) follows its own environment variables.
"""
from __future__ import annotations

import ctypes
import os
import threading
from contextlib import contextmanager

#: Variables by which a user sets BLAS threads; when any is set, fits leave the count alone.
USER_SETTINGS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "GOTO_NUM_THREADS", "MKL_NUM_THREADS")
# (setter, getter) in OpenBLAS builds: numpy/scipy wheels' scipy_openblas (64- and 32-bit integers), plain
_SYMBOLS = (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
            ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
            ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
            ("openblas_set_num_threads", "openblas_get_num_threads"))
_lock = threading.Lock()
_depth = 0
_saved: list[tuple] = []


def loaded_openblas() -> list[tuple]:
    """(set, get) of every OpenBLAS loaded in this process (numpy and scipy may each bring one)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and ".so" in line})
    except OSError:          # not Linux: nothing found, nothing changed
        return []
    found = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LOCAL)
        except OSError:
            continue
        for setter, getter in _SYMBOLS:
            if hasattr(lib, setter) and hasattr(lib, getter):
                set_threads, get_threads = getattr(lib, setter), getattr(lib, getter)
                set_threads.argtypes, set_threads.restype, get_threads.restype = [ctypes.c_int], None, ctypes.c_int
                found.append((set_threads, get_threads))
                break
    return found


@contextmanager
def one_blas_thread():
    """numpy's OpenBLAS on one thread inside (nested uses and threads share one limit), the previous count
    restored when the outermost use ends. Nothing changes when the user set a BLAS thread count."""
    global _depth
    if any(os.environ.get(name) for name in USER_SETTINGS):
        yield
        return
    with _lock:
        if _depth == 0:
            _saved[:] = [(set_threads, get_threads()) for set_threads, get_threads in loaded_openblas()]
            for set_threads, _ in _saved:
                set_threads(1)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for set_threads, count in _saved:
                    set_threads(count)
                _saved.clear()


def blas_threads() -> list[int]:
    """The thread count of each loaded OpenBLAS (for tests and reports)."""
    return [get_threads() for _, get_threads in loaded_openblas()]
