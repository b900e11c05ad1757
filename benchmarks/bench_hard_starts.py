"""Hard starts: does phase 1 (method="hybrid", the default) rescue fits that Gauss–Newton alone
(method="gn") loses, is it never worse than gn from the same start, and what does it cost on
well-started ones?

For each case the data are simulated from known parameters with noise. The best known cost is the
lowest cost any run reached, including a Gauss–Newton fit started at the true parameters; a run
"reaches" it when its cost is within 1e-6 relative. The XPCS cases are the shipped example
(examples/xpcs_laminar_flow.py: 8 angles x 300 frames, individual scaling) and the issue's
"scaling shared" set (8 x 200, seed 4), fitted from hpcfit.xpcs.fit's default start. Also times
both methods on well-started problems (exp, and 3 Gaussian peaks with 9 parameters), warm calls,
with the passes over the full data each method made.

    python benchmarks/bench_hard_starts.py [--points 1e5] [--repeat 3] [--cases NAME ...]
                                           [--well-started 1e6 1e7] [--markdown]

Prints one table row per case (and a markdown table with --markdown) for docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np

import hpcfit


@dataclass
class Case:
    name: str
    what: str
    model: object
    truth: list
    p0: list
    x: np.ndarray
    noise: float
    bounds: tuple = (-np.inf, np.inf)
    options: dict = field(default_factory=dict)


def exp_decay(x, a, k, c):
    return a * jnp.exp(-k * x) + c


def two_exp(x, a1, k1, a2, k2):
    return a1 * jnp.exp(-k1 * x) + a2 * jnp.exp(-k2 * x)


def gauss_peaks(x, *p):
    out = 0.0
    for i in range(len(p) // 3):
        a, m, s = p[3 * i: 3 * i + 3]
        out = out + a * jnp.exp(-0.5 * ((x - m) / s) ** 2)
    return out


def eckerle(x, b1, b2, b3):          # NIST Eckerle4's model: a Gaussian line
    return b1 / b2 * jnp.exp(-0.5 * ((x - b3) / b2) ** 2)


def rat43(x, b1, b2, b3, b4):        # NIST Rat43's model: a generalised logistic
    return b1 / (1.0 + jnp.exp(b2 - b3 * x)) ** (1.0 / b4)


def mgh09(x, b1, b2, b3, b4):        # NIST MGH09 (Kowalik–Osborne): a rational function
    return b1 * (x * x + x * b2) / (x * x + x * b3 + b4)


def box_bod(x, b1, b2):              # NIST BoxBOD's model: saturating exponential
    return b1 * (1.0 - jnp.exp(-b2 * x))


def cases(n: int) -> list[Case]:
    u = np.linspace(0.0, 1.0, n)
    return [
        Case("exp-rate-100x-high", "a·e^(−kx)+c, k 100x too large", exp_decay, [2.5, 1.3, 0.5], [2.5, 130.0, 0.5],
             5 * u, 0.05),
        Case("exp-rate-100x-low", "a·e^(−kx)+c, k 100x too small", exp_decay, [2.5, 1.3, 0.5], [2.5, 0.013, 0.5],
             5 * u, 0.05),
        Case("two-exp-swapped", "a1·e^(−k1x)+a2·e^(−k2x), rates 30x off", two_exp, [1.0, 0.5, 2.0, 5.0],
             [1.0, 15.0, 2.0, 150.0], 5 * u, 0.02),
        Case("gauss2-centres-off", "2 Gaussian peaks, centres 4 widths off", gauss_peaks,
             [1.0, 3.0, 0.5, 0.7, 7.0, 0.6], [1.0, 5.0, 0.5, 0.7, 4.5, 0.6], 10 * u, 0.02),
        Case("gauss3-centres-off", "3 Gaussian peaks, centres 2-3 widths off", gauss_peaks,
             [1.0, 2.0, 0.4, 0.8, 5.0, 0.5, 0.6, 8.0, 0.4], [1.0, 3.2, 0.4, 0.8, 3.5, 0.5, 0.6, 6.8, 0.4],
             10 * u, 0.02),
        Case("eckerle-line", "Gaussian line b1/b2·N(b3, b2), NIST start 1", eckerle, [1.554, 4.089, 451.5],
             [1.0, 10.0, 500.0], 400 + 100 * u, 0.003),
        Case("rat43-logistic", "generalised logistic, NIST Rat43 start 1", rat43, [699.6, 5.277, 0.7596, 1.279],
             [100.0, 10.0, 1.0, 1.0], 1 + 14 * u, 5.0),
        Case("mgh09-rational", "rational b1(x²+b2x)/(x²+b3x+b4), NIST MGH09 start 1", mgh09,
             [0.1928, 0.1913, 0.1231, 0.1361], [25.0, 39.0, 41.5, 39.0], 0.0625 + 3.9375 * u, 0.003),
        Case("boxbod-saturation", "b1(1−e^(−b2x)), NIST BoxBOD start 1", box_bod, [213.8, 0.5472], [1.0, 1.0],
             1 + 9 * u, 10.0),
    ]


def _fit(case: Case, x, y, p0, method: str):
    t0 = time.perf_counter()
    try:
        r = hpcfit.curve_fit(case.model, x, y, p0=p0, bounds=case.bounds, method=method, verbose=0,
                             max_iterations=200, **case.options)
    except hpcfit.errors.HpcfitError as exc:
        return None, time.perf_counter() - t0, str(exc)
    return r, time.perf_counter() - t0, r.status.name


def xpcs_case(n_t: int = 200):
    """Laminar flow, 7 angles: D0 10x too large and φ0 with the wrong sign (the 21-parameter XPCS fit)."""
    from hpcfit.models.xpcs import two_time_c2
    from hpcfit.xpcs import fit
    from hpcfit.xpcs.load import TwoTimeData

    phi = np.array([-10.0, 0.0, 15.0, 45.0, 90.0, 135.0, 180.0])
    truth = [1500.0, -0.25, 20.0, 3e-4, 0.35, 1e-5, 25.0]
    c2 = np.asarray(two_time_c2(truth, phi=phi, n_t=n_t, dt=0.5, q=0.0054, L=2e6, contrast=0.2, offset=1.0,
                                mode="laminar_flow"))
    noise = np.random.default_rng(1).standard_normal(c2.shape) * 0.002
    data = TwoTimeData(c2=c2 + (noise + noise.transpose(0, 2, 1)) / np.sqrt(2), phi=phi, q=0.0054, dt=0.5,
                       frames=(1, n_t), path="<simulated>", layout="simulated", source_stamp=(0, 0))

    def run(p0, method):
        t0 = time.perf_counter()
        r = fit(data, mode="laminar_flow", L=2e6, p0=p0, method=method, verbose=0, max_iterations=200)
        return r, time.perf_counter() - t0, r.status.name

    ref = run(truth, "gn")[0]
    hard = [15000.0, -0.25, 20.0, 3e-4, 0.35, 1e-5, -25.0]
    return _row("xpcs-laminar-flow", "XPCS laminar flow, 21 parameters: D0 10x off, φ0 wrong sign",
                {m: run(hard, m) for m in ("gn", "hybrid")}, ref)


def xpcs_default_start_case(name, what, n_t, seed, scaling, phi=None, phi0=5.0):
    """An XPCS set fitted from hpcfit.xpcs.fit's default start (as a user would), gn vs hybrid."""
    from hpcfit.models.xpcs import two_time_c2
    from hpcfit.xpcs import fit
    from hpcfit.xpcs.load import TwoTimeData

    phi = np.asarray(phi if phi is not None else np.arange(8) * 45.0, dtype=float)
    truth = [1500.0, -0.25, 20.0, 3e-4, 0.35, 1e-5, phi0]
    c2 = np.asarray(two_time_c2(truth, phi=phi, n_t=n_t, dt=0.5, q=0.0054, L=2e6, contrast=0.25, offset=1.0,
                                mode="laminar_flow"))
    noise = np.random.default_rng(seed).standard_normal(c2.shape) * 0.003
    data = TwoTimeData(c2=c2 + (noise + noise.transpose(0, 2, 1)) / np.sqrt(2), phi=phi, q=0.0054, dt=0.5,
                       frames=(1, n_t), path="<simulated>", layout="simulated", source_stamp=(0, 0))

    def run(p0, method):
        t0 = time.perf_counter()
        r = fit(data, mode="laminar_flow", L=2e6, p0=p0, method=method, verbose=0, scaling=scaling)
        return r, time.perf_counter() - t0, r.status.name

    ref = run(truth, "gn")[0]
    return _row(name, what, {m: run(None, m) for m in ("gn", "hybrid")}, ref)


