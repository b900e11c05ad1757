"""Whole-fit warm time against the chunk size (how the default chunk size was chosen).

Run:  .venv/bin/python benchmarks/bench_chunk_size.py
"""
import time

import numpy as np

import hpcfit
from hpcfit.demo import START, demo_data
from hpcfit.models import exponential_decay, gaussian_peaks


def warm_fit(f, x, y, p0, chunk_size, sigma=None):
    hpcfit.curve_fit(f, x, y, p0=p0, sigma=sigma, chunk_size=chunk_size, verbose=0)   # compile
    t = time.perf_counter()
    res = hpcfit.curve_fit(f, x, y, p0=p0, sigma=sigma, chunk_size=chunk_size, verbose=0)
    return time.perf_counter() - t, res


def main():
    rng = np.random.default_rng(0)
    n = 10**7
    x = np.linspace(0, 5, n)
    y = 2.5 * np.exp(-1.3 * x) + 0.5 + 0.05 * rng.standard_normal(n)
    print("| problem | chunk size | warm fit s | J pass points/s | cost pass points/s |")
    print("|---|---|---|---|---|")
    for cs in (1 << 14, 1 << 16, 1 << 18, 1 << 20):
        t, r = warm_fit(exponential_decay, x, y, [1.0, 1.0, 0.0], cs)
        print(f"| exp, 1e7 | {cs} | {t:.3f} | {r.info['jacobian_points_per_second']:.3g} | "
              f"{r.info['cost_points_per_second']:.3g} |", flush=True)
    x, y, s = demo_data(10**6)
    for cs in (1 << 12, 1 << 14, 1 << 15, 1 << 16, 1 << 18):
        t, r = warm_fit(gaussian_peaks, x, y, START, cs, sigma=s)
        print(f"| gauss9, 1e6 | {cs} | {t:.3f} | {r.info['jacobian_points_per_second']:.3g} | "
              f"{r.info['cost_points_per_second']:.3g} |", flush=True)


if __name__ == "__main__":
    main()
