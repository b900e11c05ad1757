"""g2(q, τ) fits of multitau results (issue 21): every q bin of every file, each fitted on its own,
many at once.

Each (file, bin) is a small problem — ~60 delays, 3–5 parameters. They are laid out on a global grid
of fixed-size batches in (file, bin) order; rank r solves its contiguous run of batches with one
compiled LM kernel vmapped over a batch (:mod:`hpcfit.kernels.batched_lm`), and the rows are
gathered on every rank. A problem's arithmetic does not depend on its batch neighbours or on the
rank that solves it, so a fit has the same bits on any number of ranks.

Weights are 1/``normalized_g2_err`` (``weights="err"``, the default) or 1 (``weights=None``);
delays without data (error 0) are left out either way. perr is scaled by the reduced χ² as
scipy's ``curve_fit`` does by default (``absolute_sigma=False``). A fit that should not be trusted
says why in its ``issues``: not converged, on a bound, undetermined.
"""
from __future__ import annotations

import glob
import os
import threading
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from ..comm import Communicator
from ..errors import InputError
from ..solvers.pseudo_inverse import equilibrated_pseudo_inverse, undetermined
from ..result import Status
from .multitau import G2Data, read_g2

FORMS = ("single", "stretched", "double")
PARAMETERS = {"single": ("contrast", "gamma", "baseline"),
              "stretched": ("contrast", "gamma", "beta", "baseline"),
              "double": ("contrast", "gamma", "gamma2", "fraction", "baseline")}
#: Default boxes: a positive contrast and rates, β of a stretched decay in (0, 2], a fraction in [0, 1].
DEFAULT_BOUNDS = {"contrast": (0.0, np.inf), "gamma": (0.0, np.inf), "gamma2": (0.0, np.inf),
                  "beta": (0.05, 2.0), "fraction": (0.0, 1.0), "baseline": (-np.inf, np.inf)}
#: Problems per compiled batch: fixed, so that a problem's bits do not depend on the rank count.
BATCH = 256
COV_RCOND = 1e-14
#: Weighted by the file's errors, a reduced χ² above this says the model misses the data by more
#: than their errors (boost_corr's errors are standard errors over a bin's pixels; a right model
#: gives ~1, rarely above 2).
MISFIT_CHI2 = 3.0


