"""Synthetic XPCS two-time data sets: the model of :mod:`hpcfit.models.xpcs` plus Gaussian noise, written in the
APS-U, old or stream layout, serially or under MPI.

Noise. Angle a (0-based) draws one (n_t, n_t) matrix Z of standard normals, row-major, from
``numpy.random.default_rng([seed, a])``, and its map is ``c2 = model + (noise / √2)·(Z + Zᵀ)``: exactly symmetric,
as a measured c2 is, and each off-diagonal value has standard deviation ``noise``. (The diagonal gets 2·noise²
variance; it is not data: loaders replace it by the mean of its neighbours and stream files leave it out.)
An angle's values depend on (seed, a) alone, so a file is the same bit for bit whatever the number of ranks.

Under MPI, angles are dealt round-robin (angle a on rank a % size). Each round every rank computes one map, one
agreement (a collective) makes an error found on any rank raise on every rank, then rank 0 writes its own map and
receives and writes the others in angle order (serial h5py). Each rank holds one map buffer (rank 0 receives into
its own) plus, while computing, one noise matrix and the row blocks of the model's temporaries.
"""
from __future__ import annotations

import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..comm import Communicator
from ..errors import InputError
from ..validate import choice, integer, number, per_item
from ..models.xpcs import FORMS, MODES, PHYSICAL_NAMES, c2_at_pairs, rate_integrals
from .layouts import open_aps_u_writer, open_old_writer
from .load import APS_U, OLD
from .rounds import write_rounds
from ..pairs import TRIANGLES, n_pairs
from .stream import StreamWriter, open_stream_writer

STREAM = "stream"
LAYOUTS = (APS_U, OLD, STREAM)
STREAM_LAYOUT_NAME = "simulated"        # the stream file's `layout` attribute: it has no source file
SIMULATION_ATTR = "hpcfit_simulation"   # root attribute of every layout: JSON of what the data was made from
# Points per row block of a map: the model's JAX temporaries (~15 arrays) stay a few MB whatever n_t.
BLOCK_POINTS = 1 << 18


class _Setup(NamedTuple):
    out: str
    layout: str
    phi: np.ndarray
    n_t: int
    mode: str
    form: str
    dt: float
    q: float
    L: float
    params: np.ndarray
    contrast: np.ndarray
    offset: np.ndarray
    noise: float
    seed: int
    triangle: str


@dataclass(frozen=True)
class SimulationSummary:
    """What :func:`simulate` wrote. ``n_points``: off-diagonal points a fit of the file uses, n_phi x
    n_pairs(n_t, triangle) (the upper triangle for the APS-U and old layouts); ``truth``: the model, its
    parameters and the noise (also stored as the file's ``hpcfit_simulation`` attribute, JSON)."""

    path: str
    layout: str
    n_phi: int
    n_t: int
    n_points: int
    truth: dict
    n_ranks: int
    seconds: float

    def brief(self) -> str:
        return (f"simulated XPCS two-time data: {self.n_phi} angle(s) x {self.n_t}^2 frames, {self.n_points:,} "
                f"points, layout {self.layout} -> {self.path} ({self.seconds:.2f} s on {self.n_ranks} rank(s))")


def simulate(out, *, layout: str = APS_U, n_phi: int, n_t: int, mode: str = "laminar_flow", dt: float, q: float,
             L: float, params, contrast, offset, noise: float, seed: int, phi=None, form: str = "homodyne",
             triangle: str = "upper", comm=None) -> SimulationSummary:
    """Write a synthetic two-time data set, ``two_time_c2(params, ...)`` plus Gaussian noise, to ``out``.

    ``layout``: "aps-u" or "old" (one q ring, read back with :func:`hpcfit.xpcs.load.load`) or "stream" (the
    points of ``triangle``, "upper" or "both", as :func:`hpcfit.xpcs.stream.convert_to_stream` writes them).
    ``phi``: n_phi angles in degrees, default evenly spaced in [0, 360); ``contrast``, ``offset``: a scalar or one
    value per angle; ``noise``: standard deviation (absolute, >= 0) of each off-diagonal value; ``seed``: integer
    >= 0, see the module's docstring for how the noise is drawn. The other arguments are those of
    :func:`hpcfit.models.xpcs.two_time_c2`.

    ``comm``: an mpi4py communicator; then collective (every rank passes the same arguments, rank 0 writes the
    file, every rank returns once it is complete). A bad argument or a failure on any rank raises the same
    hpcfit error on every rank, and no file is left at ``out`` (an existing one is replaced only on success
    for the stream layout, removed on failure for the others).
    """
    start = time.perf_counter()
    with Communicator(comm) as hc:
        s = hc.agree(_check_inputs, out, layout=layout, n_phi=n_phi, n_t=n_t, mode=mode, dt=dt, q=q, L=L,
                     params=params, contrast=contrast, offset=offset, noise=noise, seed=seed, phi=phi, form=form,
                     triangle=triangle)
        truth = _truth(s)
        rates = hc.agree(rate_integrals, s.params, s.n_t, s.dt, s.mode)
        writer = hc.agree(lambda: _open_writer(s, truth) if hc.is_root else None)
        with writer if writer is not None else nullcontext():
            write_rounds(hc, s.phi.size, s.n_t, lambda a, buf: _angle_map(s, rates, a, buf),
                         None if writer is None else (lambda a, buf: _put(writer, a, buf)),
                         None if writer is None else writer.close, label=f"simulate {s.out}")
        n_ranks = hc.size
    tri = s.triangle if s.layout == STREAM else "upper"
    return SimulationSummary(s.out, s.layout, s.phi.size, s.n_t, s.phi.size * n_pairs(s.n_t, tri), truth, n_ranks,
                             time.perf_counter() - start)