def _row(name, what, runs, ref):
    costs = [r.cost for r, _, _ in [*runs.values(), (ref, 0, 0)] if r is not None and np.isfinite(r.cost)]
    best = min(costs)
    row = {"case": name, "what": what, "best": best}
    for m, (r, seconds, status) in runs.items():
        cost = np.inf if r is None else r.cost
        row[m] = dict(cost=cost, ok=bool(cost <= best * (1 + 1e-6)), seconds=seconds, status=status,
                      warmup=None if r is None else r.warmup, explore=None if r is None else r.explore,
                      trustworthy=None if r is None else r.trustworthy)
    row["never_worse"] = bool(row["hybrid"]["cost"] <= row["gn"]["cost"] * (1 + 1e-6))
    return row


def run_case(case: Case, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = case.x
    y = np.asarray(case.model(x, *case.truth)) + case.noise * rng.standard_normal(x.size)
    ref, _, _ = _fit(case, x, y, case.truth, "gn")
    return _row(case.name, case.what, {m: _fit(case, x, y, case.p0, m) for m in ("gn", "hybrid")}, ref)


GAUSS9_TRUTH = [1.0, 2.0, 0.4, 0.8, 5.0, 0.5, 0.6, 8.0, 0.4]


def well_started_problem(kind: str, n: int):
    """(model, x, y, p0 within 10 % of the truth) for the well-started timings."""
    rng = np.random.default_rng(1)
    if kind == "exp":
        x = np.linspace(0, 5, n)
        return exp_decay, x, 2.5 * np.exp(-1.3 * x) + 0.5 + 0.05 * rng.standard_normal(n), [2.4, 1.25, 0.52]
    x = np.linspace(0, 10, n)
    y = np.asarray(gauss_peaks(x, *GAUSS9_TRUTH)) + 0.02 * rng.standard_normal(n)
    return gauss_peaks, x, y, [v * f for v, f in zip(GAUSS9_TRUTH, [1.05, 1.02, 0.95, 0.95, 1.01, 1.05, 1.05,
                                                                     0.99, 1.05])]


def well_started(n: int, repeat: int, kind: str = "exp"):
    """Wall time of hybrid vs gn from a good start: the methods alternate, each call after a first
    call that compiled; best of ``repeat``."""
    model, x, y, p0 = well_started_problem(kind, n)
    out = {m: [np.inf, None] for m in ("gn", "hybrid")}
    for method in out:
        hpcfit.curve_fit(model, x, y, p0=p0, method=method, verbose=0)
    for _ in range(repeat):
        for method in out:
            t0 = time.perf_counter()
            r = hpcfit.curve_fit(model, x, y, p0=p0, method=method, verbose=0)
            out[method] = [min(out[method][0], time.perf_counter() - t0), r]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=float, default=1e5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cases", nargs="*")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--well-started", type=float, nargs="*", default=[1e6, 1e7],
                    help="sizes of the well-started timing (hybrid vs gn)")
    ap.add_argument("--first-call", choices=["gn", "hybrid"],
                    help="only time one well-started fit in this (fresh) process, compilation included")
    ap.add_argument("--kind", choices=["exp", "gauss9"], default="exp", help="problem of --first-call")
    ap.add_argument("--first-call-points", type=float, default=1e6)
    args = ap.parse_args()
    if args.first_call:
        model, x, y, p0 = well_started_problem(args.kind, int(args.first_call_points))
        t0 = time.perf_counter()
        r = hpcfit.curve_fit(model, x, y, p0=p0, method=args.first_call, verbose=0)
        print(f"first call, {args.kind}, {x.size} points, {args.first_call}: {time.perf_counter() - t0:.3f} s, "
              f"phase 1 {r.explore.reason}, {r.njev} J + {r.nfev - r.njev} cost passes, compiled {r.compile_counts}")
        return
    n = int(args.points)
    rows = [run_case(c) for c in cases(n) if not args.cases or c.name in args.cases]
    if not args.cases or "xpcs-laminar-flow" in args.cases:
        rows.append(xpcs_case())
    if not args.cases or "xpcs-example" in args.cases:
        rows.append(xpcs_default_start_case("xpcs-example", "shipped example data (8x300, individual), default start",
                                            300, 1, "individual", phi=[-170 + 45 * i for i in range(8)]))
    if not args.cases or "xpcs-shared" in args.cases:
        rows.append(xpcs_default_start_case("xpcs-shared", "8x200, seed 4, scaling shared, default start", 200, 4,
                                            "shared"))
    print(f"{'case':24s} {'best cost':>12s} | {'gn cost':>12s} ok {'s':>6s} | {'hybrid cost':>12s} ok {'s':>6s} "
          f"{'phase 1':>24s}")
    for r in rows:
        g, h = r["gn"], r["hybrid"]
        w = h["warmup"]
        p1 = "-" if w is None else f"{w.reason} {w.steps} steps"
        print(f"{r['case']:24s} {r['best']:12.6e} | {g['cost']:12.6e} {'Y' if g['ok'] else 'n'}  {g['seconds']:6.2f} | "
              f"{h['cost']:12.6e} {'Y' if h['ok'] else 'n'}  {h['seconds']:6.2f} {p1:>24s}")
    n_gn = sum(r["gn"]["ok"] for r in rows)
    n_hy = sum(r["hybrid"]["ok"] for r in rows)
    lost = [r["case"] for r in rows if r["gn"]["ok"] and not r["hybrid"]["ok"]]
    worse = [r["case"] for r in rows if not r["never_worse"]]
    print(f"reached the best known cost: gn {n_gn}/{len(rows)}, hybrid {n_hy}/{len(rows)}; "
          f"cases hybrid lost that gn reached: {lost or 'none'}; hybrid worse than gn (1e-6): {worse or 'none'}")
    ws_rows = []
    for size in args.well_started:
        for kind in ("exp", "gauss9"):
            ws = well_started(int(size), args.repeat, kind)
            (tg, rg), (th, rh) = ws["gn"], ws["hybrid"]
            ws_rows.append((kind, int(size), tg, th, rg, rh))
            print(f"well started ({kind}, {int(size)} points, best of {args.repeat} warm calls): gn {tg:.3f} s "
                  f"({rg.njev} J + {rg.nfev - rg.njev} cost passes), hybrid {th:.3f} s ({rh.njev} J + "
                  f"{rh.nfev - rh.njev} cost passes, phase 1 {rh.timings['phase1']:.4f} s), ratio {th / tg:.2f}")
    if args.markdown:
        print("\n| case | start | best cost | gn | hybrid (default) | hybrid ≤ gn | phase 1 chose |\n"
              "|---|---|---|---|---|---|---|")
        for r in rows:
            g, h = r["gn"], r["hybrid"]
            e = h["explore"]
            cell = lambda d: f"{'**yes**' if d['ok'] else 'no'} ({d['cost']:.6g}, {d['seconds']:.2f} s)"  # noqa: E731
            print(f"| {r['case']} | {r['what']} | {r['best']:.6g} | {cell(g)} | {cell(h)} | "
                  f"{'yes' if r['never_worse'] else '**NO**'} | {'-' if e is None else e.chosen} |")
        print("\n| problem | n | gn s | gn passes (J + cost) | hybrid s | hybrid passes | ratio |\n"
              "|---|---|---|---|---|---|---|")
        for kind, size, tg, th, rg, rh in ws_rows:
            print(f"| {kind} | {size:.0e} | {tg:.3f} | {rg.njev} + {rg.nfev - rg.njev} | {th:.3f} | "
                  f"{rh.njev} + {rh.nfev - rh.njev} | {th / tg:.2f} |")


if __name__ == "__main__":
    main()