@dataclass(frozen=True)
class G2Fits:
    """One row per fitted bin: its file, bin, q, φ, parameters, errors, χ², status and issues."""

    form: str
    names: tuple[str, ...]
    file: tuple[str, ...]
    bin: np.ndarray
    q: np.ndarray
    phi: np.ndarray
    popt: np.ndarray             # (rows, p)
    perr: np.ndarray             # (rows, p); 0 for a fixed parameter, inf where undetermined
    chi2: np.ndarray
    dof: np.ndarray
    status: np.ndarray           # hpcfit.Status codes
    issues: tuple[str, ...]      # "" for a fit to trust
    skipped: tuple[str, ...] = field(default=())   # bins without data, named
    dt: float | None = None                          # the dt given (None: each file's recorded one)

    @property
    def reduced_chi2(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.chi2 / self.dof

    @property
    def trustworthy(self) -> np.ndarray:
        return np.array([not issue for issue in self.issues])

    def __len__(self) -> int:
        return self.bin.size

    def column(self, name: str) -> np.ndarray:
        return self.popt[:, self.names.index(name)]

    def save(self, path):
        """The table as CSV (``.csv``) or HDF5 (``.h5``, ``.hdf5``, ``.hdf``): :mod:`hpcfit.output.g2_table`."""
        from ..output.g2_table import write_csv, write_hdf5
        suffix = os.path.splitext(os.fspath(path))[1].lower()
        if suffix == ".csv":
            return write_csv(self, path)
        if suffix in (".h5", ".hdf5", ".hdf"):
            return write_hdf5(self, path)
        raise InputError(f"G2Fits.save: {path}: the name must end in .csv, .h5, .hdf5 or .hdf")


class QLaw(NamedTuple):
    """Γ = D·qⁿ regressed over trusted fits: D (rate units × Å^n), n, their errors and the bins used."""

    D: float
    n: float
    D_err: float
    n_err: float
    used: int


def q_law(fits: G2Fits, rate: str = "gamma", trusted_only: bool = True) -> QLaw | None:
    """Γ = D·qⁿ by weighted least squares of ln Γ on ln q over the trusted fits (weights from each
    rate's relative error); None when fewer than 3 trusted bins have distinct q. A pooled regression
    of the per-bin fits (what beamline tools do); the global fit over q with shared D and n is a
    fit of its own."""
    gamma, err = fits.column(rate), fits.perr[:, fits.names.index(rate)]
    use = (fits.trustworthy if trusted_only else np.ones(len(fits), bool)) & (gamma > 0) & np.isfinite(err) & (err > 0) & (fits.q > 0)
    if np.unique(fits.q[use]).size < 3:
        return None
    x, y, w = np.log(fits.q[use]), np.log(gamma[use]), gamma[use] / err[use]     # 1/σ of ln Γ
    a = np.stack([np.ones_like(x), x], axis=1) * w[:, None]
    coef, *_ = np.linalg.lstsq(a, y * w, rcond=None)
    cov = np.linalg.inv(a.T @ a)
    dof = max(int(use.sum()) - 2, 1)
    chi2 = float(np.sum((a @ coef - y * w) ** 2)) / dof
    cov = cov * max(chi2, 1.0)                  # scatter beyond the errors widens them, as curve_fit would
    return QLaw(float(np.exp(coef[0])), float(coef[1]), float(np.exp(coef[0]) * np.sqrt(cov[0, 0])),
                float(np.sqrt(cov[1, 1])), int(use.sum()))


def fit_g2(files, *, form: str = "single", weights: str | None = "err", fixed=None, bounds=None, dt=None,
           tau_range=None, max_iterations: int = 200, comm=None) -> G2Fits:
    """Fit g2 = baseline + contrast·f(τ)² (:mod:`hpcfit.models.g2`) to every q bin with data of every
    multitau file in ``files`` (a path, a glob pattern, or a list of them), each bin on its own.

    ``fixed``: {name: value} held at that value; ``bounds``: {name: (low, high)} over the defaults
    (:data:`DEFAULT_BOUNDS`). ``tau_range``: (τ_min, τ_max) in seconds, the delays to fit (the first
    delays of photon-starved data are often noise). Collective when ``comm`` is given: every rank
    returns the same table."""
    with Communicator(comm) as hc:
        tau_range = _check_tau_range(tau_range)
        names = _check_form(form)
        fixed, box = _check_parameters(names, fixed, bounds)
        if weights not in ("err", None, "none"):
            raise InputError(f"`weights` must be 'err' (1/normalized_g2_err) or None; got {weights!r}")
        paths = hc.on_root(_expand, files)
        ahead: list[threading.Thread] = []

        def read_mine():
            # each rank reads every size-th file; the kernel compiles meanwhile, for the first one's delays
            out = []
            for path in paths[hc.rank::hc.size]:
                out.append(read_g2(path, dt=dt))
                if not ahead:
                    ahead.append(_compile_ahead(form, max_iterations, out[0].tau.size, len(names)))
            return out

        mine = hc.agree(read_mine)
        shares = hc.allgather(mine)
        data = [shares[i % hc.size][i // hc.size] for i in range(len(paths))]
        if tau_range is not None:       # delays outside the range hold no data for the fit
            data = [replace(d, has_data=d.has_data & ((d.tau >= tau_range[0]) & (d.tau <= tau_range[1]))[:, None])
                    for d in data]
        problems = _problems(data, names, form, weights == "err", fixed, box)
        n_batches = -(-problems.n // BATCH)
        first, stop = n_batches * hc.rank // hc.size, n_batches * (hc.rank + 1) // hc.size
        for thread in ahead:
            thread.join()
        mine = hc.agree(_solve, problems, form, first, stop, max_iterations)
        parts = hc.allgather(mine)
    table = _table(problems, names, form, np.concatenate([p for p in parts if p is not None]), data, weights == "err")
    return replace(table, dt=dt)


# -- arguments ------------------------------------------------------------------------------------

def _check_form(form) -> tuple[str, ...]:
    if form not in FORMS:
        raise InputError(f"`form` must be one of {', '.join(repr(f) for f in FORMS)}; got {form!r}")
    return PARAMETERS[form]


def _check_parameters(names, fixed, bounds):
    fixed = dict(fixed or {})
    bounds = dict(bounds or {})
    for what, given in (("fixed", fixed), ("bounds", bounds)):
        unknown = [k for k in given if k not in names]
        if unknown:
            raise InputError(f"`{what}`: unknown parameter {unknown[0]!r}; the parameters are {', '.join(names)}")
    box = {}
    for name in names:
        low, high = bounds.get(name, DEFAULT_BOUNDS[name])
        low, high = float(low), float(high)
        if not low < high:
            raise InputError(f"`bounds` of {name!r}: need low < high; got ({low}, {high})")
        box[name] = (low, high)
    for name, value in fixed.items():
        value = float(value)
        if not np.isfinite(value):
            raise InputError(f"`fixed` {name!r} must be a finite number; got {value}")
        fixed[name] = value
    return fixed, box


def _check_tau_range(tau_range):
    if tau_range is None:
        return None
    try:
        low, high = (float(v) for v in tau_range)
    except (TypeError, ValueError):
        raise InputError(f"`tau_range` must be (tau_min, tau_max) in seconds; got {tau_range!r}") from None
    if not (0.0 <= low < high):
        raise InputError(f"`tau_range` must be (tau_min, tau_max) with 0 <= tau_min < tau_max; got {tau_range!r}")
    return low, high


def _expand(files) -> list[str]:
    items = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    paths = []
    for item in items:
        item = os.fspath(item)
        found = sorted(glob.glob(item)) if glob.has_magic(item) else [item]
        if not found:
            raise InputError(f"`files`: the pattern {item!r} matches no file")
        paths += found
    if not paths:
        raise InputError("`files`: no file given")
    return paths


# -- problems -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Problems:
    """Every bin with data, padded to the longest delay list: arrays (problems, delays)."""

    file_index: np.ndarray
    bin: np.ndarray
    tau: np.ndarray
    g2: np.ndarray
    w: np.ndarray
    p0: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    free: np.ndarray
    skipped: tuple[str, ...]

    @property
    def n(self) -> int:
        return self.bin.size


def _problems(data: list[G2Data], names, form: str, weighted: bool, fixed: dict, box: dict) -> _Problems:
    n_tau = max(d.tau.size for d in data)
    skipped = tuple(f"{d.path}: {d.describe_bin(k)} has no data" for d in data for k in d.empty)
    # every file's table at once: (bins, delays) blocks padded to n_tau (padding: last τ, no data)
    tau, g2, err, ok, file_index, bins = [], [], [], [], [], []
    for i, d in enumerate(data):
        keep = np.flatnonzero(d.has_data.any(axis=0))
        pad = n_tau - d.tau.size
        tau.append(np.broadcast_to(np.pad(d.tau, (0, pad), mode="edge"), (keep.size, n_tau)))
        g2.append(np.pad(d.g2[:, keep].T, ((0, 0), (0, pad))))
        err.append(np.pad(d.err[:, keep].T, ((0, 0), (0, pad)), constant_values=1.0))
        ok.append(np.pad(d.has_data[:, keep].T, ((0, 0), (0, pad))))
        file_index.append(np.full(keep.size, i, dtype=np.int64)), bins.append(keep.astype(np.int64))
    n = sum(b.size for b in bins)
    if n == 0:
        raise InputError(f"no bin of {len(data)} file(s) holds data" + (f" ({skipped[0]}, ...)" if skipped else ""))
    tau, g2, err, ok = (np.concatenate(a) for a in (tau, g2, err, ok))
    g2 = np.where(ok, g2, 0.0)
    w = np.where(ok, 1.0 / np.where(ok, err, 1.0), 0.0) if weighted else ok.astype(float)
    p0 = start_values(form, tau, g2, ok)
    p = len(names)
    # a fixed parameter's box is its value: held there exactly, even outside the default box
    lower = np.array([fixed.get(name, box[name][0]) for name in names])
    upper = np.array([fixed.get(name, box[name][1]) for name in names])
    free = np.array([name not in fixed for name in names])
    p0 = np.clip(p0, lower, upper)
    return _Problems(np.concatenate(file_index), np.concatenate(bins), np.ascontiguousarray(tau), g2, w, p0,
                     np.broadcast_to(lower, (n, p)), np.broadcast_to(upper, (n, p)), np.broadcast_to(free, (n, p)),
                     skipped)


def _medians(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per row, the median of its first ``counts`` values (rows of a few values: sorted, the middle
    one or the mean of the two middle ones, as np.median)."""
    s = np.sort(np.where(np.arange(values.shape[1]) < counts[:, None], values, np.inf), axis=1)
    low = np.take_along_axis(s, ((counts - 1) // 2)[:, None], axis=1)[:, 0]
    high = np.take_along_axis(s, (counts // 2)[:, None], axis=1)[:, 0]
    return 0.5 * (low + high)


def start_values(form: str, tau: np.ndarray, g2: np.ndarray, ok: np.ndarray | None = None) -> np.ndarray:
    """Start values from the data of a bin (1-D ``tau``, ``g2``) or of many at once (rows; ``ok``
    says which delays hold data): baseline from the last delays with data, contrast from the first
    ones, Γ where g2 − baseline has fallen to e⁻² of the contrast (f² = e^(−2Γτ) there)."""
    if np.ndim(g2) == 1:
        return start_values(form, np.asarray(tau)[None, :], np.asarray(g2)[None, :], ok)[0]
    ok = np.ones(g2.shape, bool) if ok is None else ok
    m = ok.sum(axis=1)
    # each row's delays with data first, in order
    order = np.argsort(~ok, axis=1, kind="stable")
    t, y = np.take_along_axis(tau, order, axis=1), np.take_along_axis(g2, order, axis=1)
    n_last, n_first = np.maximum(1, np.minimum(5, m // 4)), np.maximum(1, np.minimum(3, m // 4))
    last = np.clip(m[:, None] - n_last[:, None] + np.arange(5)[None, :], 0, g2.shape[1] - 1)
    baseline = _medians(np.take_along_axis(y, last, axis=1), n_last)
    contrast = np.maximum(_medians(y[:, :3] if y.shape[1] >= 3 else y, n_first) - baseline, 1e-3)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        below = ((y - baseline[:, None]) / contrast[:, None] < np.exp(-2.0)) & (np.arange(y.shape[1]) < m[:, None])
    first_below = np.where(below.any(axis=1), below.argmax(axis=1), m - 1)
    crossing = np.take_along_axis(t, first_below[:, None], axis=1)[:, 0]
    gamma = 1.0 / np.maximum(crossing, t[:, 0])
    shape = {"single": [], "stretched": [np.ones_like(gamma)], "double": [gamma / 10.0, np.full_like(gamma, 0.5)]}[form]
    return np.stack([contrast, gamma, *shape, baseline], axis=1)


# -- solving --------------------------------------------------------------------------------------

def _solve(problems: _Problems, form: str, first: int, stop: int, max_iterations: int) -> np.ndarray | None:
    """Rows of this rank's batches: problem index, popt, cost, status, iterations, perr, and which
    parameters are undetermined (1/0): the covariance of each fit is taken where it was solved."""
    if first >= stop:
        return None
    import jax.numpy as jnp

    from ..kernels.batched_lm import Batch
    kernel = _kernel(form, max_iterations)
    out = []
    for b in range(first, stop):
        lo, hi = b * BATCH, min((b + 1) * BATCH, problems.n)
        index = np.arange(lo, lo + BATCH)
        index = np.minimum(index, hi - 1)             # the last batch repeats its last problem
        batch = Batch(*(jnp.asarray(getattr(problems, k)[index]) for k in
                        ("tau", "g2", "w", "p0", "lower", "upper", "free")))
        res = kernel(batch)
        n = hi - lo
        cost, jtj = np.asarray(res.cost)[:n], np.asarray(res.jtj)[:n]
        perr, null = _errors(jtj, cost, np.count_nonzero(problems.w[lo:hi] > 0, axis=1), problems.free[lo])
        rows = np.concatenate([np.arange(lo, hi)[:, None], np.asarray(res.popt)[:n], cost[:, None],
                               np.asarray(res.status)[:n, None], np.asarray(res.iterations)[:n, None], perr, null],
                              axis=1)
        out.append(rows)
    return np.concatenate(out)


def _errors(jtj: np.ndarray, cost: np.ndarray, n_points: np.ndarray, free: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """perr of a batch of fits (rows; 0 for a held parameter, inf where undetermined) and which
    parameters are undetermined (1/0): :func:`hpcfit.phases.covariance.covariance` (curve_fit's
    scaling by the reduced χ²) on every fit at once, by batched eigendecompositions."""
    n, k = cost.size, int(free.sum())
    perr, null = np.zeros((n, free.size)), np.zeros((n, free.size))
    pinv = equilibrated_pseudo_inverse(jtj[:, free][:, :, free], COV_RCOND)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        factor = 2.0 * cost / (n_points - k)
        err = np.sqrt(np.maximum(np.diagonal(pinv.inverse, axis1=1, axis2=2) * factor[:, None], 0.0))
    unknown = undetermined(pinv) | (n_points <= k)[:, None]
    perr[:, free] = np.where(unknown, np.inf, err)
    null[:, free] = unknown
    return perr, null


_KERNELS: dict = {}


def _compile_ahead(form: str, max_iterations: int, n_tau: int, p: int) -> threading.Thread:
    """Compile the batched kernel for batches of ``n_tau`` delays on a background thread (the
    compilation runs outside Python's lock, so the files go on being read): the first solve then finds
    it compiled when the files have that many delays, as a night's files of one setup do; otherwise it
    compiles for theirs. Nothing is collective; an error is left to the solve that needs the kernel."""
    def work():
        try:
            import jax.numpy as jnp

            from ..kernels.batched_lm import Batch
            # arrays as _solve makes them (no data, w = 0: every problem stops at its start, the loop at once)
            zeros, ones = np.zeros((BATCH, n_tau)), np.ones((BATCH, p))
            batch = Batch(*(jnp.asarray(a) for a in (zeros, zeros, zeros, ones, 0.0 * ones, 2.0 * ones,
                                                     ones.astype(bool))))
            np.asarray(_kernel(form, max_iterations)(batch).cost)
        except Exception:  # noqa: BLE001 - the solve that needs the kernel reports it
            pass

    thread = threading.Thread(target=work, name="hpcfit-g2-compile", daemon=True)
    thread.start()
    return thread


def _kernel(form: str, max_iterations: int):
    key = (form, max_iterations)
    if key not in _KERNELS:
        from ..kernels.batched_lm import batched_lm
        from ..models.g2 import g2_model
        _KERNELS[key] = batched_lm(lambda x, params: g2_model(form, x, params), max_iterations=max_iterations)
    return _KERNELS[key]


# -- the table ------------------------------------------------------------------------------------

def _table(problems: _Problems, names, form: str, rows: np.ndarray, data: list[G2Data], weighted: bool) -> G2Fits:
    p = len(names)
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    popt, cost = rows[:, 1:1 + p], rows[:, 1 + p]
    status = rows[:, 2 + p].astype(int)
    perr, null = rows[:, 4 + p:4 + 2 * p], rows[:, 4 + 2 * p:] > 0
    free = problems.free[0]
    n_points = (problems.w > 0).sum(axis=1)
    dof = n_points - free.sum()
    lower, upper = problems.lower[0], problems.upper[0]
    failed = ~np.isin(status, [code for code in Status if code.success])
    on_bound = free & ((popt <= lower) | (popt >= upper))
    with np.errstate(divide="ignore", invalid="ignore"):
        reduced = 2.0 * cost / dof
    misfit = weighted & (dof > 0) & (reduced > MISFIT_CHI2)
    issues = [""] * problems.n
    for j in np.flatnonzero(failed | (dof <= 0) | null.any(axis=1) | on_bound.any(axis=1) | misfit):
        why = []
        if failed[j]:
            why.append(f"not converged ({Status(status[j]).name.lower()})")
        if dof[j] <= 0:
            why.append(f"undetermined: {n_points[j]} delays with data for {int(free.sum())} free parameters")
        elif null[j].any():
            why.append("undetermined: " + ", ".join(n for c, n in enumerate(names) if null[j, c]))
        if on_bound[j].any():
            why.append("on a bound: " + ", ".join(n for c, n in enumerate(names) if on_bound[j, c]))
        if misfit[j]:
            why.append(f"reduced χ² {reduced[j]:.3g} > {MISFIT_CHI2:g}: the model misses the data by more than "
                       "their errors")
        issues[j] = "; ".join(why)
    return G2Fits(form, tuple(names), tuple(data[i].path for i in problems.file_index), problems.bin,
                  np.array([data[i].q[k] for i, k in zip(problems.file_index, problems.bin)]),
                  np.array([data[i].phi[k] for i, k in zip(problems.file_index, problems.bin)]),
                  popt, perr, 2.0 * cost, dof, status, tuple(issues), problems.skipped)


# -- the global fit over q ------------------------------------------------------------------------

GLOBAL_FORMS = ("single", "stretched")


def fit_g2_global(path, *, form: str = "single", exponent: float | None = None, weights: str | None = "err",
                  dt=None, p0_from: G2Fits | None = None, comm=None, **options):
    """One fit of every bin with data of the multitau file ``path``: Γ(q) = D·qⁿ shared (``n`` free,
    or held at ``exponent``, e.g. 2 for diffusion), β shared (``stretched``), contrast and baseline
    per bin, through the per-group passes (:class:`hpcfit.ParameterGroups`). Start values from the
    per-bin fits (``p0_from``, else :func:`fit_g2` of this file) and the q-law through them.
    Returns the :class:`hpcfit.FitResult`; its names are D, n, [beta,] contrast_k…, baseline_k…
    (k the bin)."""
    import hpcfit
    from ..groups import ParameterGroups
    from ..models.g2 import global_g2_model

    if form not in GLOBAL_FORMS:
        raise InputError(f"`form` of the global fit must be one of {', '.join(map(repr, GLOBAL_FORMS))}; got {form!r}")
    with Communicator(comm) as hc:
        data = hc.on_root(read_g2, path, dt=dt)
        per_bin = p0_from if p0_from is not None else fit_g2(path, form=form, weights=weights, dt=dt, comm=hc)
        # the q-law through the trusted bins, else through all of them: only a start
        law = q_law(per_bin) or q_law(per_bin, trusted_only=False)
        if law is None:
            raise InputError(f"{path}: the global fit needs start values from at least 3 bins of distinct q")
        bins = per_bin.bin[[f == data.path for f in per_bin.file]]
        rows = [j for j in range(len(per_bin)) if per_bin.file[j] == data.path]
        taus, qs, ids, ys, sig = [], [], [], [], []
        for g, k in enumerate(bins):
            ok = data.has_data[:, k]
            taus.append(data.tau[ok]), qs.append(np.full(ok.sum(), data.q[k])), ids.append(np.full(ok.sum(), g))
            ys.append(data.g2[ok, k]), sig.append(data.err[ok, k])
        x = np.stack([np.concatenate(taus), np.concatenate(qs), np.concatenate(ids).astype(float)])
        n_decay = 1 if form == "stretched" else 0
        beta0 = [float(np.median(per_bin.column("beta")[rows]))] if n_decay else []
        p0 = np.array([law.D, law.n if exponent is None else exponent, *beta0,
                       *per_bin.column("contrast")[rows], *per_bin.column("baseline")[rows]])
        lower = np.array([0.0, -np.inf, *([0.05] * n_decay), *([0.0] * bins.size), *([-np.inf] * bins.size)])
        upper = np.full(p0.size, np.inf)
        if n_decay:
            upper[2] = 2.0
        if exponent is not None:
            lower[1] = upper[1] = float(exponent)
        groups = ParameterGroups(n_shared=2 + n_decay, per_group=2, group_sizes=[len(t) for t in taus])
        names = ["D", "n", *(["beta"] * n_decay)] + [f"contrast_{k}" for k in bins] + [f"baseline_{k}" for k in bins]
        result = hpcfit.curve_fit(global_g2_model(form, bins.size, n_decay), x, np.concatenate(ys), p0,
                                  sigma=None if weights in (None, "none") else np.concatenate(sig),
                                  bounds=(lower, upper), comm=hc, parameter_groups=groups, **options)
    return replace(result, names=names)
