"""Fitting two-time correlation maps with the transport-coefficient models.

``fit(data, ...)`` takes either a :class:`~hpcfit.xpcs.load.TwoTimeData` (in memory: every rank
passes the same data) or the path of a stream file written by ``convert_to_stream`` /
``simulate`` (streamed: each rank reads only its chunks). Points are the frame pairs t1 < t2
of every angle (``triangle="upper"``, each independent pair once) or every off-diagonal pair
(``"both"``, for comparison with tools that count each pair twice: it doubles n and the
information, so every uncertainty comes out √2 too small). Coordinates are implicit.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np

from ..api import fit as _fit
from ..comm import Communicator
from ..data import ArraySource, HDF5Source
from ..data.weighted import WeightedSource
from ..kernels.coords import PairGrid
from ..errors import InputError
from ..models.xpcs import TwoTimeModel
from ..result import FitResult
from ..validate import number
from .defaults import DEFAULT_BOUNDS as DEFAULT_BOUNDS
from .defaults import DEFAULT_P0 as DEFAULT_P0
from ..pairs import n_pairs, pair_frames, pair_position
from .load import require_finite_pairs


@dataclass(frozen=True)
class FitPoints:
    """Where the fit's points come from, and how to read a sample of them for start values."""

    source: object
    phi: np.ndarray
    n_t: int
    dt: float
    q: float | tuple        # one ring, or the q of every map (several rings)
    sample: object          # (angle, t1, t2) index arrays → values
    selection: tuple | None = None   # the beamline files' selections (one per file), when streamed directly
    labels: tuple | None = None   # names of the maps for per-map parameters (a series of files)
    file_of_map: tuple | None = None   # each map's file (0, 1, …) in a series of files


def _beamline_points(data, triangle: str) -> FitPoints:
    """Points streamed straight from the beamline file's maps (no conversion)."""
    from .beamline import BeamlineSource
    from .load import select

    if triangle != "upper":
        raise InputError(f"a beamline file is fitted directly with triangle='upper' (each independent pair once); "
                         f"for triangle={triangle!r} convert it first with hpcfit.xpcs.prepare_stream")
    paths = data.path if isinstance(data.path, tuple) else (data.path,)
    parts = tuple(select(p, q=data.q, phi_ranges=data.phi_ranges, frames=data.frames) for p in paths)
    source = BeamlineSource(parts if len(parts) > 1 else parts[0])   # read for the start values on rank 0
    source.check_arguments()
    labels = files = None
    if len(parts) > 1:
        labels = tuple(f"file{k + 1}_q{q:.6g}_phi{phi:g}" for k, part in enumerate(parts)
                       for q, phi in zip(part.q_maps, part.phi))
        files = tuple(int(k) for k in source.part_of)
    return FitPoints(source, source.phi, source.n_t, data.dt, source.q, source.pairs, parts, labels, files)


def fit_points(data, triangle: str) -> FitPoints:
    """The points a fit of ``data`` (as :func:`fit` takes it) uses with ``triangle``: their source,
    the angles, frames, dt and q, and a reader of samples for the start values."""
    from .beamline import BeamlineData

    if isinstance(data, BeamlineData):
        return _beamline_points(data, triangle)
    if isinstance(data, (str, os.PathLike)):
        from .stream import read_stream_meta

        meta = read_stream_meta(data)
        if meta.triangle != triangle:
            raise InputError(f"stream file {os.fspath(data)!r} holds triangle={meta.triangle!r} points; "
                             f"fit was asked for triangle={triangle!r}")
        grid = PairGrid(len(meta.phi), int(meta.n_t), triangle)
        per_angle = grid.n_points // len(meta.phi)

        def sample(a, t1, t2):
            import h5py

            idx = a * per_angle + pair_position(t1, t2, meta.n_t, triangle)
            unique, back = np.unique(idx, return_inverse=True)      # h5py reads increasing indices
            with h5py.File(data, "r") as f:
                return f["y"][unique].astype(np.float64)[back]

        return FitPoints(HDF5Source(data, y="y", grid=grid), np.asarray(meta.phi), int(meta.n_t), float(meta.dt),
                       float(meta.q), sample)
    if not all(hasattr(data, k) for k in ("c2", "phi", "dt", "q")):
        raise InputError(f"`data` must be a TwoTimeData (hpcfit.xpcs.load), hpcfit.xpcs.beamline(path, q=...) or "
                         f"the path of a stream file; got {type(data).__name__}")
    c2 = np.asarray(data.c2)
    n_phi, n_t = c2.shape[0], c2.shape[1]
    t1, t2 = pair_frames(n_t, triangle)
    y = c2[:, t1, t2]
    require_finite_pairs(y, t1, t2, path=getattr(data, "path", "`data`"), maps=getattr(data, "maps", ()),
                         phi=np.asarray(data.phi), q=float(data.q), first_frame=int(getattr(data, "frames", (1,))[0]))
    y = y.reshape(-1)
    return FitPoints(ArraySource(None, y, grid=PairGrid(n_phi, n_t, triangle)), np.asarray(data.phi), n_t,
                   float(data.dt), float(data.q), lambda a, i, j: c2[a, i, j])