def _put(writer, a: int, c2_map: np.ndarray) -> None:
    if isinstance(writer, StreamWriter):
        writer.write(a, c2_map)
    else:
        writer.write(0, a, c2_map)


def _open_writer(s: _Setup, truth: dict):
    parent = os.path.dirname(s.out)
    if not os.path.isdir(parent):
        raise InputError(f"`out`: the directory {parent} does not exist")
    attrs = {SIMULATION_ATTR: json.dumps(truth)}
    if s.layout == STREAM:
        return open_stream_writer(s.out, phi=s.phi, n_t=s.n_t, dt=s.dt, q=s.q, triangle=s.triangle,
                                  layout=STREAM_LAYOUT_NAME, attrs=attrs)
    opener = open_aps_u_writer if s.layout == APS_U else open_old_writer
    return opener(s.out, [s.q], s.phi, s.n_t, attrs=attrs)


# ---------------------------------------------------------------- one angle (local)

def _angle_map(s: _Setup, rates, a: int, out: np.ndarray) -> np.ndarray:
    """Angle ``a``'s map, model plus noise, into ``out`` (n_t, n_t). The model is evaluated in row blocks of
    about BLOCK_POINTS points; element by element the same arithmetic as ``two_time_c2``, so the same bits."""
    n = s.n_t
    rows = max(1, BLOCK_POINTS // n)
    s_d, s_g = rates
    cols = np.arange(n)[None, :]
    for r0 in range(0, n, rows):
        r1 = min(r0 + rows, n)
        out[r0:r1] = np.asarray(c2_at_pairs(s.params, s_d, s_g, np.arange(r0, r1)[:, None], cols, s.phi[a],
                                            s.contrast[a], s.offset[a], q=s.q, L=s.L, dt=s.dt, mode=s.mode,
                                            form=s.form))
    if not np.isfinite(out).all():
        raise InputError(f"the model is not finite at angle {a} (phi = {s.phi[a]:g} degrees); check `params`")
    if s.noise > 0:
        z = np.random.default_rng([s.seed, a]).standard_normal((n, n))
        scale = s.noise / math.sqrt(2.0)
        for r0 in range(0, n, rows):
            r1 = min(r0 + rows, n)
            out[r0:r1] += scale * (z[r0:r1] + z[:, r0:r1].T)
    return out


# ---------------------------------------------------------------- arguments

def _check_inputs(out, *, layout, n_phi, n_t, mode, dt, q, L, params, contrast, offset, noise, seed, phi, form,
                  triangle) -> _Setup:
    layout = choice("layout", layout, LAYOUTS)
    n_phi, n_t = integer("n_phi", n_phi, 1), integer("n_t", n_t, 2)
    mode, form = choice("mode", mode, tuple(MODES)), choice("form", form, FORMS)
    triangle = choice("triangle", triangle, TRIANGLES)
    if layout != STREAM and triangle != "upper":
        raise InputError(f"`triangle` applies to layout='stream' only (the {layout} layout stores the upper "
                         f"triangle of every map); got triangle={triangle!r}")
    dt, q, L = number("dt", dt), number("q", q), number("L", L)
    names = PHYSICAL_NAMES[:MODES[mode]]
    p = per_item("params", params, len(names), f"parameter of mode {mode!r} ({', '.join(names)})",
                 broadcast=False)
    if phi is None:
        angles = np.arange(n_phi) * (360.0 / n_phi)
    else:
        angles = per_item("phi", phi, n_phi, "angle (degrees)", broadcast=n_phi == 1)
    contrast, offset = per_item("contrast", contrast, n_phi), per_item("offset", offset, n_phi)
    noise = number("noise", noise, allow_zero=True)
    seed = integer("seed", seed, 0)
    try:
        path = os.path.abspath(os.fspath(out))
    except TypeError:
        raise InputError(f"`out` must be a file path; got {out!r}") from None
    return _Setup(path, layout, angles, n_t, mode, form, dt, q, L, p, contrast, offset, noise, seed, triangle)












def _truth(s: _Setup) -> dict:
    names = PHYSICAL_NAMES[:MODES[s.mode]]
    truth = {"model": "hpcfit.models.xpcs.two_time_c2", "mode": s.mode, "form": s.form,
             "params": dict(zip(names, s.params.tolist())), "contrast": s.contrast.tolist(),
             "offset": s.offset.tolist(), "phi": s.phi.tolist(), "n_t": s.n_t, "dt": s.dt, "q": s.q, "L": s.L,
             "noise": s.noise, "seed": s.seed}
    if s.layout == STREAM:
        truth["triangle"] = s.triangle
    return truth
