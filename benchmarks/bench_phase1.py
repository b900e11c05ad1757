"""Phase 1's price (issue 18, item 7): the default method (phase 1, then LM) against method="gn"
side by side, on the real APS 8-ID-E maps and on the shipped example, and phase 1's share of the
10⁸-point XPCS fit on 1 and 2 ranks.

- Real maps: the two 300×300 ROIs of ../shared/data/real, each fitted on its own (one angle; no q,
  φ or dt recorded: static mode, assumed q = 0.01 Å⁻¹, dt = 1 s, as bench_block_sparse_defaults).
- Shipped example: examples/xpcs_laminar_flow.py's data (8 angles × 300 frames, laminar flow,
  individual scaling), fitted from its beamline file from the default start.
- Each (case, method) is timed twice: the first call in a fresh process (compilation included, what
  one job pays; the median of --first-calls processes) and warm (best of --repeat calls after it, methods alternating in one process).
  Printed: final cost of each (equal, or the default lower), the wall time ratio default / gn,
  phase 1's seconds and what it ran.
- Random starts (--random): default against gn on bench_block_sparse_defaults' simulated set, which
  phase 1's rules were not tuned on: never worse?
- 10⁸ points: benchmarks/bench_xpcs_scale.py's fit (25 angles, 57 parameters, APS-U float32 maps
  streamed directly), default method, a fresh process per rank count; phase 1's seconds and share.

Run (one timing job at a time; never more ranks than cores):
    .venv/bin/python benchmarks/bench_phase1.py [--repeat 3] [--first-calls 3] [--workdir DIR] [--random 6] [--scale 1e8] [--ranks 1 2]
    .venv/bin/python benchmarks/bench_phase1.py --no-scale          # real maps and the example only
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REAL = os.path.join(HERE, "..", "..", "shared", "data", "real")
MAPS = {"M115": "8IDE_A073M115_ttc_blockavg300.txt", "M144": "8IDE_A073M144_ttc_blockavg300.txt"}
EXAMPLE = dict(layout="aps-u", n_phi=8, n_t=300, mode="laminar_flow", dt=0.5, q=0.0054, L=2e6,
               params=[1500.0, -0.25, 20.0, 3e-4, 0.35, 1e-5, 5.0], contrast=0.25, offset=1.0, noise=0.003, seed=1,
               phi=[-170 + 45 * i for i in range(8)])


def case_data(case: str, workdir: str):
    """(data, fit keywords) of a case: "real:M115", "real:M144" or "example"."""
    import hpcfit.xpcs as xpcs
    from hpcfit.xpcs.load import TwoTimeData

    if case.startswith("real:"):
        c2 = np.loadtxt(os.path.join(REAL, MAPS[case[5:]]))[None]
        return (TwoTimeData(c2=c2, phi=np.array([0.0]), q=0.01, dt=1.0, frames=(1, c2.shape[1]), path=REAL,
                            layout="real text maps", source_stamp=(0, 0)), {"mode": "static"})
    raw = os.path.join(workdir, "hpcfit-example-aps-u.h5")
    if not os.path.exists(raw):
        xpcs.simulate(raw, **EXAMPLE)
    return xpcs.beamline(raw, q=EXAMPLE["q"], dt=EXAMPLE["dt"]), {"mode": "laminar_flow", "L": EXAMPLE["L"]}


def one_fit(data, kw, method: str) -> dict:
    from hpcfit.xpcs import fit

    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = fit(data, method=method, verbose=0, **kw)
    wall = time.perf_counter() - t
    ran = [] if not r.explore.ran else [c["origin"] for c in r.explore.candidates]
    dropped = sum(c["status"] == "DROPPED" for c in (r.explore.candidates if r.explore.ran else ()))
    return {"wall": wall, "cost": r.cost, "phase1": r.timings.get("phase1", 0.0), "phase2": r.timings["phase2"],
            "chosen": r.explore.chosen, "candidates": len(ran), "dropped": int(dropped), "adam": bool(r.warmup.ran),
            "njev": r.njev, "ncost": r.nfev - r.njev, "trustworthy": bool(r.trustworthy),
            "compiles": {k: v for k, v in r.compile_counts.items() if v}}


def worker(case: str, method: str, workdir: str) -> None:
    """One fresh process: one fit, compilation included; one JSON line."""
    data, kw = case_data(case, workdir)
    print(json.dumps(one_fit(data, kw, method)), flush=True)


def first_call(case: str, method: str, workdir: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", case, method, "--workdir", workdir],
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stdout + out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def first_calls(case: str, workdir: str, count: int) -> dict:
    """Per method, the fresh-process call of median wall time among ``count``, the methods
    alternating which goes first (a first call varies by ±30 % on this machine)."""
    runs = {"gn": [], "hybrid": []}
    for k in range(count):
        for method in ("gn", "hybrid") if k % 2 == 0 else ("hybrid", "gn"):
            runs[method].append(first_call(case, method, workdir))
    return {m: sorted(r, key=lambda v: v["wall"])[(len(r) - 1) // 2] for m, r in runs.items()}


def warm(case: str, workdir: str, repeat: int) -> dict:
    """Best of ``repeat`` calls per method after a first one, the methods alternating."""
    data, kw = case_data(case, workdir)
    best = {}
    for method in ("gn", "hybrid"):
        one_fit(data, kw, method)
    for _ in range(repeat):
        for method in ("gn", "hybrid"):
            r = one_fit(data, kw, method)
            if method not in best or r["wall"] < best[method]["wall"]:
                best[method] = r
    return best


def describe(r: dict) -> str:
    if r["candidates"] == 0:
        return "-"
    return (f"{r['candidates']} candidates ({r['dropped']} dropped){', Adam' if r['adam'] else ''}, "
            f"chose {r['chosen']}")


def random_rows(count: int) -> list[str]:
    """Default against gn from random starts on a set phase 1 was not tuned on (bench_block_sparse_defaults':
    12 angles, paper form, scaling individual/shared alternating); in this process, after one call of each."""
    sys.path.insert(0, HERE)
    from bench_block_sparse_defaults import simulated

    data = simulated(seed=21)
    rng = np.random.default_rng(5)
    rows = []
    for k in range(count):
        p0 = [10 ** rng.uniform(1, 4), rng.uniform(-1, 1), rng.uniform(-50, 50), 10 ** rng.uniform(-5, -2),
              rng.uniform(-1, 1), rng.uniform(-1e-4, 1e-4), rng.uniform(-90, 90)]
        kw = dict(mode="laminar_flow", L=1.5e6, form="paper", scaling="individual" if k % 2 == 0 else "shared", p0=p0)
        g, h = one_fit(data, kw, "gn"), one_fit(data, kw, "hybrid")
        rows.append(f"| random start {k} ({kw['scaling']}) | {g['cost']:.10g} | {h['cost']:.10g} | "
                    f"{'yes' if h['cost'] <= g['cost'] * (1 + 1e-6) else 'NO'} | {g['wall']:.2f} | {h['wall']:.2f} | "
                    f"{describe(h)} |")
        print(rows[-1], flush=True)
    return rows


def scale_rows(points: float, ranks: list[int], data_dir: str) -> list[str]:
    sys.path.insert(0, HERE)
    import bench_xpcs_scale as scale

    os.makedirs(data_dir, exist_ok=True)
    path = scale.data_file(data_dir, points)
    rows = []
    for n in ranks:
        r = scale.run(path, n)
        rows.append(f"| {points:.0e} | {n} | {r['wall']:.1f} | {r['phase1']:.1f} | {r['phase1'] / r['wall']:.0%} | "
                    f"{r['phase2']:.1f} | {r['njev']} + {r['ncost']} | {r['cost']:.6f} | {r['max_sigma']:.2f} | "
                    f"{r['popt_sha']} |")
        print(rows[-1], flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", nargs=2, metavar=("CASE", "METHOD"))
    ap.add_argument("--workdir", default=None, help="where the example's beamline file is written")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--first-calls", type=int, default=3, help="fresh processes per method (median)")
    ap.add_argument("--cases", nargs="*", default=["real:M115", "real:M144", "example"])
    ap.add_argument("--random", type=int, default=6, help="random starts on a simulated set (0: none)")
    ap.add_argument("--no-scale", action="store_true")
    ap.add_argument("--scale", type=float, default=1e8, help="points of the scale fit")
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--data", default=os.path.join(HERE, ".data"), help="bench_xpcs_scale's data folder")
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker, args.workdir)
        return
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        print("| case | timing | gn cost | default cost | gn s | default s | default / gn | default phase 1 s | "
              "phase 1 ran |")
        print("|---|---|---|---|---|---|---|---|---|")
        for case in args.cases:
            if case.startswith("real:") and not os.path.isdir(REAL):
                print(f"| {case} skipped: {REAL} is absent | | | | | | | | |")
                continue
            first = first_calls(case, tmp, args.first_calls)
            best = warm(case, tmp, args.repeat)
            for label, runs in ((f"first call, median of {args.first_calls}", first),
                                (f"warm, best of {args.repeat}", best)):
                g, h = runs["gn"], runs["hybrid"]
                print(f"| {case} | {label} | {g['cost']:.10g} | {h['cost']:.10g} | {g['wall']:.2f} | {h['wall']:.2f} | "
                      f"{h['wall'] / g['wall']:.2f} | {h['phase1']:.2f} | {describe(h)} |", flush=True)
    if args.random:
        print()
        print("| case | gn cost | default cost | default ≤ gn | gn s | default s | phase 1 ran |")
        print("|---|---|---|---|---|---|---|")
        random_rows(args.random)
    if not args.no_scale:
        print()
        print("| points | ranks | time to solution s | phase 1 s | phase 1 share | phase 2 s | J + cost passes | cost | "
              "max abs(popt-truth)/perr | popt sha |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        scale_rows(args.scale, args.ranks, args.data)


if __name__ == "__main__":
    main()