def _sample_lags(points: FitPoints, lags) -> np.ndarray:
    """c2 at pairs (t1, t1 + lag) of every angle, for ≤ ~200 evenly spaced rows t1 per lag, as an
    (n_phi, m) array; one read for all angles."""
    n_t, n_phi = points.n_t, len(points.phi)
    rows = np.unique(np.linspace(0, n_t - 2, min(n_t - 1, 200)).astype(int))
    t1 = np.concatenate([rows[rows + lag < n_t] for lag in lags])
    t2 = np.concatenate([rows[rows + lag < n_t] + lag for lag in lags])
    values = points.sample(np.repeat(np.arange(n_phi), t1.size), np.tile(t1, n_phi), np.tile(t2, n_phi))
    return values.reshape(n_phi, t1.size)


def initial_scaling(points: FitPoints, scaling: str) -> tuple[np.ndarray, np.ndarray]:
    """Data-driven start values of contrast and offset per angle.

    offset ≈ the median of the longest-lag values (the top 10 % of lags, where g1 has decayed);
    contrast ≈ the 90 % quantile of the lag-1…3 values minus that offset. Only a few hundred
    values per angle are read (two reads in all), so a streamed file is touched sparsely.
    """
    n_t = points.n_t
    long_lags = np.unique(np.linspace(max(1, int(0.9 * (n_t - 1))), n_t - 1, 5).astype(int))
    offset = np.median(_sample_lags(points, long_lags), axis=1)
    short = np.quantile(_sample_lags(points, [lag for lag in (1, 2, 3) if lag < n_t]), 0.9, axis=1)
    contrast = np.clip(short - offset, 1e-3, 1.0)
    if scaling == "shared":
        return np.array([contrast.mean()]), np.array([offset.mean()])
    return contrast, offset


def _bounds(bounds, model):
    """Bounds for every parameter: the defaults, or the user's for the physical ones (each given once,
    also for a parameter fitted per file; then the defaults for contrast/offset) or for all of them."""
    names, physical = model.parameter_names, model.physical_names
    n_phys = len(physical)
    if bounds is None:
        bounds = ([], [])
    try:
        lower, upper = (list(np.atleast_1d(np.asarray(b, dtype=float))) for b in bounds)
    except (TypeError, ValueError):
        raise InputError(f"`bounds` must be (lower, upper), each with {n_phys} (physical) or {len(names)} "
                         f"values; got {bounds!r}") from None
    if len(lower) != len(upper) or len(lower) not in (0, n_phys, len(names)):
        raise InputError(f"`bounds` must be (lower, upper), each with {n_phys} (physical: "
                         f"{', '.join(physical)}) or {len(names)} values; got {len(lower)} and {len(upper)}")
    if len(lower) == len(names):
        return np.array(lower), np.array(upper)
    if not lower:
        lower, upper = [DEFAULT_BOUNDS[n][0] for n in physical], [DEFAULT_BOUNDS[n][1] for n in physical]
    n_scale = len(names) - len(model.fitted_physical_names)
    rest = [DEFAULT_BOUNDS[n.split("_")[0]] for n in names[len(names) - n_scale:]]     # contrast, offset
    return (np.concatenate([model.expand_physical(lower), [b[0] for b in rest]]),
            np.concatenate([model.expand_physical(upper), [b[1] for b in rest]]))


