"""The new default (block-sparse Jacobian passes for XPCS) against the simpler method it wraps
(dense passes, ``parameter_groups="off"``), on cases the feature was not tuned on: the real APS
8-ID-E two-time maps of ../shared/data/real (two ROIs as two groups; the files record no q, φ or
dt, so static mode with assumed q = 0.01 Å⁻¹, dt = 1 s), the shipped example's data, and random
starts on a fresh simulated set (12 angles, paper form, shared and individual scaling).

Each pair of fits is the same call (default method: phase 1 with its scan, then LM) except for
``parameter_groups``. Printed: final cost of each, whether each converged and is trustworthy, the
largest |Δpopt|/perr between them, and the wall times.

Run:  .venv/bin/python benchmarks/bench_block_sparse_defaults.py [--starts 6]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

REAL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "real")


def real_maps():
    """The two real 300×300 maps (symmetrised, block-averaged at the beamline) as one TwoTimeData."""
    from hpcfit.xpcs.load import TwoTimeData

    names = ["8IDE_A073M115_ttc_blockavg300.txt", "8IDE_A073M144_ttc_blockavg300.txt"]
    c2 = np.stack([np.loadtxt(os.path.join(REAL, n)) for n in names])
    return TwoTimeData(c2=c2, phi=np.array([0.0, 90.0]), q=0.01, dt=1.0, frames=(1, c2.shape[1]), path=REAL,
                       layout="real text maps", source_stamp=(0, 0))


def simulated(seed: int, n_phi: int = 12, n_t: int = 150, form: str = "paper"):
    from hpcfit.models.xpcs import two_time_c2
    from hpcfit.xpcs.load import TwoTimeData

    phi = np.linspace(-160.0, 170.0, n_phi)
    truth = [900.0, 0.1, 5.0, 5e-4, 0.2, 2e-5, -12.0]
    c2 = np.asarray(two_time_c2(truth, phi=phi, n_t=n_t, dt=0.4, q=0.006, L=1.5e6, contrast=0.3, offset=1.0,
                                form=form))
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(c2.shape)
    c2 = c2 + 0.003 / np.sqrt(2.0) * (z + np.swapaxes(z, -1, -2))
    return TwoTimeData(c2=c2, phi=phi, q=0.006, dt=0.4, frames=(1, n_t), path="<simulated>", layout="simulated",
                       source_stamp=(0, 0))


def example_data(tmp: str):
    import hpcfit.xpcs as xpcs

    raw = os.path.join(tmp, "example.h5")
    xpcs.simulate(raw, layout="aps-u", n_phi=8, n_t=300, mode="laminar_flow", dt=0.5, q=0.0054, L=2e6,
                  params=[1500.0, -0.25, 20.0, 3e-4, 0.35, 1e-5, 5.0], contrast=0.25, offset=1.0, noise=0.003,
                  seed=1, phi=[-170 + 45 * i for i in range(8)])
    return xpcs.beamline(raw, q=0.0054, dt=0.5)


def pair(name: str, data, **kw) -> str:
    from hpcfit.xpcs import fit

    out = {}
    for groups in ("auto", "off"):
        t = time.perf_counter()
        res = fit(data, verbose=0, parameter_groups=groups, **kw)
        out[groups] = (res, time.perf_counter() - t)
    (a, ta), (b, tb) = out["auto"], out["off"]
    both = np.maximum(np.minimum(a.perr, b.perr), 1e-300)
    diff = float(np.max(np.abs(a.popt - b.popt) / both))
    return (f"| {name} | {a.cost:.10g} | {b.cost:.10g} | {a.cost / b.cost - 1:+.1e} | {a.success}/{a.trustworthy} | "
            f"{b.success}/{b.trustworthy} | {diff:.2g} | {ta:.1f} | {tb:.1f} |")


def main():
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=6)
    args = ap.parse_args()
    print("| case | cost block-sparse | cost dense | relative difference | block-sparse success/trustworthy | "
          "dense success/trustworthy | max abs(Δpopt)/perr | block-sparse s | dense s |")
    print("|---|---|---|---|---|---|---|---|---|")
    if os.path.isdir(REAL):
        print(pair("real 8-ID-E maps, static, individual", real_maps(), mode="static"), flush=True)
        print(pair("real 8-ID-E maps, static, shared", real_maps(), mode="static", scaling="shared"), flush=True)
    else:
        print(f"| real maps skipped: {REAL} is absent | | | | | | | | |")
    with tempfile.TemporaryDirectory() as tmp:
        print(pair("shipped example (8 × 300, laminar, individual), default start", example_data(tmp),
                   mode="laminar_flow", L=2e6), flush=True)
    data = simulated(seed=21)
    rng = np.random.default_rng(5)
    for k in range(args.starts):
        p0 = [10 ** rng.uniform(1, 4), rng.uniform(-1, 1), rng.uniform(-50, 50), 10 ** rng.uniform(-5, -2),
              rng.uniform(-1, 1), rng.uniform(-1e-4, 1e-4), rng.uniform(-90, 90)]
        scaling = "individual" if k % 2 == 0 else "shared"
        print(pair(f"random start {k} (12 angles, paper form, {scaling})", data, mode="laminar_flow", L=1.5e6,
                   form="paper", scaling=scaling, p0=p0), flush=True)


if __name__ == "__main__":
    main()
