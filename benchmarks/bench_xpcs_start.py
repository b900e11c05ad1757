"""XPCS from the default start: does the default method reach the true basin where Gauss–Newton
from the same start does not? The issue's 23-angle laminar-flow set (10⁷ points) by default.

    mpiexec -n 2 python -m mpi4py benchmarks/bench_xpcs_start.py [--workdir DIR] [--n-phi 23]
        [--n-t 933] [--methods hybrid gn truth]

Writes the simulated stream file once (DIR/xpcs-start-PHIxT.h5, reused), then fits it with each
method from hpcfit.xpcs.fit's default start ("truth": gn started at the true parameters, the
reference basin), and prints cost, passes, wall time, phase 1's candidates and the physical
parameters with their pulls (fit − truth)/σ.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from mpi4py import MPI

import hpcfit.xpcs as xpcs

TRUTH = [1500.0, -0.25, 20.0, 3e-4, 0.35, 1e-5, 5.0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=tempfile.gettempdir())
    ap.add_argument("--n-phi", type=int, default=23)
    ap.add_argument("--n-t", type=int, default=933)
    ap.add_argument("--methods", nargs="+", default=["hybrid", "gn"], choices=["hybrid", "gn", "truth"])
    args = ap.parse_args()
    world = MPI.COMM_WORLD
    comm = world if world.Get_size() > 1 else None
    root = world.Get_rank() == 0
    path = os.path.join(args.workdir, f"xpcs-start-{args.n_phi}x{args.n_t}.h5")
    if not os.path.exists(path):
        xpcs.simulate(path, layout="stream", n_phi=args.n_phi, n_t=args.n_t, mode="laminar_flow", dt=0.5, q=0.0054,
                      L=2e6, params=TRUTH, contrast=0.25, offset=1.0, noise=0.003, seed=1, comm=comm)
    for method in args.methods:
        t0 = time.perf_counter()
        kw = {"method": "gn", "p0": TRUTH} if method == "truth" else {"method": method}
        r = xpcs.fit(path, mode="laminar_flow", L=2e6, comm=comm, verbose=0, **kw)
        if root:
            pulls = (r.popt[:7] - TRUTH) / r.perr[:7]
            print(f"{method:6s} cost {r.cost:.6f}  {r.njev} J + {r.nfev - r.njev} cost passes  "
                  f"{time.perf_counter() - t0:.1f} s (phase 1 {r.timings['phase1']:.1f} s)  "
                  f"trustworthy {r.trustworthy}")
            if r.explore.ran:
                print("       phase 1 chose", r.explore.chosen, "from",
                      ", ".join(f"{c['origin']} {c['cost']:.6g}" for c in r.explore.candidates))
            print("       " + ", ".join(f"{n} {v:.6g} ± {e:.2g} ({p:+.1f}σ)"
                                      for n, v, e, p in zip(r.names[:7], r.popt[:7], r.perr[:7], pulls)))


if __name__ == "__main__":
    main()