def _setup(data, mode, scaling, p0, bounds, L, contrast, offset, triangle, form, per_file=()):
    """Everything local: arguments, the points' source and metadata, the model (no data read)."""
    if triangle not in ("upper", "both"):
        raise InputError(f"`triangle` must be 'upper' or 'both'; got {triangle!r}")
    if mode == "laminar_flow" and L is None:
        raise InputError("`L` (the sample-to-shear length scale, Å) is required for mode='laminar_flow'")
    points = fit_points(data, triangle)
    per_file = (per_file,) if isinstance(per_file, str) else tuple(per_file or ())
    if per_file and points.file_of_map is None:
        raise InputError(f"`per_file` ({', '.join(per_file)}) fits physical parameters once per file of a series: `data` "
                         "must be hpcfit.xpcs.beamline([path1, path2, ...]) (in a config, [data] file = [..])")
    model = TwoTimeModel(tuple(points.phi), points.n_t, points.dt, points.q, 1.0 if L is None else L, mode=mode,
                         scaling=scaling, form=form, contrast=contrast, offset=offset, labels=points.labels,
                         per_file=per_file or (), file_of_map=points.file_of_map)
    names, n_phys = model.parameter_names, len(model.physical_names)
    if p0 is not None and (np.ndim(p0) != 1 or len(p0) not in (n_phys, len(names))):
        raise InputError(f"`p0` must be a sequence of {n_phys} (physical: {', '.join(model.physical_names)}) or "
                         f"{len(names)} values; got {p0!r}")
    return points, model, _bounds(bounds, model)


def _start(points, model, p0, lower, upper) -> np.ndarray:
    """p0 for every parameter; contrast/offset from the data when not given, kept inside the box."""
    n_phys = len(model.fitted_physical_names)
    if p0 is not None and len(p0) == model.n_params:
        return np.asarray(p0, dtype=float)
    phys = model.expand_physical([DEFAULT_P0[k] for k in model.physical_names] if p0 is None else p0)
    scale = [] if model.scaling == "fixed" else list(np.concatenate(initial_scaling(points, model.scaling)))
    start = np.asarray(list(phys) + scale, dtype=float)
    start[n_phys:] = np.clip(start[n_phys:], lower[n_phys:], upper[n_phys:])
    return start


#: Phase 1's scan of the physical parameters around the start (``scan=True``): changes of one
#: parameter at a time, each polished by LM on the sample. Measured on the 23-angle laminar-flow
#: set of docs/benchmarks.md, where LM from the default start ends in a wrong basin (φ0 2.9°,
#: D_offset 800): φ0 + 30°, α − 0.5 and D0 × 10 each reach the true one; on the 7-angle hard start
#: of bench_hard_starts, φ0 + 60° and D0 × 10. In this order — each parameter's most useful change
#: first — because ``explore_budget`` may keep only the first few (phase 1, docs/algorithm.md).
SCAN = (("phi0", 30.0), ("alpha", -0.5), ("D0", 10.0), ("phi0", -30.0), ("phi0", 60.0), ("alpha", 0.5),
        ("D0", 0.1), ("phi0", -60.0), ("phi0", 90.0))


def scan_starts(model, start: np.ndarray) -> list[list[float]]:
    """Start vectors (every parameter) of :data:`SCAN` around ``start`` (φ0 and α shifted, D0 scaled;
    a parameter fitted per file changed alike in every file), for the parameters the model has, in
    :data:`SCAN`'s order."""
    names = model.fitted_physical_names
    rows = []
    for name, change in SCAN:
        if name not in model.physical_names:
            continue
        row = [float(v) for v in start]
        for i, fitted in enumerate(names):
            if fitted == name or fitted.startswith(f"{name}_file"):
                row[i] = row[i] * change if name == "D0" else row[i] + change
        rows.append(row)
    return rows


def _complete(rows, start: np.ndarray, model, name: str) -> tuple:
    """Start rows that give the physical parameters only (each once, also one fitted per file),
    completed with the data-driven contrast/offset as p0 is."""
    n_phys, n_fitted = len(model.physical_names), len(model.fitted_physical_names)
    out = []
    for row in rows:
        row = [float(v) for v in row]
        if len(row) not in (n_phys, model.n_params):
            raise InputError(f"`{name}`: each start must have {n_phys} (physical) or {model.n_params} values; "
                             f"got {len(row)}")
        if len(row) == n_phys:
            row = list(model.expand_physical(row)) + list(start[n_fitted:])
        out.append(tuple(row))
    return tuple(out)


