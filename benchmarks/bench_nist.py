"""NIST StRD nonlinear regression: hpcfit against scipy on all 27 problems from both NIST starts.

Solvers, for each (problem, start) pair (54 in all):
  hpcfit-default  hpcfit.curve_fit with its default method
  hpcfit-gn       hpcfit.curve_fit(method="gn")
  lm, trf         scipy.optimize.least_squares, with the exact Jacobian (jax.jacfwd of the same
                  model, jit-compiled, as the residuals)
  curve_fit       scipy.optimize.curve_fit (finite differences, as at its defaults; the model jit-compiled)

Tolerances (--tol):
  tight    ftol = xtol = gtol = 1e-15 for every solver; hpcfit max_iterations=1000,
           scipy max_nfev=10000 (curve_fit: maxfev=10000)
  default  each solver's own defaults (nothing passed)

A pair is solved when every parameter agrees with NIST's certified value to 6 significant digits
(LRE >= 6, i.e. |est - cert| / |cert| <= 1e-6) and every standard error to 4 (<= 1e-4).
Standard errors: hpcfit result.perr; least_squares sqrt(diag(s² (JᵀJ)⁻¹)), s² = 2·cost/(n − p);
curve_fit sqrt(diag(pcov)). A fit that raises counts as not solved (the error is listed).

Not a timing benchmark: it reports accuracy only.

Run (serial):
    .venv/bin/python benchmarks/bench_nist.py --tol tight [--problems Misra1a MGH09 ...] [--markdown]
    .venv/bin/python benchmarks/bench_nist.py --tol default
"""
from __future__ import annotations

import argparse
import math
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from scipy.optimize import curve_fit as scipy_curve_fit  # noqa: E402
from scipy.optimize import least_squares  # noqa: E402

import hpcfit  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nist_strd import NAMES, PROBLEMS  # noqa: E402

SOLVERS = ("hpcfit-default", "hpcfit-gn", "lm", "trf", "curve_fit")
PARAM_RTOL = 1e-6        # LRE >= 6
SE_RTOL = 1e-4           # 4 digits
LRE_CAP = 11.0           # NIST's values carry 11 digits
TIGHT = 1e-15


@dataclass
class Outcome:
    popt: np.ndarray | None = None
    se: np.ndarray | None = None
    cost: float = math.nan                  # ½·Σr²
    error: str | None = None
    note: str = ""                          # hpcfit: status; scipy: status/message
    solved: bool = False
    min_lre: float = 0.0
    se_ok: bool = False
    extra: dict = field(default_factory=dict)


