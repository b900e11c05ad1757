"""Plots of a fit (PNG, matplotlib's Agg backend), written by rank 0 into the result directory:

* ``convergence.png``: cost, |g| and λ against the iteration of phase 2, phase 1 shaded before it;
* ``correlation.png``: the parameter correlation matrix pcov_ij / (perr_i perr_j);
* ``fit.png`` (curve fits): data, model and normalized residuals against x, binned into
  :data:`BINS` bins when there are more than :data:`MAX_POINTS` points (memory bounded by a block);
  for x of several coordinates (shape (d, n)), data and model against the point index and the
  residuals against the point index and against each coordinate;
* ``xpcs_angles.png`` (XPCS): per angle, c2 data / fit / residual heatmaps (pairs strided so that
  no map is drawn larger than :data:`MAX_SIDE` per side) and g2 cuts at the shortest lags.
  A fit of several q rings writes ``xpcs_ring01.png``, ``xpcs_ring02.png``, ... instead: one per ring,
  its angles as rows, each titled with its q and φ.

matplotlib is an optional extra (``pip install 'hpcfit[plot]'``): without it :func:`write_plots`
returns a one-line note instead. A plot never fails a fit: an error while drawing one becomes a
one-line warning note (the other plots are still written).
"""
from __future__ import annotations

import os

import numpy as np

BINS = 400
MAX_POINTS = 5000
MAX_SIDE = 300
BLOCK = 1 << 20
MAX_COORDINATES = 6          # residual panels against x's coordinates (x of shape (d, n))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def write_plots(result, outdir: str, curve=None, xpcs=None, x_names=None) -> tuple[list[str], str | None]:
    """Write the plots that apply; (files written, a note when matplotlib is missing or, starting
    with "warning:", when a plot could not be drawn). ``curve``: a callable ``blocks()`` yielding
    (x, y, sigma or None) blocks of the data; ``xpcs``: the path of the stream file that was fitted
    (or the beamline selection); ``x_names``: the names of x's coordinates, for the axes."""
    try:
        plt = _pyplot()
    except ImportError:
        return [], "plots skipped: matplotlib is not installed (pip install 'hpcfit[plot]')"
    except Exception as exc:  # noqa: BLE001 - a broken matplotlib must not fail the fit
        return [], f"warning: plots not made: matplotlib cannot be used ({type(exc).__name__}: {exc})"
    jobs = [("convergence.png", lambda path: convergence(plt, result, path)),
            ("correlation.png", lambda path: correlation(plt, result, path))]
    if curve is not None:
        jobs.append(("fit.png", lambda path: curve_fit_plot(plt, result, curve, path, x_names)))
    if xpcs is not None:
        rings = result.info.get("xpcs", {}).get("rings", [])
        if len(rings) > 1:              # several q rings: one figure per ring, its angles as rows
            q_maps = np.asarray(result.info["xpcs"]["q"])
            for k, ring in enumerate(rings):
                maps = np.flatnonzero(q_maps == ring)
                jobs.append((f"xpcs_ring{k + 1:02d}.png",
                             lambda path, maps=maps: xpcs_angles(plt, result, xpcs, path, maps)))
        else:
            jobs.append(("xpcs_angles.png", lambda path: xpcs_angles(plt, result, xpcs, path)))
    written, failed = [], []
    for name, draw in jobs:
        try:
            written.append(draw(os.path.join(outdir, name)))
        except Exception as exc:  # noqa: BLE001 - any plotting error: one line, the fit stands
            plt.close("all")
            failed.append(f"{name} ({type(exc).__name__}: {' '.join(str(exc).split())})")
    if failed:
        return written, f"warning: plot(s) not made: {'; '.join(failed)}"
    return written, None


