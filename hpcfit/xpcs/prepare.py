"""From a beamline file to a streamable file: converted once, in parallel, and reused.

The APS 8-ID-I layouts keep one triangular dataset per (q, φ) bin, which cannot be read by
hyperslabs of the flat point index. ``prepare_stream`` writes the selected points once as a flat
stream file (:mod:`hpcfit.xpcs.stream`) next to the source — each rank reads and rebuilds its
angles, rank 0 writes — and on later calls returns that file at once while the source's path,
size and mtime, and the selection (q, angles, frames, triangle, dt), still match.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..comm import Communicator
from ..errors import InputError
from ..pairs import pair_frames
from .load import MapReader, map_dtype, one_ring, require_finite_pairs, select
from .rounds import write_rounds
from .stream import converted_path, is_current, is_stream_file, open_stream_writer, read_stream_meta


def prepare_stream(path, *, q, dt, phi_ranges=None, frames=None, triangle: str = "upper", out=None,
                   comm=None) -> Path:
    """Collective: the stream file of this selection of ``path`` (see :func:`hpcfit.xpcs.load.load`
    for ``q``, ``phi_ranges``, ``frames``, ``dt``), converting only if no current one exists.

    ``out``: where to write (default :func:`converted_path`, beside the source; pass a writable
    place when the data directory is read-only). Returns the path; pass it to
    :func:`hpcfit.xpcs.fit`.
    """
    with Communicator(comm) as hc:
        target = hc.agree(_target, path, q, phi_ranges, frames, triangle, out)
        sel = hc.agree(select, path, q=one_ring(q, "prepare_stream"), phi_ranges=phi_ranges, frames=frames)
        if hc.is_root:
            sel.warn_about_q()
        if hc.on_root(_reusable, target, sel, dt, triangle):
            return target
        writer = hc.agree(lambda: open_stream_writer(
            target, phi=sel.phi, n_t=sel.n_t, dt=dt, q=sel.q, triangle=triangle, frames=sel.frames,
            layout=sel.layout, source=(sel.path, *sel.stamp), dtype=map_dtype(sel)) if hc.is_root else None)
        reader = None
        try:
            reader = hc.agree(MapReader, sel)
            t1, t2 = pair_frames(sel.n_t, triangle)

            def read_finite(a: int, buf: np.ndarray) -> np.ndarray:
                reader.read(a, buf)
                require_finite_pairs(buf[t1, t2][None], t1, t2, path=sel.path, maps=sel.names, phi=sel.phi, q=sel.q,
                                     first_frame=sel.frames[0], first_angle=a)
                return buf

            write_rounds(hc, sel.phi.size, sel.n_t, read_finite,
                         None if writer is None else writer.write, None if writer is None else writer.close,
                         label=f"prepare_stream {sel.path}")
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        finally:
            if reader is not None:
                reader.close()
        return target


def _reusable(target: Path, sel, dt: float, triangle: str) -> bool:
    """An existing stream file made from this very selection of the unchanged source."""
    if not is_current(target, sel.path):
        return False
    meta = read_stream_meta(target)
    return (meta.dt == float(dt) and meta.triangle == triangle and meta.q == sel.q
            and tuple(meta.frames) == tuple(sel.frames) and np.array_equal(meta.phi, sel.phi))


def _target(path, q, phi_ranges, frames, triangle, out) -> Path:
    q = one_ring(q, "prepare_stream (a conversion to a stream file)")
    if triangle not in ("upper", "both"):
        raise InputError(f"`triangle` must be 'upper' or 'both'; got {triangle!r}")
    target = Path(os.fspath(out)) if out is not None else converted_path(path, q, phi_ranges, frames, triangle)
    _refuse_to_destroy(target, Path(os.fspath(path)))
    return target


def _refuse_to_destroy(target: Path, source: Path) -> None:
    """The output may be new or an hpcfit stream file; never the source (or a link to it), a folder,
    or any other existing file."""
    if not (target.exists() or target.is_symlink()):
        return
    if source.exists() and os.path.samefile(target, source):
        raise InputError(f"`out` {target} is the source file {source} (or a link to it): converting would replace "
                         "the beamline data; choose another output path")
    if target.is_dir() or not target.is_file():
        raise InputError(f"`out` {target} exists and is not a regular file; choose another output path")
    if not is_stream_file(target):
        raise InputError(f"`out` {target} exists and is not an hpcfit stream file; prepare_stream writes only to new "
                         "paths or over its own stream files, so it will not touch it: choose another output path")
