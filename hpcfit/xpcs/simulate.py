"""Synthetic XPCS two-time data sets: the model of :mod:`hpcfit.models.xpcs` plus Gaussian noise, written in the
APS-U, old or stream layout, serially or under MPI.

Noise. Map m (0-based; ring m // n_phi, angle m % n_phi) draws one (n_t, n_t) matrix Z of standard normals,
row-major, from ``numpy.random.default_rng([seed, m])``, and its map is ``c2 = model + (noise / √2)·(Z + Zᵀ)``: exactly symmetric,
as a measured c2 is, and each off-diagonal value has standard deviation ``noise``. (The diagonal gets 2·noise²
variance; it is not data: loaders replace it by the mean of its neighbours and stream files leave it out.)
A map's values depend on (seed, m) alone, so a file is the same bit for bit whatever the number of ranks.

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
    q: np.ndarray           # the rings, (n_q,)
    L: float
    params: np.ndarray
    contrast: np.ndarray    # per map (n_q * n_phi,), ring-major
    offset: np.ndarray
    noise: np.ndarray       # per ring (n_q,)
    seed: int
    triangle: str
    noise_growth: float = 0.0   # σ at lag τ = noise·(1 + noise_growth·τ/(n_t − 1))

    @property
    def n_maps(self) -> int:
        return self.q.size * self.phi.size


@dataclass(frozen=True)
class SimulationSummary:
    """What :func:`simulate` wrote. ``n_points``: off-diagonal points a fit of the file uses, n_q x n_phi x
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
    n_q: int = 1

    def brief(self) -> str:
        rings = f"{self.n_q} q ring(s) x " if self.n_q > 1 else ""
        return (f"simulated XPCS two-time data: {rings}{self.n_phi} angle(s) x {self.n_t}^2 frames, {self.n_points:,} "
                f"points, layout {self.layout} -> {self.path} ({self.seconds:.2f} s on {self.n_ranks} rank(s))")


def simulate(out, *, layout: str = APS_U, n_phi: int, n_t: int, mode: str = "laminar_flow", dt: float, q: float,
             L: float, params, contrast, offset, noise: float, seed: int, phi=None, form: str = "homodyne",
             triangle: str = "upper", noise_growth: float = 0.0, comm=None) -> SimulationSummary:
    """Write a synthetic two-time data set, ``two_time_c2(params, ...)`` plus Gaussian noise, to ``out``.

    ``layout``: "aps-u" or "old" (read back with :func:`hpcfit.xpcs.load.load` or fitted with
    :func:`hpcfit.xpcs.beamline`) or "stream" (one q ring: the points of ``triangle``, "upper" or "both", as
    :func:`hpcfit.xpcs.stream.convert_to_stream` writes them). ``q``: one ring, or a list of rings (every ring
    gets the same n_phi angles; map m = ring·n_phi + angle). ``phi``: n_phi angles in degrees, default evenly
    spaced in [0, 360); ``contrast``, ``offset``: a scalar, one value per angle (every ring alike) or one per
    map; ``noise``: standard deviation (absolute, >= 0) of each off-diagonal value, a scalar or one per ring;
    ``noise_growth`` (>= 0, default 0) makes it grow with the lag τ = |t2 − t1|: σ(τ) = noise·(1 +
    noise_growth·τ/(n_t − 1)), as measured c2 noise does;
    ``seed``: integer >= 0, see the module's docstring for how the noise is drawn (map m uses the stream
    (seed, m), so ring 0 is what a one-ring file holds). The other arguments are those of
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
                     triangle=triangle, noise_growth=noise_growth)
        truth = _truth(s)
        rates = hc.agree(rate_integrals, s.params, s.n_t, s.dt, s.mode)
        writer = hc.agree(lambda: _open_writer(s, truth) if hc.is_root else None)
        with writer if writer is not None else nullcontext():
            write_rounds(hc, s.n_maps, s.n_t, lambda a, buf: _angle_map(s, rates, a, buf),
                         None if writer is None else (lambda m, buf: _put(writer, s.phi.size, m, buf)),
                         None if writer is None else writer.close, label=f"simulate {s.out}")
        n_ranks = hc.size
    tri = s.triangle if s.layout == STREAM else "upper"
    return SimulationSummary(s.out, s.layout, s.phi.size, s.n_t, s.n_maps * n_pairs(s.n_t, tri), truth, n_ranks,
                             time.perf_counter() - start, s.q.size)


def is_simulated_file(path) -> bool:
    """Whether ``path`` is a complete file :func:`simulate` wrote (any layout)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return SIMULATION_ATTR in f.attrs
    except OSError:
        return False


def _put(writer, n_phi: int, m: int, c2_map: np.ndarray) -> None:
    if isinstance(writer, StreamWriter):
        writer.write(m, c2_map)
    else:
        writer.write(*divmod(m, n_phi), c2_map)


def _open_writer(s: _Setup, truth: dict):
    parent = os.path.dirname(s.out)
    if not os.path.isdir(parent):
        raise InputError(f"`out`: the directory {parent} does not exist")
    attrs = {SIMULATION_ATTR: json.dumps(truth)}
    if s.layout == STREAM:
        return open_stream_writer(s.out, phi=s.phi, n_t=s.n_t, dt=s.dt, q=float(s.q[0]), triangle=s.triangle,
                                  layout=STREAM_LAYOUT_NAME, attrs=attrs)
    opener = open_aps_u_writer if s.layout == APS_U else open_old_writer
    return opener(s.out, s.q, s.phi, s.n_t, attrs=attrs)


# ---------------------------------------------------------------- one angle (local)

