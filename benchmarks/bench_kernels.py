"""Design measurements for the chunk kernels (issue: engine, "Kernels").

1. Jacobian mode: forward-mode ``jacfwd`` of the vectorised model vs per-point ``vmap(jacrev)``.
2. Chunk loop: a Python loop dispatching one jitted kernel per chunk (what hpcfit does, and what
   streaming from disk needs) vs one jit that loops over stacked chunks with ``lax.map`` (a scan),
   compiled once: does the scan's reported 10x slowdown hold when it does not retrace?

Run:  .venv/bin/python benchmarks/bench_kernels.py [--n 1000000]
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from hpcfit.kernels.chunk import jacobian_kernel
from hpcfit.models import exponential_decay, gaussian_peaks


def _time(fn, repeat=5):
    fn()  # compile / warm
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _chunks(x, y, chunk):
    n_chunks = x.size // chunk
    return (x[: n_chunks * chunk].reshape(n_chunks, chunk), y[: n_chunks * chunk].reshape(n_chunks, chunk))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    args = ap.parse_args()
    n = args.n
    cases = [("exp (p=3)", exponential_decay, np.array([2.5, 1.3, 0.5]), np.linspace(0, 5, n), 65536),
             ("3 gaussians (p=9)", gaussian_peaks, np.array([3.0, -2.0, 0.6, 1.5, 0.5, 0.9, 2.2, 3.1, 0.4]),
              np.linspace(-6, 6, n), 32768)]
    print(f"n = {n} points, jax {jax.__version__}, devices {jax.devices()}")
    print("\n## Jacobian mode (one full Jacobian pass, Python chunk loop)")
    print(f"| model | chunk | forward (jacfwd) s | per-point vmap(jacrev) s | ratio rev/fwd |")
    print("|---|---|---|---|---|")
    for name, model, theta, x, chunk in cases:
        y = np.asarray(model(x, *theta))
        xs, ys = _chunks(x, y, chunk)
        u, off, sc = jnp.asarray(theta), jnp.zeros_like(theta), jnp.ones_like(theta)
        w, nv, fs = jnp.ones(chunk), jnp.asarray(chunk), jnp.asarray(1.0)
        dev = [(jnp.asarray(a), jnp.asarray(b)) for a, b in zip(xs, ys)]
        times = {}
        for mode in ("forward", "per_point_reverse"):
            k = jacobian_kernel(model, "linear", mode)
            times[mode] = _time(lambda: [np.asarray(k(u, off, sc, a, b, w, nv, fs)) for a, b in dev])
        print(f"| {name} | {chunk} | {times['forward']:.4f} | {times['per_point_reverse']:.4f} | "
              f"{times['per_point_reverse'] / times['forward']:.2f} |")

    print("\n## Chunk loop: Python loop of jitted calls vs lax.map (scan) inside one jit")
    print("| model | chunk | chunks | python loop s | scan s | ratio scan/loop | scan compiles |")
    print("|---|---|---|---|---|---|---|")
    for name, model, theta, x, chunk in cases:
        y = np.asarray(model(x, *theta))
        for c in (chunk // 8, chunk):
            xs, ys = _chunks(x, y, c)
            u, off, sc = jnp.asarray(theta), jnp.zeros_like(theta), jnp.ones_like(theta)
            w, nv, fs = jnp.ones(c), jnp.asarray(c), jnp.asarray(1.0)
            k = jacobian_kernel(model, "linear", "forward")
            dev = [(jnp.asarray(a), jnp.asarray(b)) for a, b in zip(xs, ys)]
            t_loop = _time(lambda: [np.asarray(k(u, off, sc, a, b, w, nv, fs)) for a, b in dev])
            X, Y = jnp.asarray(xs), jnp.asarray(ys)
            traces = {"n": 0}

            @jax.jit
            def scanned(u, X, Y):
                traces["n"] += 1
                return jax.lax.map(lambda xy: k(u, off, sc, xy[0], xy[1], w, nv, fs), (X, Y))

            t_scan = _time(lambda: np.asarray(scanned(u, X, Y)))
            print(f"| {name} | {c} | {xs.shape[0]} | {t_loop:.4f} | {t_scan:.4f} | {t_scan / t_loop:.2f} | "
                  f"{traces['n']} |")


if __name__ == "__main__":
    main()
