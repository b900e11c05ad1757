"""Cost of checkpointing: the same fit with a checkpoint after every iteration vs none.

Problems: y = a·exp(−b·x) + c and 3 Gaussian peaks (9 parameters), at 10⁷ points by default, in one
process (the serial writer on its background thread). Both variants are run alternately, after a
first untimed call that compiles the kernels; reported are the best of --repeat wall times, the
number of checkpoints written, and the ratio (target: under 1.02). The checkpoint folder is a
temporary folder on the same disk as /tmp unless --folder says otherwise.

Run (serial; never time with more ranks than cores):
    .venv/bin/python benchmarks/bench_checkpoint.py [--points 1e7] [--repeat 3] [--method gn|hybrid]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import hpcfit
from hpcfit.models import exponential_decay, gaussian_peaks

GAUSS_TRUTH = np.array([3.0, -2.0, 0.6, 1.5, 0.5, 0.9, 2.2, 3.1, 0.4])
GAUSS_START = np.array([2.0, -1.5, 1.0, 1.0, 0.8, 1.2, 1.5, 2.6, 0.8])


def problem(name: str, n: int):
    rng = np.random.default_rng(7)
    if name == "exp":
        x = np.linspace(0.0, 5.0, n)
        return x, 2.5 * np.exp(-1.3 * x) + 0.5 + 0.05 * rng.standard_normal(n), [1.0, 1.0, 0.0], exponential_decay
    x = np.linspace(-6.0, 6.0, n)
    y = np.asarray(gaussian_peaks(x, *GAUSS_TRUTH)) + 0.05 * rng.standard_normal(n)
    return x, y, GAUSS_START, gaussian_peaks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=float, default=1e7)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--method", default="gn", choices=("gn", "hybrid"))
    ap.add_argument("--problems", nargs="+", default=["exp", "gauss3"])
    ap.add_argument("--folder", default=None, help="where to write checkpoints (default: a temporary folder)")
    args = ap.parse_args()
    n = int(args.points)
    folder = Path(args.folder or tempfile.mkdtemp(prefix="hpcfit-bench-"))
    print(f"| problem | points | method | iterations | checkpoints | never (s) | every iteration (s) | ratio |"
          f" points/s (every) |\n|---|---|---|---|---|---|---|---|---|")
    for name in args.problems:
        x, y, p0, model = problem(name, n)
        path = folder / f"{name}.h5"

        def run(with_checkpoints: bool):
            kw = dict(checkpoint=path, checkpoint_every=1) if with_checkpoints else {}
            t = time.perf_counter()
            res = hpcfit.curve_fit(model, x, y, p0=p0, method=args.method, verbose=0, **kw)
            return time.perf_counter() - t, res

        run(False)                                  # compile
        best = {False: np.inf, True: np.inf}
        for _ in range(args.repeat):
            for variant in (False, True):
                seconds, res = run(variant)
                best[variant] = min(best[variant], seconds)
                if variant:
                    written = res.info["checkpoint"]["written"]
                    iterations = res.n_iterations
        ratio = best[True] / best[False]
        passes = res.nfev
        print(f"| {name} | {n:.0e} | {args.method} | {iterations} | {written} | {best[False]:.3f} | "
              f"{best[True]:.3f} | {ratio:.3f} | {n * passes / best[True]:.3g} |", flush=True)


if __name__ == "__main__":
    main()
