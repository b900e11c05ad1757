"""XPCS laminar flow, individual scaling, 23 angles (7 + 46 = 53 parameters).

1. Streaming throughput from HDF5 at 10⁷ points: Jacobian-pass and cost-pass points/s and peak
   RSS per rank, each configuration in a fresh process (1 rank, then 2 ranks under mpiexec).
2. Time to solution at 10⁶ points, side by side with scipy.optimize.least_squares given the exact
   Jacobian from JAX (jit-compiled jacfwd of the same model), same start and bounds.

Run (never with more ranks than cores):
    .venv/bin/python benchmarks/bench_xpcs.py [--points 1e7] [--solve-points 1e6]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

N_PHI = 23
PHI = np.linspace(-170.0, 170.0, N_PHI)
DT, Q, L = 0.5, 0.0054, 2e6
TRUTH = [1500.0, -0.25, 20.0, 3e-4, 0.35, 1e-5, 5.0]
START = [1000.0, 0.0, 0.0, 1e-3, 0.0, 0.0, 0.0]
CONTRAST = 0.2 + 0.005 * np.arange(N_PHI)
OFFSET = 1.0 + 0.0005 * np.arange(N_PHI)
NOISE = 0.002


def n_t_for(points: float) -> int:
    """Frames so that N_PHI · n_t(n_t − 1)/2 ≈ points."""
    return int(round(0.5 + np.sqrt(0.25 + 2.0 * points / N_PHI)))


def simulate_pairs(n_t: int, seed: int = 0) -> np.ndarray:
    """y at the pairs t1 < t2 of every angle (angle, t1, t2 order), model + noise, one angle at a time."""
    from hpcfit.models.xpcs import two_time_c2

    t1, t2 = np.triu_indices(n_t, 1)
    out = np.empty(N_PHI * t1.size)
    for a in range(N_PHI):
        c2 = np.asarray(two_time_c2(TRUTH, phi=PHI[a:a + 1], n_t=n_t, dt=DT, q=Q, L=L, contrast=CONTRAST[a],
                                    offset=OFFSET[a]))[0]
        rng = np.random.default_rng([seed, a])
        out[a * t1.size:(a + 1) * t1.size] = c2[t1, t2] + NOISE * rng.standard_normal(t1.size)
    return out


def model_and_start(n_t: int):
    from hpcfit.models.xpcs import TwoTimeModel

    model = TwoTimeModel(tuple(PHI), n_t, DT, Q, L, mode="laminar_flow", scaling="individual")
    p0 = np.array(START + [0.25] * N_PHI + [1.0] * N_PHI)
    from hpcfit.xpcs.fit import DEFAULT_BOUNDS

    box = [DEFAULT_BOUNDS[n.split("_")[0] if n.startswith(("contrast", "offset")) else n]
           for n in model.parameter_names]
    return model, p0, (np.array([b[0] for b in box]), np.array([b[1] for b in box]))


def throughput_worker(path: str, n_t: int, passes: int) -> None:
    """In its own process: stream the file, time Jacobian and cost passes, report peak RSS."""
    import resource

    import hpcfit
    from hpcfit import PairGrid
    from hpcfit.data import HDF5Source

    comm = None
    try:
        from mpi4py import MPI
        comm = MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None
    except ImportError:
        pass
    model, p0, bounds = model_and_start(n_t)
    source = HDF5Source(path, y="y", grid=PairGrid(N_PHI, n_t, "upper"))
    t = time.perf_counter()
    res = hpcfit.fit(model, source, p0, bounds=bounds, comm=comm, verbose=0, max_iterations=passes)
    wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB → MiB on Linux
    rank = 0 if comm is None else comm.Get_rank()
    rss_all = [rss] if comm is None else comm.gather(rss)
    if rank == 0:
        print(json.dumps({"ranks": 1 if comm is None else comm.Get_size(), "points": res.n_points, "wall": wall,
                          "njev": res.njev, "ncost": res.nfev - res.njev,
                          "jac_pps": res.info["jacobian_points_per_second"],
                          "cost_pps": res.info["cost_points_per_second"], "chunk": res.info["chunk_size"],
                          "compile": res.compile_counts, "rss_mib": rss_all}))


def throughput(points: float, passes: int) -> list[dict]:
    import h5py

    n_t = n_t_for(points)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "xpcs-stream.h5")
        y = simulate_pairs(n_t)
        with h5py.File(path, "w") as f:
            f.create_dataset("y", data=y, chunks=(1 << 16,))
        del y
        mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        for ranks in (1, 2):
            cmd = [sys.executable, __file__, "--worker", path, str(n_t), str(passes)]
            if ranks > 1:
                cmd = [mpiexec, "-n", str(ranks), sys.executable, "-m", "mpi4py", __file__, "--worker", path,
                       str(n_t), str(passes)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    return rows


def time_to_solution(points: float) -> dict:
    import jax
    import jax.numpy as jnp
    from scipy.optimize import least_squares

    import hpcfit
    from hpcfit import PairGrid
    from hpcfit.data import ArraySource

    n_t = n_t_for(points)
    y = simulate_pairs(n_t, seed=1)
    model, p0, bounds = model_and_start(n_t)
    t1, t2 = np.triu_indices(n_t, 1)
    x = jnp.asarray(np.stack([np.repeat(np.arange(N_PHI), t1.size), np.tile(t1, N_PHI), np.tile(t2, N_PHI)]),
                    dtype=jnp.float64)
    residual = jax.jit(lambda p: model(x, *p) - y)
    jacobian = jax.jit(jax.jacfwd(lambda p: model(x, *p) - y))

    def scipy_fit():
        return least_squares(lambda p: np.asarray(residual(jnp.asarray(p))), p0,
                             jac=lambda p: np.asarray(jacobian(jnp.asarray(p))), bounds=bounds, method="trf")

    def hpcfit_fit():
        return hpcfit.fit(model, ArraySource(None, y, grid=PairGrid(N_PHI, n_t, "upper")), p0, bounds=bounds,
                          verbose=0)

    out = {"points": int(y.size), "n_t": n_t, "params": int(p0.size)}
    for name, run in (("hpcfit", hpcfit_fit), ("scipy", scipy_fit)):
        t = time.perf_counter()
        res = run()
        first = time.perf_counter() - t
        t = time.perf_counter()
        res = run()
        warm = time.perf_counter() - t
        cost = float(res.cost)
        out[name] = {"first": first, "warm": warm, "cost": cost,
                     "iterations": int(res.n_iterations if name == "hpcfit" else res.njev),
                     "evaluations": int(res.nfev), "success": bool(res.success)}
        if name == "hpcfit":
            out[name]["popt"] = res.popt
        else:
            out["max_rel_popt_diff"] = float(np.max(np.abs(out["hpcfit"]["popt"] - res.x) / np.abs(res.x)))
        print(name, {k: v for k, v in out[name].items() if k != "popt"}, flush=True)
    out["hpcfit"].pop("popt")
    out["ratio_warm"] = out["hpcfit"]["warm"] / out["scipy"]["warm"]
    out["ratio_first"] = out["hpcfit"]["first"] / out["scipy"]["first"]
    return out


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        throughput_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=float, default=1e7)
    ap.add_argument("--solve-points", type=float, default=1e6)
    ap.add_argument("--passes", type=int, default=2, help="accepted iterations in the throughput runs")
    args = ap.parse_args()
    rows = throughput(args.points, args.passes)
    print("\n| ranks | points | chunk | J passes | cost passes | J pass points/s | cost pass points/s "
          "| J points/s per rank | peak RSS per rank (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['ranks']} | {r['points']:.3g} | {r['chunk']} | {r['njev']} | {r['ncost']} | {r['jac_pps']:.3g} | "
              f"{r['cost_pps']:.3g} | {r['jac_pps'] / r['ranks']:.3g} | {', '.join(f'{m:.0f}' for m in r['rss_mib'])} |")
    sol = time_to_solution(args.solve_points)
    print(f"\n| points | params | hpcfit first s | hpcfit warm s | hpcfit iterations | scipy first s | scipy warm s "
          f"| scipy njev | ratio warm | final cost hpcfit / scipy | max rel. popt diff |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    h, s = sol["hpcfit"], sol["scipy"]
    print(f"| {sol['points']:.3g} | {sol['params']} | {h['first']:.2f} | {h['warm']:.2f} | {h['iterations']} | "
          f"{s['first']:.2f} | {s['warm']:.2f} | {s['iterations']} | {sol['ratio_warm']:.3f} | "
          f"{h['cost']:.6g} / {s['cost']:.6g} | {sol['max_rel_popt_diff']:.1e} |")


if __name__ == "__main__":
    main()
