"""XPCS pass throughput: block-sparse Jacobian passes against dense ones and the cost pass (issue 13).

Laminar flow on 23 angles (the points t1 < t2 of every angle), in memory on one process: each
configuration times warm passes only (compiled first), the best of ``--repeat``. Configurations:
scaling ``individual`` (7 + 46 = 53 parameters) and ``shared`` (9), each with dense Jacobian
passes (``parameter_groups=None``, what hpcfit did before) and block-sparse ones (the default).
Prints points/s per pass kind and the ratios the issue's acceptance names.

Run:  .venv/bin/python benchmarks/bench_xpcs_passes.py [--points 2e6] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_xpcs as xb  # noqa: E402
from hpcfit.kernels.evaluator import PassEvaluator  # noqa: E402


def pass_times(scaling: str, groups, y: np.ndarray, n_t: int, repeat: int, chunk_size: int | None) -> dict:
    """Best-of-``repeat`` warm Jacobian- and cost-pass seconds of one configuration."""
    from hpcfit.phases.setup import group_layout as _group_layout, kernel_width as _kernel_width
    from hpcfit.comm import Communicator
    from hpcfit import PairGrid
    from hpcfit.data import ArraySource
    from hpcfit.models.xpcs import TwoTimeModel
    from hpcfit.options import make_options

    model = TwoTimeModel(tuple(xb.PHI), n_t, xb.DT, xb.Q, xb.L, mode="laminar_flow", scaling=scaling)
    p = model.n_params
    scales = [] if scaling == "fixed" else list(xb.CONTRAST) + list(xb.OFFSET)
    if scaling == "shared":
        scales = [float(np.mean(xb.CONTRAST)), float(np.mean(xb.OFFSET))]
    theta = np.array(xb.START + scales)
    opts = make_options(parameter_groups=groups, chunk_size=chunk_size)
    with Communicator(None) as hc:
        local = ArraySource(None, y, grid=PairGrid(xb.N_PHI, n_t, "upper")).open(hc, opts.chunk_size_for(_kernel_width(model, p, opts)))
        layout = _group_layout(model, local, p, opts)
        ev = PassEvaluator(hc, local, model, "linear", 1.0, np.zeros(p), np.ones(p), "forward", 1.0, layout)
        out = {"p": p, "chunk": local.chunk_size, "block_sparse": layout is not None}
        for kind, run in (("jacobian", ev.jacobian_pass), ("cost", ev.cost_pass)):
            run(theta)                                    # compile, and cache the chunks on the device
            best = np.inf
            for _ in range(repeat):
                t = time.perf_counter()
                run(theta)
                best = min(best, time.perf_counter() - t)
            out[kind] = best
        ev.close()
    return out


def sample_pass_times(n_phi: int, n_t: int, repeat: int) -> dict:
    """Phase 1's sample Jacobian pass (32768 sampled points, one chunk spanning every angle):
    first call (compilation) and best warm time, block-sparse (segment sums) and dense."""
    from hpcfit.phases.explore import sample_groups as _sample_groups
    from hpcfit.comm import Communicator
    from hpcfit import PairGrid
    from hpcfit.data import ArraySource
    from hpcfit.data.sample import gather_sample, sample_chunks
    from hpcfit.groups import resolve_groups
    from hpcfit.kernels.coords import IndexedX
    from hpcfit.models.xpcs import TwoTimeModel

    model = TwoTimeModel(tuple(np.linspace(-170.0, 170.0, n_phi)), n_t, xb.DT, xb.Q, xb.L)
    grid = PairGrid(n_phi, n_t)
    p = model.n_params
    theta = np.array(xb.START + [0.2] * n_phi + [1.0] * n_phi)
    out = {"angles": n_phi, "p": p}
    with Communicator(None) as hc:
        local = ArraySource(None, np.full(grid.n_points, 1.1), grid=grid).open(hc, 32768)
        layout = resolve_groups(model.parameter_groups, p, local.n_points, grid, 32768)
        sample = gather_sample(hc, local, 32768, 0)
        chunks = sample_chunks(sample, 32768)
        for name, groups in (("block-sparse", _sample_groups(layout, sample, chunks)), ("dense", None)):
            ev = PassEvaluator(Communicator(None), chunks, IndexedX(model, grid), "linear", 1.0, np.zeros(p),
                               np.ones(p), groups=groups)
            t = time.perf_counter()
            ev.jacobian_pass(theta)
            first = time.perf_counter() - t
            best = np.inf
            for _ in range(repeat):
                t = time.perf_counter()
                ev.jacobian_pass(theta)
                best = min(best, time.perf_counter() - t)
            out[name] = (first, best)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=float, default=2e6)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--chunk-size", type=int, default=None)
    args = ap.parse_args()
    import jax

    n_t = xb.n_t_for(args.points)
    y = xb.simulate_pairs(n_t)
    n = y.size
    print(f"{n:.3g} points, 23 angles x {n_t} frames, jax {jax.__version__}, devices {jax.devices()}, "
          f"{os.cpu_count()} cores")
    rows = {}
    for scaling in ("individual", "shared"):
        for groups in (None, "auto"):
            r = pass_times(scaling, groups, y, n_t, args.repeat, args.chunk_size)
            rows[(scaling, r["block_sparse"])] = r
            print(r, flush=True)
    print("\n| scaling | p | Jacobian pass | chunk | J pass s | J points/s | cost pass s | cost points/s | J / cost |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (scaling, sparse), r in rows.items():
        print(f"| {scaling} | {r['p']} | {'block-sparse' if sparse else 'dense'} | {r['chunk']} | {r['jacobian']:.3f} | "
              f"{n / r['jacobian']:.3g} | {r['cost']:.3f} | {n / r['cost']:.3g} | {r['jacobian'] / r['cost']:.2f} |")
    ind, sha = rows[("individual", True)], rows[("shared", True)]
    print("\nPhase 1's sample Jacobian pass (32768 points, one chunk over every angle):")
    print("| angles | p | block-sparse first call s | block-sparse warm ms | dense first call s | dense warm ms |")
    print("|---|---|---|---|---|---|")
    for n_phi, frames in ((23, 300), (300, 60)):
        r = sample_pass_times(n_phi, frames, 10)
        print(f"| {n_phi} | {r['p']} | {r['block-sparse'][0]:.2f} | {r['block-sparse'][1] * 1e3:.1f} | "
              f"{r['dense'][0]:.2f} | {r['dense'][1] * 1e3:.1f} |")
    print(f"\nindividual, block-sparse: J pass / cost pass = {ind['jacobian'] / ind['cost']:.2f} (target <= 2.5); "
          f"J pass time individual / shared = {ind['jacobian'] / sha['jacobian']:.2f} (target <= 1.3); "
          f"speed-up over dense individual = {rows[('individual', False)]['jacobian'] / ind['jacobian']:.2f}x")


if __name__ == "__main__":
    main()