def _complete_starts(options: dict, start: np.ndarray, model, scan: bool) -> dict:
    """Phase 1's further starts: the caller's ``explore_starts`` (always polished), or else the scan
    as ``explore_scan`` (polished when phase 1's evidence and budget allow; not with ``scan`` off or
    method="gn"); rows that give the physical parameters only are completed with the data-driven
    contrast/offset, as p0 is."""
    options = dict(options)
    for name in ("explore_starts", "explore_scan"):
        if options.get(name) is not None:
            options[name] = _complete(options[name], start, model, name)
    if (options.get("explore_starts") is None and options.get("explore_scan") is None and scan
            and options.get("method", "hybrid") != "gn" and options.get("preset") != "no_warmup"):
        options["explore_scan"] = _complete(scan_starts(model, start), start, model, "explore_scan")
    return options


def _noise(points: FitPoints, noise, triangle: str):
    """σ of every point (rank 0): estimated from the data, given, or None (every point alike)."""
    from .noise import estimate_noise, given_noise

    n_maps = len(points.phi)
    if noise == "auto":
        return estimate_noise(points.sample, n_maps, points.n_t)
    return given_noise(noise, n_maps, points.n_t)


def weighted_points(points: FitPoints, noise, triangle: str):
    """``points``' source with σ from ``noise`` (a PairNoise, its summary in a result, or None:
    the source as it is)."""
    from .noise import PairNoise

    if noise is None:
        return points.source
    if isinstance(noise, dict):
        noise = PairNoise.from_summary(noise, points.n_t)
    per_map = n_pairs(points.n_t, triangle)
    return WeightedSource(points.source, noise.sigma_of(per_map, points.n_t, triangle),
                          noise.inverse_sigma_over(per_map, points.n_t) if triangle == "upper" else None)


def check_noise(noise):
    """``noise`` as :func:`fit` takes it: "auto", a σ > 0, or None."""
    if noise is None or (isinstance(noise, str) and noise == "auto"):
        return noise
    if isinstance(noise, str):
        raise InputError(f"`noise` must be 'auto' (estimated from the data), a number (σ of every point) or None "
                         f"(every point weighted alike); got {noise!r}")
    return number("noise", noise)


def fit(data, *, mode: str = "laminar_flow", scaling: str = "individual", p0=None, bounds=None, L=None,
        contrast=None, offset=None, triangle: str = "upper", form: str = "homodyne", comm=None,
        scan: bool = True, noise="auto", per_file=(), **options) -> FitResult:
    """Fit a two-time dataset with the ``static`` or ``laminar_flow`` transport model.

    ``data``: a beamline file's selection, ``hpcfit.xpcs.beamline(path, q=…, dt=…)``, whose maps
    are streamed directly (each rank reads its own chunks; nothing is converted) — one q ring or
    several in one fit (the physical parameters shared, D's term going with q² and the shear term
    with q; contrast and offset per map, named by its q and φ); the path of a stream file
    (``prepare_stream``, ``simulate``); or a loaded :class:`TwoTimeData` (in memory).

    ``p0``/``bounds``: for the physical parameters only (contrast/offset start from the data,
    :func:`initial_scaling`, clipped into their bounds) or for all of them; ``None`` takes
    :data:`DEFAULT_P0` and :data:`DEFAULT_BOUNDS`. ``L`` (Å) is needed for ``laminar_flow``.
    ``contrast``/``offset`` are the given values for ``scaling="fixed"``. Collective with ``comm``:
    rank 0 reads the samples for the start values and shares them. ``scan`` (default on) adds
    :data:`SCAN`'s starts around p0 to phase 1's candidates (method="hybrid") as ``explore_scan``:
    each is polished by LM on the sample when LM from p0 is not a sound warm start, as many as
    ``explore_budget`` allows (all of them on large data), and the best candidate is fitted to all
    the data. ``explore_starts`` replaces the scan with starts that are always polished. The result carries parameter
    names, and ``result.info["xpcs"]`` records mode, scaling, form, triangle, q (per map with several
    rings), rings, dt, L, angles and the noise.

    ``noise``: σ of the points. ``"auto"`` (the default) estimates it from the data, per map and lag
    (:mod:`hpcfit.xpcs.noise`); a number is σ of every point; with either, σ is absolute
    (``absolute_sigma``) and the reduced χ² checks the noise model (≈ 1 when model and noise are
    right). ``None`` weighs every point alike and scales the covariance by the reduced χ², as
    ``curve_fit`` does without sigma.

    ``per_file``: with a series of files (``beamline([path1, path2, ...])``: repeats, temperatures of
    one sample), names of physical parameters fitted once per file (e.g. ``("D0", "D_offset")`` when
    diffusion changes with temperature), named ``D0_file1``, ``D0_file2``, …; the others are shared by
    all files. ``p0``/``bounds`` still give each physical parameter once: every file starts alike.
    """
    with Communicator(comm) as hc:
        noise = hc.agree(check_noise, noise)
        points, model, (lower, upper) = hc.agree(_setup, data, mode, scaling, p0, bounds, L, contrast, offset,
                                                 triangle, form, per_file)
        if hc.is_root and points.selection is not None:
            for part in points.selection:
                part.warn_about_q()
        start = hc.on_root(_start, points, model, p0, lower, upper)
        options = hc.agree(_complete_starts, options, start, model, scan)
        sigma = None if noise is None else hc.on_root(_noise, points, noise, triangle)
    source = weighted_points(points, sigma, triangle)
    result = _fit(model, source, start, bounds=(lower, upper), comm=comm, absolute_sigma=sigma is not None,
                  **options)
    result.info["xpcs"] = {"mode": mode, "scaling": scaling, "form": form, "triangle": triangle,
                           "q": list(points.q) if isinstance(points.q, tuple) else points.q,
                           "rings": sorted(set(model.q_maps)), "dt": points.dt, "L": L, "phi": points.phi.tolist(),
                           "n_t": points.n_t, "noise": None if sigma is None else sigma.summary()}
    if points.selection is not None and len(points.selection) > 1:
        result.info["xpcs"]["files"] = [part.path for part in points.selection]
        result.info["xpcs"]["file_of_map"] = points.source.part_of.tolist()
        result.info["xpcs"]["per_file"] = list(model.per_file)
    return _with_misfit_note(_with_mirror_note(result, model, points.phi, lower, upper), sigma)