def lre(est: np.ndarray, cert: np.ndarray) -> np.ndarray:
    est = np.asarray(est, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(est - cert) / np.abs(cert)
        out = np.where(rel == 0, LRE_CAP, -np.log10(rel))
    out = np.where(np.isfinite(est), out, 0.0)
    return np.clip(out, 0.0, LRE_CAP)


def grade(out: Outcome, prob) -> Outcome:
    if out.popt is None:
        return out
    popt = np.asarray(out.popt, dtype=float)
    out.min_lre = float(np.min(lre(popt, prob.certified)))
    params_ok = bool(np.all(np.isfinite(popt))
                     and np.all(np.abs(popt - prob.certified) <= PARAM_RTOL * np.abs(prob.certified)))
    se = None if out.se is None else np.asarray(out.se, dtype=float)
    out.se_ok = bool(se is not None and np.all(np.isfinite(se))
                     and np.all(np.abs(se - prob.certified_se) <= SE_RTOL * np.abs(prob.certified_se)))
    out.solved = params_ok and out.se_ok
    return out


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
    return text[:160]


# ---- solvers ---------------------------------------------------------------------------------------

def run_hpcfit(prob, p0, method: str | None, tol: str) -> Outcome:
    kw = dict(verbose=0)
    if method is not None:
        kw["method"] = method
    if tol == "tight":
        kw.update(ftol=TIGHT, xtol=TIGHT, gtol=TIGHT, max_iterations=1000)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = hpcfit.curve_fit(prob.model, prob.x, prob.y, p0=np.array(p0, dtype=float), **kw)
    except Exception as exc:  # noqa: BLE001  (a benchmark: record and go on)
        return Outcome(error=_short(exc))
    return Outcome(popt=np.asarray(res.popt), se=np.asarray(res.perr), cost=float(res.cost),
                   note=f"{res.status.name}{'' if res.success else ' (success=False)'}, {res.n_iterations} it",
                   extra=dict(success=bool(res.success), status=res.status.name))


class Compiled:
    """The model, its residuals and their Jacobian, jit-compiled once per problem (for scipy)."""

    def __init__(self, prob):
        x = jnp.asarray(prob.x)
        y = jnp.asarray(prob.y)
        model = prob.model
        self.res = jax.jit(lambda b: model(x, *b) - y)
        self.jac = jax.jit(jax.jacfwd(lambda b: model(x, *b) - y))
        self.f = jax.jit(lambda xx, b: model(xx, *b))

    def fun(self, b):
        return np.asarray(self.res(jnp.asarray(b, dtype=jnp.float64)))

    def jacobian(self, b):
        return np.asarray(self.jac(jnp.asarray(b, dtype=jnp.float64)))

    def curve(self, xx, *b):
        return np.asarray(self.f(jnp.asarray(xx), jnp.asarray(b, dtype=jnp.float64)))


def run_least_squares(prob, comp: Compiled, p0, method: str, tol: str) -> Outcome:
    kw = {}
    if tol == "tight":
        kw.update(ftol=TIGHT, xtol=TIGHT, gtol=TIGHT, max_nfev=10000)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            res = least_squares(comp.fun, np.array(p0, dtype=float), jac=comp.jacobian, method=method, **kw)
            n, p = res.jac.shape
            s2 = 2.0 * res.cost / (n - p)
            try:
                se = np.sqrt(np.diag(s2 * np.linalg.inv(res.jac.T @ res.jac)))
            except np.linalg.LinAlgError:
                se = np.full(p, np.inf)
    except Exception as exc:  # noqa: BLE001
        return Outcome(error=_short(exc))
    return Outcome(popt=res.x, se=se, cost=float(res.cost), note=f"status {res.status}, nfev {res.nfev}",
                   extra=dict(success=bool(res.success)))


def run_curve_fit(prob, comp: Compiled, p0, tol: str) -> Outcome:
    kw = {}
    if tol == "tight":
        kw.update(ftol=TIGHT, xtol=TIGHT, gtol=TIGHT, maxfev=10000)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            popt, pcov = scipy_curve_fit(comp.curve, prob.x, prob.y, p0=np.array(p0, dtype=float), **kw)
    except Exception as exc:  # noqa: BLE001
        return Outcome(error=_short(exc))
    r = comp.fun(popt)
    return Outcome(popt=popt, se=np.sqrt(np.diag(pcov)), cost=0.5 * float(r @ r))


# ---- main -------------------------------------------------------------------------------------------

def fmt_cell(o: Outcome) -> str:
    if o.error is not None:
        return "ERR"
    return f"{'Y' if o.solved else 'n'} {o.min_lre:4.1f}"


def md_cell(o: Outcome) -> str:
    if o.error is not None:
        return "ERR"
    return f"{'**Y**' if o.solved else 'n'} ({o.min_lre:.1f})"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tol", choices=("tight", "default"), default="tight")
    ap.add_argument("--problems", nargs="+", metavar="NAME", help=f"subset of: {' '.join(NAMES)}")
    ap.add_argument("--markdown", action="store_true", help="also print a markdown table")
    args = ap.parse_args(argv)

    names = list(NAMES)
    if args.problems:
        lower = {n.lower(): n for n in NAMES}
        unknown = [n for n in args.problems if n.lower() not in lower]
        if unknown:
            ap.error(f"unknown problem(s): {' '.join(unknown)}; choose from {' '.join(NAMES)}")
        names = [lower[n.lower()] for n in args.problems]

    print(f"NIST StRD nonlinear regression, tolerances: {args.tol}; cell = solved (Y/n) and min LRE of the "
          f"parameters (ERR: the fit raised)")
    header = f"{'problem':9s} {'level':7s} {'start':5s} " + " ".join(f"{s:>14s}" for s in SOLVERS)
    print(header)
    print("-" * len(header))

    rows = []
    for name in names:
        prob = PROBLEMS[name]
        comp = Compiled(prob)
        for k, p0 in enumerate(prob.starts, start=1):
            outs = {
                "hpcfit-default": run_hpcfit(prob, p0, None, args.tol),
                "hpcfit-gn": run_hpcfit(prob, p0, "gn", args.tol),
                "lm": run_least_squares(prob, comp, p0, "lm", args.tol),
                "trf": run_least_squares(prob, comp, p0, "trf", args.tol),
                "curve_fit": run_curve_fit(prob, comp, p0, args.tol),
            }
            for o in outs.values():
                grade(o, prob)
            rows.append((prob, k, outs))
            print(f"{name:9s} {prob.level:7s} {k:5d} " + " ".join(f"{fmt_cell(outs[s]):>14s}" for s in SOLVERS),
                  flush=True)

    n_pairs = len(rows)
    totals = {s: sum(o[s].solved for _, _, o in rows) for s in SOLVERS}
    print()
    print("solved: " + ", ".join(f"{s} {totals[s]}/{n_pairs}" for s in SOLVERS))

    worse = []
    for prob, k, o in rows:
        d, g = o["hpcfit-default"], o["hpcfit-gn"]
        if d.error is None and g.error is None and d.cost > g.cost * (1 + 1e-6):
            worse.append(f"{prob.name}/start{k} ({d.cost:.6e} vs {g.cost:.6e})")
    print("default worse than gn: " + (", ".join(worse) if worse else "none"))

    # details of what hpcfit did not solve, and every error
    print()
    print("hpcfit pairs not solved (final RSS / certified RSS, status):")
    any_fail = False
    for prob, k, o in rows:
        for s in ("hpcfit-default", "hpcfit-gn"):
            out = o[s]
            if out.solved:
                continue
            any_fail = True
            if out.error is not None:
                print(f"  {prob.name}/start{k} {s}: ERROR {out.error}")
            else:
                why = "params" if out.min_lre < 6 else "SE"
                print(f"  {prob.name}/start{k} {s}: min LRE {out.min_lre:.1f} ({why} off), "
                      f"RSS ratio {2 * out.cost / prob.certified_rss:.6g}, {out.note}")
    if not any_fail:
        print("  none")
    errors = [(prob.name, k, s, o[s].error) for prob, k, o in rows for s in SOLVERS if o[s].error is not None]
    print(f"errors: {len(errors) if errors else 'none'}")
    for name, k, s, e in errors:
        print(f"  {name}/start{k} {s}: {e}")

    if args.markdown:
        print()
        print("| problem | level | start | " + " | ".join(SOLVERS) + " |")
        print("|---|---|---|" + "---|" * len(SOLVERS))
        for prob, k, o in rows:
            print(f"| {prob.name} | {prob.level} | {k} | "
                  + " | ".join(md_cell(o[s]) for s in SOLVERS) + " |")
        print("| **solved** | | | " + " | ".join(f"**{totals[s]}/{n_pairs}**" for s in SOLVERS) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