def _angle_map(s: _Setup, rates, m: int, out: np.ndarray) -> np.ndarray:
    """Map ``m``'s values (ring m // n_phi, angle m % n_phi), model plus noise, into ``out`` (n_t, n_t). The
    model is evaluated in row blocks of about BLOCK_POINTS points; element by element the same arithmetic
    as ``two_time_c2``, so the same bits."""
    n = s.n_t
    ring, a = divmod(m, s.phi.size)
    rows = max(1, BLOCK_POINTS // n)
    s_d, s_g = rates
    cols = np.arange(n)[None, :]
    for r0 in range(0, n, rows):
        r1 = min(r0 + rows, n)
        out[r0:r1] = np.asarray(c2_at_pairs(s.params, s_d, s_g, np.arange(r0, r1)[:, None], cols, s.phi[a],
                                            s.contrast[m], s.offset[m], q=float(s.q[ring]), L=s.L, dt=s.dt,
                                            mode=s.mode, form=s.form))
    if not np.isfinite(out).all():
        raise InputError(f"the model is not finite at angle {a} (phi = {s.phi[a]:g} degrees, q = {s.q[ring]:g}); "
                         "check `params`")
    if s.noise[ring] > 0:
        z = np.random.default_rng([s.seed, m]).standard_normal((n, n))
        scale = float(s.noise[ring]) / math.sqrt(2.0)
        if s.noise_growth > 0:                 # σ(τ): z + zᵀ times a symmetric factor of the lag
            lag = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
            z = z * (1.0 + s.noise_growth * lag / (n - 1))
        for r0 in range(0, n, rows):
            r1 = min(r0 + rows, n)
            out[r0:r1] += scale * (z[r0:r1] + z[:, r0:r1].T)
    return out


# ---------------------------------------------------------------- arguments

def _check_inputs(out, *, layout, n_phi, n_t, mode, dt, q, L, params, contrast, offset, noise, seed, phi, form,
                  triangle, noise_growth=0.0) -> _Setup:
    layout = choice("layout", layout, LAYOUTS)
    n_phi, n_t = integer("n_phi", n_phi, 1), integer("n_t", n_t, 2)
    mode, form = choice("mode", mode, tuple(MODES)), choice("form", form, FORMS)
    triangle = choice("triangle", triangle, TRIANGLES)
    if layout != STREAM and triangle != "upper":
        raise InputError(f"`triangle` applies to layout='stream' only (the {layout} layout stores the upper "
                         f"triangle of every map); got triangle={triangle!r}")
    dt, L = number("dt", dt), number("L", L)
    rings = np.atleast_1d(np.asarray(q, dtype=object))
    if rings.ndim != 1 or rings.size == 0:
        raise InputError(f"`q` must be a number or a non-empty list of q rings; got {q!r}")
    q = np.array([number("q", v) for v in rings.tolist()])
    if layout == STREAM and q.size > 1:
        raise InputError(f"`q`: a stream file holds one q ring; got {q.size} rings (use layout 'aps-u' or 'old')")
    names = PHYSICAL_NAMES[:MODES[mode]]
    p = per_item("params", params, len(names), f"parameter of mode {mode!r} ({', '.join(names)})",
                 broadcast=False)
    if phi is None:
        angles = np.arange(n_phi) * (360.0 / n_phi)
    else:
        angles = per_item("phi", phi, n_phi, "angle (degrees)", broadcast=n_phi == 1)
    contrast, offset = (_per_map(name, v, q.size, n_phi) for name, v in (("contrast", contrast), ("offset", offset)))
    noise = np.array([number("noise", v, allow_zero=True) for v in _per_ring(noise, q.size)])
    seed = integer("seed", seed, 0)
    try:
        path = os.path.abspath(os.fspath(out))
    except TypeError:
        raise InputError(f"`out` must be a file path; got {out!r}") from None
    growth = number("noise_growth", noise_growth, allow_zero=True)
    return _Setup(path, layout, angles, n_t, mode, form, dt, q, L, p, contrast, offset, noise, seed, triangle, growth)


def _per_ring(noise, n_q: int) -> list:
    values = np.atleast_1d(np.asarray(noise, dtype=object)).tolist()
    if np.ndim(noise) == 0:
        return values * n_q
    if len(values) != n_q:
        raise InputError(f"`noise` must be a number or one number per q ring ({n_q}); got {noise!r}")
    return values


def _per_map(name: str, value, n_q: int, n_phi: int) -> np.ndarray:
    """A scalar, one value per angle (every ring alike) or one per map (ring-major), per map."""
    if np.ndim(value) == 1 and n_q > 1 and len(value) == n_q * n_phi:
        return per_item(name, value, n_q * n_phi, "map", broadcast=False)
    return np.tile(per_item(name, value, n_phi), n_q)












def _truth(s: _Setup) -> dict:
    names = PHYSICAL_NAMES[:MODES[s.mode]]
    truth = {"model": "hpcfit.models.xpcs.two_time_c2", "mode": s.mode, "form": s.form,
             "params": dict(zip(names, s.params.tolist())), "contrast": s.contrast.tolist(),
             "offset": s.offset.tolist(), "phi": s.phi.tolist(), "n_t": s.n_t, "dt": s.dt,
             "q": float(s.q[0]) if s.q.size == 1 else s.q.tolist(), "L": s.L,
             "noise": float(s.noise[0]) if s.q.size == 1 else s.noise.tolist(), "seed": s.seed}
    if s.noise_growth:
        truth["noise_growth"] = s.noise_growth
    if s.layout == STREAM:
        truth["triangle"] = s.triangle
    return truth