#: A reduced χ² above this, with σ from the data, means the model does not describe the data within
#: their noise (for these fits the χ² of a right model and noise is 1 ± a few %: docs/benchmarks.md).
MISFIT_CHI2 = 1.5


def _with_misfit_note(result: FitResult, sigma) -> FitResult:
    """With σ estimated from the data, perr come from that σ alone: when the reduced χ² says the
    residuals are far larger than the noise, they understate the uncertainty. Say so."""
    if sigma is None or sigma.method != "estimated" or not result.reduced_chi2 > MISFIT_CHI2:
        return result
    note = (f"the residuals are {np.sqrt(result.reduced_chi2):.3g}x the noise estimated from the data (reduced chi2 "
            f"{result.reduced_chi2:.4g}, expected about 1): the model does not describe these data (or their noise "
            "is correlated along the diagonals), and perr, computed from that noise, are too small by about that "
            "factor; noise=None scales them by the reduced chi2 instead")
    return _flagged(result, note)


def _flagged(result: FitResult, issue: str) -> FitResult:
    """``result`` marked not trustworthy for ``issue`` (an XPCS-specific one, added to phase 3's)."""
    return replace(result, trustworthy=False, trust_issues=result.trust_issues + (issue,))


def mirror_axis(phi) -> float | None:
    """The axis a when the angles are all a or a + 90° modulo 180° (one or two such directions),
    else None. The model sees φ0 through cos²(φ0 − φ) only, so with such angles φ0 and 2a − φ0 give
    the same c2 for every map: the data cannot tell them apart."""
    folded = np.unique(np.round(np.mod(np.asarray(phi, dtype=float), 180.0), 6) % 180.0)
    if folded.size == 1:
        return float(folded[0])
    if folded.size == 2 and abs(folded[1] - folded[0] - 90.0) < 1e-6:
        return float(folded[0])
    return None


def _with_mirror_note(result: FitResult, model, phi, lower, upper) -> FitResult:
    """Flag φ0's mirror ambiguity (:func:`mirror_axis`), which no local test can see (φ0 shared by
    every map; not checked when fitted per file)."""
    if "phi0" not in model.parameter_names:
        return result
    i = model.parameter_names.index("phi0")
    axis = mirror_axis(phi)
    if axis is None or lower[i] == upper[i]:
        return result
    phi0 = float(result.popt[i])
    mirror = (2 * axis - phi0 + 180.0) % 360.0 - 180.0
    note = (f"phi0 is ambiguous: the angles are all {axis:g}° or {axis + 90:g}° modulo 180°, so phi0 = {phi0:.6g} "
            f"and its mirror {mirror:.6g} (and either ± 180°) fit the data equally well; fit angles in other "
            "directions too to tell them apart")
    return _flagged(result, note)