def convergence(plt, result, path: str) -> str:
    it = np.array([r.iteration for r in result.history])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = {"cost": [r.cost for r in result.history], "|g| (normalized)": [r.gradient_norm for r in result.history],
              "λ": [r.damping for r in result.history]}
    for label, values in series.items():
        v = np.asarray(values, dtype=float)
        ok = np.isfinite(v) & (v > 0)
        ax.semilogy(it[ok], v[ok], marker="o", ms=3, label=label)
    explore = result.explore
    if explore is not None and explore.ran:
        ax.axvspan(-1.0, 0.0, color="0.85", zorder=0)
        ax.text(-0.5, 0.02, f"phase 1\n{len(explore.candidates)} cand.\n{explore.seconds:.1f} s",
                transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=7)
    ax.set_xlabel("iteration (phase 2)")
    ax.set_title(f"convergence: {result.status.name}, {result.n_iterations} iterations")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def correlation(plt, result, path: str) -> str:
    names = result.names or [f"p[{i}]" for i in range(result.n_params)]
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = result.pcov / np.outer(result.perr, result.perr)
    p = len(names)
    size = min(12.0, 3.0 + 0.35 * p)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(corr, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(p), names, rotation=90, fontsize=7 if p > 12 else 9)
    ax.set_yticks(range(p), names, fontsize=7 if p > 12 else 9)
    if p <= 12:
        for i in range(p):
            for j in range(p):
                ax.text(j, i, f"{corr[i, j]:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, label="correlation")
    ax.set_title("parameter correlations")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _axes_of(x: np.ndarray, start: int) -> list[np.ndarray]:
    """What a block is plotted against: x itself (1-D x), or each coordinate x[k] of x (d, n) and
    the point index."""
    if x.ndim == 1:
        return [x]
    return [*x.reshape(-1, x.shape[-1]), np.arange(start, start + x.shape[-1], dtype=float)]


def _binned_axes(result, blocks):
    """For each axis of :func:`_axes_of`: per-bin means of the axis, y, the model and the
    normalized residual over all blocks (two passes: the ranges, then the sums), or the points
    themselves when there are few; with the number of points and whether they were binned."""
    lo = hi = None
    n = 0
    for x, y, _ in blocks():
        axes = _axes_of(np.asarray(x), n)
        lows, highs = np.array([np.min(a) for a in axes]), np.array([np.max(a) for a in axes])
        lo, hi = (lows, highs) if lo is None else (np.minimum(lo, lows), np.maximum(hi, highs))
        n += y.size
    if n <= MAX_POINTS:
        x, y, s = (np.concatenate(a, axis=-1) if a[0] is not None else None for a in zip(*blocks()))
        f = np.asarray(result.predict(x))
        r = (y - f) / (s if s is not None else 1.0)
        return [(a, y, f, r) for a in _axes_of(x, 0)], n, False
    edges = [np.linspace(a, b, BINS + 1) for a, b in zip(lo, hi)]
    sums = np.zeros((len(edges), 4, BINS))
    counts = np.zeros((len(edges), BINS))
    start = 0
    for x, y, s in blocks():
        x = np.asarray(x)
        f = np.asarray(result.predict(x))
        r = (y - f) / (s if s is not None else 1.0)
        for j, a in enumerate(_axes_of(x, start)):
            k = np.clip(np.searchsorted(edges[j], a, side="right") - 1, 0, BINS - 1)
            counts[j] += np.bincount(k, minlength=BINS)
            for row, v in enumerate((a, y, f, r)):
                sums[j, row] += np.bincount(k, weights=v, minlength=BINS)
        start += y.size
    out = []
    for j in range(len(edges)):
        keep = counts[j] > 0
        out.append(tuple(sums[j][:, keep] / counts[j][keep]))
    return out, n, True


def _binned(result, blocks):
    """1-D x: per-bin means of x, y, the model and the normalized residual (see :func:`_binned_axes`)."""
    axes, n, binned = _binned_axes(result, blocks)
    return (*axes[0], n, binned)


def curve_fit_plot(plt, result, blocks, path: str, x_names=None) -> str:
    axes, n, binned = _binned_axes(result, blocks)
    if len(axes) > 1:
        return _several_coordinates_plot(plt, axes, n, binned, path, x_names)
    x, y, f, r = axes[0]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot(x, y, ".", ms=3, color="0.3", label=f"data ({'mean of ' + str(BINS) + ' bins, ' if binned else ''}"
                                                   f"{n} points)")
    top.plot(x, f, "-", color="C3", label="fit")
    top.legend()
    top.set_ylabel("y")
    bottom.plot(x, r, ".", ms=3, color="C0")
    bottom.axhline(0.0, color="0.5", lw=0.8)
    bottom.set_ylabel("(y − f)/σ" + (" (bin mean)" if binned else ""))
    bottom.set_xlabel("x")
    top.set_title("data and fit")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _several_coordinates_plot(plt, axes, n, binned, path: str, x_names=None) -> str:
    """x of d coordinates: data and fit against the point index, then the normalized residuals
    against the point index and against each coordinate (at most :data:`MAX_COORDINATES`)."""
    *coordinates, index = axes
    d = len(coordinates)
    names = list(x_names) if x_names is not None and len(x_names) == d else [f"x[{k}]" for k in range(d)]
    shown = list(zip(names, coordinates))[:MAX_COORDINATES]
    rows = 2 + len(shown)
    fig, panels = plt.subplots(rows, 1, figsize=(7, 2.2 * rows + 0.6))
    label = " (bin mean)" if binned else ""
    i, y, f, _ = index
    panels[0].plot(i, y, ".", ms=3, color="0.3", label=f"data ({'mean of ' + str(BINS) + ' bins, ' if binned else ''}"
                                                         f"{n} points)")
    panels[0].plot(i, f, "-", color="C3", lw=1, label="fit")
    panels[0].set_ylabel("y")
    panels[0].set_xlabel("point index")
    panels[0].legend(fontsize=8)
    panels[0].set_title(f"data and fit (x has {d} coordinates)")
    for ax, (name, (a, _, _, r)) in zip(panels[1:], [("point index", index), *shown]):
        ax.plot(a, r, ".", ms=3, color="C0")
        ax.axhline(0.0, color="0.5", lw=0.8)
        ax.set_ylabel("(y − f)/σ" + label, fontsize=8)
        ax.set_xlabel(name)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def xpcs_angles(plt, result, stream_path: str, path: str, maps=None) -> str:
    """Per map (all, or the indices ``maps``: one ring's), data / fit / residual and short lags."""
    from ..xpcs.fit import fit_points

    xinfo = result.info.get("xpcs", {})
    triangle = xinfo.get("triangle", "upper")
    points = fit_points(stream_path, triangle)
    n_t, phi = points.n_t, points.phi
    stride = max(1, -(-n_t // MAX_SIDE))
    frames = np.arange(0, n_t, stride)
    t1, t2 = np.meshgrid(frames, frames, indexing="ij")
    upper = t1 < t2
    i1, i2 = t1[upper], t2[upper]
    lags = [1, 2, 4, 8]
    maps = range(len(phi)) if maps is None else [int(m) for m in maps]
    q_maps = np.broadcast_to(np.asarray(points.q, dtype=float), np.shape(phi))
    fig, axes = plt.subplots(len(maps), 4, figsize=(13, 3.0 * len(maps)), squeeze=False)
    for row, a in enumerate(maps):
        where = f"q = {q_maps[a]:.4g} Å⁻¹, φ = {phi[a]:g}°"
        data = points.sample(np.full(i1.size, a), i1, i2)
        model = result.predict(np.stack([np.full(i1.size, a), i1, i2]))      # x of TwoTimeModel: (angle, t1, t2)
        maps = []
        for values in (data, model, data - model):
            m = np.full(t1.shape, np.nan)
            m[upper] = values
            m.T[upper] = values
            maps.append(m)
        limits = np.nanpercentile(maps[0], [1, 99])
        extent = (0, n_t * points.dt, n_t * points.dt, 0)
        for col, (m, title) in enumerate(zip(maps, ("data", "fit", "residual"))):
            ax = axes[row, col]
            if col < 2:
                im = ax.imshow(m, vmin=limits[0], vmax=limits[1], extent=extent, cmap="viridis")
            else:
                r = np.nanmax(np.abs(m)) or 1.0
                im = ax.imshow(m, vmin=-r, vmax=r, extent=extent, cmap="RdBu_r")
            fig.colorbar(im, ax=ax, fraction=0.046)
            ax.set_title(f"{where}: {title}", fontsize=9)
            ax.set_xlabel("t2 (s)")
            ax.set_ylabel("t1 (s)")
        ax = axes[row, 3]
        for lag in lags:
            if lag >= n_t:
                continue
            s1 = np.arange(0, n_t - lag, max(1, (n_t - lag) // 200))
            s2 = s1 + lag
            angle = np.full(s1.size, a)
            ax.plot(s1 * points.dt, points.sample(angle, s1, s2), ".", ms=2, label=f"lag {lag}")
            ax.plot(s1 * points.dt, result.predict(np.stack([angle, s1, s2])), "-", lw=1, color="k")
        ax.set_title(f"{where}: c2 at short lags (lines: fit)", fontsize=9)
        ax.set_xlabel("t1 (s)")
        ax.legend(fontsize=6)
    getattr(points.source, "close", lambda: None)()      # a beamline file read for the samples
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_g2_plots(fits, outdir: str, law=None, curves: int = 6) -> tuple[list[str], str | None]:
    """Plots of g2 fits (:class:`hpcfit.xpcs.g2.G2Fits`): ``g2_fits.png``, the data with error bars
    on a log τ axis and the fitted curves, for up to ``curves`` bins of the first file spread over q;
    ``g2_rates.png``, every fit's rate against q on log axes, trusted and not, with the q-law ``law``
    (:func:`hpcfit.xpcs.g2.q_law`). Same contract as :func:`write_plots`."""
    try:
        plt = _pyplot()
    except ImportError:
        return [], "plots skipped: matplotlib is not installed (pip install 'hpcfit[plot]')"
    except Exception as exc:  # noqa: BLE001
        return [], f"warning: plots not made: matplotlib cannot be used ({type(exc).__name__}: {exc})"
    written, failed = [], []
    for name, draw in (("g2_fits.png", lambda path: _g2_curves(plt, fits, path, curves)),
                       ("g2_rates.png", lambda path: _g2_rates(plt, fits, law, path))):
        try:
            written.append(draw(os.path.join(outdir, name)))
        except Exception as exc:  # noqa: BLE001
            plt.close("all")
            failed.append(f"{name} ({type(exc).__name__}: {' '.join(str(exc).split())})")
    return written, (f"warning: plot(s) not made: {'; '.join(failed)}" if failed else None)


def _g2_curves(plt, fits, path: str, curves: int) -> str:
    from ..models.g2 import g2_model
    from ..xpcs.multitau import read_g2

    first = fits.file[0]
    rows = [j for j in range(len(fits)) if fits.file[j] == first]
    rows = [rows[i] for i in np.unique(np.linspace(0, len(rows) - 1, min(curves, len(rows))).astype(int))]
    data = read_g2(first, dt=None if fits.dt is None else fits.dt)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for j in rows:
        k, ok = fits.bin[j], data.has_data[:, fits.bin[j]]
        line = ax.errorbar(data.tau[ok], data.g2[ok, k], yerr=data.err[ok, k], fmt="o", ms=3, capsize=0,
                           label=f"q = {fits.q[j]:.4g} Å⁻¹" + ("" if fits.trustworthy[j] else " (not trusted)"))
        tau = np.geomspace(data.tau[ok].min(), data.tau[ok].max(), 200)
        ax.plot(tau, np.asarray(g2_model(fits.form, tau, fits.popt[j])), color=line[0].get_color())
    ax.set_xscale("log")
    ax.set_xlabel("τ (s)")
    ax.set_ylabel("g2")
    ax.set_title(f"{os.path.basename(first)}: {fits.form} fits")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _g2_rates(plt, fits, law, path: str) -> str:
    gamma, err = fits.column("gamma"), fits.perr[:, fits.names.index("gamma")]
    ok = fits.trustworthy & (gamma > 0)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    shown = np.isfinite(err) & (gamma > 0)
    ax.errorbar(fits.q[ok & shown], gamma[ok & shown], yerr=err[ok & shown], fmt="o", ms=4, label="trusted fits")
    bad = ~ok & (gamma > 0)
    if bad.any():
        ax.plot(fits.q[bad], gamma[bad], "x", color="grey", label="not trusted")
    if law is not None:
        q = np.geomspace(fits.q[fits.q > 0].min(), fits.q.max(), 100)
        ax.plot(q, law.D * q ** law.n, "-", color="k",
                label=f"Γ = D·qⁿ: D = {law.D:.4g} ± {law.D_err:.2g}, n = {law.n:.3f} ± {law.n_err:.3f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import NullFormatter
    ax.xaxis.set_minor_formatter(NullFormatter())          # a q range within a decade: no crowded labels
    ax.set_xlabel("q (Å⁻¹)")
    ax.set_ylabel("Γ (1/s)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
