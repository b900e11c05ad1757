"""hpcfit vs scipy.optimize.curve_fit and least_squares, side by side on the same data.

Problems: y = a·exp(−b·x) + c at 10⁶ and 10⁷ points, and 3 Gaussian peaks (9 parameters) at 10⁶.
scipy gets the exact Jacobian (numpy) and its default tolerances; hpcfit its defaults.
Reported: first call (hpcfit: includes JIT compilation), warm call (best of --repeat), Jacobian and
cost pass counts, points/s per pass, and the ratio hpcfit warm / scipy.

Run (serial; never time with more ranks than cores):
    .venv/bin/python benchmarks/bench_vs_scipy.py [--sizes 1e6 1e7] [--repeat 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import curve_fit as scipy_curve_fit
from scipy.optimize import least_squares

import hpcfit
from hpcfit.models import exponential_decay, gaussian_peaks

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from models import exp_jac, exp_np, gauss3_jac, gauss3_np  # noqa: E402  (numpy references with exact Jacobians)

GAUSS_TRUTH = np.array([3.0, -2.0, 0.6, 1.5, 0.5, 0.9, 2.2, 3.1, 0.4])
GAUSS_START = np.array([2.0, -1.5, 1.0, 1.0, 0.8, 1.2, 1.5, 2.6, 0.8])


def problem(name, n):
    rng = np.random.default_rng(7)
    if name == "exp":
        x = np.linspace(0.0, 5.0, n)
        y = exp_np(x, 2.5, 1.3, 0.5) + 0.05 * rng.standard_normal(n)
        return x, y, np.array([1.0, 1.0, 0.0]), exponential_decay, exp_np, exp_jac
    x = np.linspace(-6.0, 6.0, n)
    y = gauss3_np(x, *GAUSS_TRUTH) + 0.05 * rng.standard_normal(n)
    return x, y, GAUSS_START, gaussian_peaks, gauss3_np, gauss3_jac


def timed(fn, repeat):
    t = time.perf_counter()
    first = fn()
    t_first = time.perf_counter() - t
    warm, out = np.inf, first
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        warm = min(warm, time.perf_counter() - t)
    return t_first, warm, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cases = [("exp", int(s)) for s in args.sizes] + [("gauss9", int(1e6))]
    rows = []
    for name, n in cases:
        x, y, p0, f_jax, f_np, jac = problem(name, n)
        h_first, h_warm, res = timed(lambda: hpcfit.curve_fit(f_jax, x, y, p0=p0, verbose=0), args.repeat)
        c_first, c_warm, (c_popt, _) = timed(lambda: scipy_curve_fit(f_np, x, y, p0=p0, jac=jac), args.repeat)

        def lsq():
            return least_squares(lambda p: f_np(x, *p) - y, p0, jac=lambda p: jac(x, *p))
        l_first, l_warm, lres = timed(lsq, args.repeat)
        agree = np.max(np.abs(res.popt - c_popt) / np.abs(c_popt))
        rows.append((name, n, res, h_first, h_warm, c_warm, l_warm, lres, agree))
        print(f"{name} n={n:.0e}: hpcfit first {h_first:.3f}s warm {h_warm:.3f}s "
              f"({res.njev} J + {res.nfev - res.njev} cost passes); curve_fit {c_warm:.3f}s; "
              f"least_squares {l_warm:.3f}s (nfev {lres.nfev}, njev {lres.njev}); max |Δpopt|/popt {agree:.1e}",
              flush=True)

    print("\n| problem | n | hpcfit first call s | hpcfit warm s | J passes | cost passes | J pass points/s "
          "| cost pass points/s | curve_fit (lm) s | least_squares (trf) s | ratio hpcfit/curve_fit "
          "| ratio hpcfit/least_squares | max rel. popt diff |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, n, res, h_first, h_warm, c_warm, l_warm, lres, agree in rows:
        print(f"| {name} | {n:.0e} | {h_first:.3f} | {h_warm:.3f} | {res.njev} | {res.nfev - res.njev} | "
              f"{res.info['jacobian_points_per_second']:.3g} | {res.info['cost_points_per_second']:.3g} | "
              f"{c_warm:.3f} | {l_warm:.3f} | {h_warm / c_warm:.3f} | {h_warm / l_warm:.3f} | {agree:.1e} |")


if __name__ == "__main__":
    main()
