"""XPCS at scale (issue 13): time to solution from a beamline file, strong and weak scaling, and a model
that extrapolates to 3.5·10⁹ points on 16, 64 and 256 ranks.

Data: laminar flow, 25 angles, individual scaling (7 + 50 = 57 parameters), the APS-U layout with
float32 maps (as the beamline writes them), simulated once per size under ``--data`` and reused.
Each configuration is a fresh process (under mpiexec for 2 ranks) that fits the file directly
(``hpcfit.xpcs.beamline``), default method from the default start: the wall time includes opening
and reading the data, phase 1 and the covariance. Recorded per run: time to solution, Jacobian- and
cost-pass points/s (per rank), the share of pass time spent reading (on the reader thread, which
overlaps compute), reduction time, peak RSS per rank, the largest |popt − truth|/perr of the
physical parameters, and a hash of popt (same bits on 1 and 2 ranks).

Run (never more ranks than cores):
    .venv/bin/python benchmarks/bench_xpcs_scale.py --runs 1e7:1,1e7:2,2e7:2,1e8:2,1e8:1 [--data DIR]
    .venv/bin/python benchmarks/bench_xpcs_scale.py --allreduce     # the reduction buffers' Allreduce, 2 ranks
    .venv/bin/python benchmarks/bench_xpcs_scale.py --p207          # a real fit's reductions at p = 207, 2 ranks
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

N_PHI = 25
ROW = "BENCH-ROW "          # marks the worker's result line among the fit's own output
PHI = np.linspace(-170.0, 170.0, N_PHI)
DT, Q, L = 0.5, 0.0054, 2e6
TRUTH = [1500.0, -0.25, 20.0, 3e-4, 0.35, 1e-5, 5.0]
CONTRAST = [0.2 + 0.004 * i for i in range(N_PHI)]
OFFSET = [1.0 + 0.0004 * i for i in range(N_PHI)]
NOISE = 0.002


@dataclass(frozen=True)
class Layout:
    """The maps of a simulated file: ``rings`` q rings of ``angles`` angles each ("RxA" in ``--runs``).
    One ring is the issue-13 set (q = 0.0054, σ = 0.002 everywhere); several rings (issue 20) spread q
    over 0.0035–0.0075 Å⁻¹ with σ different per ring and growing with lag (heteroscedastic, as real maps)."""

    rings: int = 1
    angles: int = N_PHI

    @classmethod
    def parse(cls, text: str) -> "Layout":
        rings, angles = text.lower().split("x")
        return cls(int(rings), int(angles))

    @property
    def maps(self) -> int:
        return self.rings * self.angles

    @property
    def tag(self) -> str:
        return f"{self.angles}" if self.rings == 1 else f"{self.rings}x{self.angles}"

    def n_t_for(self, points: float) -> int:
        """Frames for at least ``points`` pairs t1 < t2 over all maps."""
        return int(math.ceil(0.5 + math.sqrt(0.25 + 2.0 * points / self.maps)))

    def simulation(self) -> dict:
        if self.rings == 1:
            phi = PHI if self.angles == N_PHI else np.linspace(-170.0, 170.0, self.angles)
            return dict(q=Q, noise=NOISE, phi=phi.tolist(), contrast=[0.2 + 0.004 * i for i in range(self.angles)],
                        offset=[1.0 + 0.0004 * i for i in range(self.angles)])
        return dict(q=np.linspace(0.0035, 0.0075, self.rings).tolist(),
                    noise=[NOISE * (1.0 + 0.15 * r) for r in range(self.rings)], noise_growth=0.5,
                    phi=np.linspace(-174.0, 174.0, self.angles).tolist(),
                    contrast=[0.2 + 0.1 * m / self.maps for m in range(self.maps)],
                    offset=[1.0 + 0.01 * m / self.maps for m in range(self.maps)])


def data_file(folder: str, points: float, layout: Layout = Layout()) -> str:
    """The beamline file of this size, simulated on first use (on 2 ranks when it is large)."""
    n_t = layout.n_t_for(points)
    path = os.path.join(folder, f"xpcs-{layout.tag}x{n_t}.h5")
    if not os.path.exists(path):
        t = time.perf_counter()
        mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "mpi4py", __file__, "--simulate-worker", path,
                        f"{layout.rings}x{layout.angles}", str(n_t)], check=True)
        print(f"simulated {path} ({os.path.getsize(path) / 2**30:.2f} GiB) in {time.perf_counter() - t:.0f} s",
              flush=True)
    return path


def simulate_worker(path: str, layout: Layout, n_t: int) -> None:
    from mpi4py import MPI

    from hpcfit.xpcs import simulate

    simulate(path, layout="aps-u", n_phi=layout.angles, n_t=n_t, mode="laminar_flow", dt=DT, L=L, params=TRUTH,
             seed=11, comm=MPI.COMM_WORLD, **layout.simulation())


def worker(path: str, layout: Layout, verbose: int = 0) -> None:
    """One fit in this process (collective under mpiexec); rank 0 prints one JSON line (and, with
    ``verbose``, the fit's progress and iteration table before it, to stderr)."""
    import resource

    t0 = time.perf_counter()
    from mpi4py import MPI

    import hpcfit.xpcs as hx

    comm = MPI.COMM_WORLD
    t = time.perf_counter()
    res = hx.fit(hx.beamline(path, q=Q if layout.rings == 1 else "all", dt=DT), mode="laminar_flow", L=L,
                 comm=comm if comm.size > 1 else None, verbose=verbose)
    wall = time.perf_counter() - t
    rss = comm.gather(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
    if comm.rank:
        return
    tm = res.timings
    pass_seconds = tm["jacobian_passes"] + tm["cost_passes"]
    sigma = np.abs(res.popt[:7] - TRUTH) / res.perr[:7]
    print(ROW + json.dumps({
        "ranks": comm.size, "layout": layout.tag, "p": res.n_params, "points": res.n_points, "wall": wall, "import": t - t0, "phase1": tm["phase1"],
        "phase2": tm["phase2"], "setup": tm["setup"], "covariance": tm["covariance"], "fit_total": tm["total"],
        "jac_seconds": tm["jacobian_passes"], "cost_seconds": tm["cost_passes"], "njev": res.njev, "ncost": res.nfev - res.njev,
        "iterations": res.n_iterations, "jac_pps": res.info["jacobian_points_per_second"],
        "cost_pps": res.info["cost_points_per_second"], "chunk": res.info["chunk_size"],
        "read_share": tm["reads"] / pass_seconds, "reductions": tm["reductions"], "rss_mib": rss,
        "max_sigma": float(sigma.max()), "success": bool(res.success), "trustworthy": bool(res.trustworthy),
        "popt_sha": hashlib.sha256(res.popt.tobytes()).hexdigest()[:16], "cost": res.cost}), flush=True)


def allreduce_worker() -> None:
    """Best-of-5 Allreduce time of the reduction buffers at p = 207 on 64 ranks (arrow, dense), and
    at 16 ranks, on this communicator (under mpiexec -n 2 here: shared memory)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    sizes = [reduction_buffer(3.5e9, 16)[1], reduction_buffer(3.5e9, 64)[1], reduction_buffer(3.5e9, 64)[2]]
    for mb in sizes:
        a = np.ones(int(mb * 1e6 / 8))
        b = np.empty_like(a)
        comm.Allreduce(a, b)
        best = np.inf
        for _ in range(5):
            comm.Barrier()
            t = time.perf_counter()
            comm.Allreduce(a, b)
            best = min(best, time.perf_counter() - t)
        if comm.rank == 0:
            print(f"| {comm.size} | {mb:.1f} | {best * 1e3:.1f} |", flush=True)


def p207_worker(path: str) -> None:
    """Reductions of a real fit at p = 207 (100 angles, individual), arrow against dense layout:
    a few passes on many small chunks, on this communicator."""
    from mpi4py import MPI

    import hpcfit.xpcs as hx

    comm = MPI.COMM_WORLD
    for groups in ("auto", "off"):
        res = hx.fit(hx.beamline(path, q=Q, dt=DT), mode="laminar_flow", L=L, comm=comm, verbose=0, method="gn",
                     max_iterations=3, chunk_size=4096, parameter_groups=groups)
        passes = res.nfev
        slots, arrow_mb, dense_mb = reduction_buffer(res.n_points, comm.size, 100, 4096)
        if comm.rank == 0:
            print(f"| {'arrow (block-sparse)' if groups == 'auto' else 'dense'} | {res.n_params} | "
                  f"{res.info['n_chunks']} | {slots} | {(arrow_mb if groups == 'auto' else dense_mb) * 1e3:.0f} | "
                  f"{passes} | {res.timings['reductions'] / passes * 1e3:.1f} | "
                  f"{res.timings['jacobian_passes'] / res.njev:.2f} |", flush=True)


def run(path: str, ranks: int, layout: Layout = Layout(), verbose: bool = False) -> dict:
    args = ["--worker", path, f"{layout.rings}x{layout.angles}", str(int(verbose))]
    cmd = [sys.executable, __file__, *args]
    if ranks > 1:
        mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        # one core per rank, as launch/mpirun.sh binds them (hydra does not by default)
        cmd = [mpiexec, "-bind-to", f"core:{max(1, (os.cpu_count() or 1) // ranks)}", "-n", str(ranks),
               sys.executable, "-m", "mpi4py", __file__, *args]
    # the row is the worker's line marked ROW; with verbose every other line (the fit's iteration
    # table on stdout, its progress on stderr) is shown as it comes
    import tempfile

    row, lines = None, []
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=None if verbose else errors, text=True)
        for line in proc.stdout:
            if line.startswith(ROW):
                row = json.loads(line[len(ROW):])
            elif verbose:
                sys.stderr.write(line)
            else:
                lines.append(line)
        errors.seek(0)
        if proc.wait() or row is None:
            raise RuntimeError("".join(lines) + errors.read())
    return row


def reduction_buffer(points: float, ranks: int, p_angles: int = 100, chunk: int = 32768) -> tuple[int, float, float]:
    """(slots, MB with the arrow layout, MB with dense JᵀWJ) of one pass's reduction at p = 7 + 2·p_angles."""
    from hpcfit.data.chunks import reduction_slots
    from hpcfit.data.grid import ChunkGrid

    grid = ChunkGrid(int(points), chunk, ranks)
    slots = len(reduction_slots([grid.rank_chunks(r) for r in range(ranks)], grid.n_chunks))
    p = 7 + 2 * p_angles
    arrow = 7 * 8 // 2 + p_angles * (3 + 14) + p + 3
    dense = p * (p + 1) // 2 + p + 3
    return slots, slots * arrow * 8 / 1e6, slots * dense * 8 / 1e6


def predict(rows: list[dict], points: float, ranks: int, fs_mb_per_rank: float, alpha: float, beta: float) -> dict:
    """Time to solution at ``points`` on ``ranks`` from the largest 2-rank run here: passes scale
    with points per rank at this machine's per-rank rates (bounded by the file system's per-rank
    bandwidth, float32 points), the pass counts, phase 1, the covariance and the time before the fit
    (opening, start, noise estimate) are taken as measured, plus 10 s of start-up; each pass adds one
    Allreduce of the arrow-layout buffer (latency α·log₂P + bandwidth 2·S·β)."""
    ref = max((r for r in rows if r["ranks"] == 2), key=lambda r: r["points"])
    per_rank_j, per_rank_c = ref["jac_pps"] / ref["ranks"], ref["cost_pps"] / ref["ranks"]
    io_pps = fs_mb_per_rank * 1e6 / 4.0
    share = points / ranks
    t_j = share / min(per_rank_j, io_pps)
    t_c = share / min(per_rank_c, io_pps)
    slots, arrow_mb, _ = reduction_buffer(points, ranks, (ref["p"] - 7) // 2, ref["chunk"])
    t_red = alpha * math.log2(ranks) + 2 * arrow_mb * 1e6 * beta
    passes = ref["njev"] + ref["ncost"]
    fixed = ref["phase1"] + ref["covariance"] + (ref["wall"] - ref["fit_total"]) + 10.0
    total = ref["njev"] * t_j + ref["ncost"] * t_c + passes * t_red + fixed
    return {"ranks": ranks, "points": points, "j_pass": t_j, "cost_pass": t_c, "reduction": t_red, "slots": slots,
            "buffer_mb": arrow_mb, "total": total}


def main():
    if len(sys.argv) > 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2], Layout.parse(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 0)
        return
    if len(sys.argv) > 4 and sys.argv[1] == "--simulate-worker":
        simulate_worker(sys.argv[2], Layout.parse(sys.argv[3]), int(sys.argv[4]))
        return
    if len(sys.argv) > 2 and sys.argv[1] == "--p207-worker":
        p207_worker(sys.argv[2])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--p207":
        from hpcfit.xpcs import simulate

        folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".data")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "xpcs-100x200.h5")
        if not os.path.exists(path):
            simulate(path, layout="aps-u", n_phi=100, n_t=200, mode="laminar_flow", dt=DT, q=Q, L=L, params=TRUTH,
                     contrast=0.2, offset=1.0, noise=NOISE, seed=3)
        print("| layout | p | chunks | slots | buffer KB | passes | reduction ms per pass (incl. waiting) | J pass s |\n"
              "|---|---|---|---|---|---|---|---|",
              flush=True)
        mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "mpi4py", __file__, "--p207-worker", path],
                       check=True)
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--allreduce":
        if os.environ.get("PMI_RANK") is None and os.environ.get("OMPI_COMM_WORLD_RANK") is None:
            mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
            print("| ranks | buffer MB | Allreduce ms |\n|---|---|---|", flush=True)
            subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "mpi4py", __file__, "--allreduce"], check=True)
        else:
            allreduce_worker()
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="1e7:1,1e7:2,2e7:2,1e8:2,1e8:1",
                    help="points:ranks[:RINGSxANGLES],... (default layout 1x25: one ring of 25 angles)")
    ap.add_argument("--verbose", action="store_true", help="show each fit's progress and iteration table")
    ap.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".data"))
    ap.add_argument("--fs-mb-per-rank", type=float, default=500.0, help="assumed file system bandwidth per rank")
    ap.add_argument("--alpha", type=float, default=5e-6, help="assumed Allreduce latency per log2(P) step, s")
    ap.add_argument("--beta", type=float, default=1e-10, help="assumed s per byte (10 GB/s links)")
    args = ap.parse_args()
    os.makedirs(args.data, exist_ok=True)
    rows = []
    for spec in args.runs.split(","):
        points, ranks, *shape = spec.split(":")
        layout = Layout.parse(shape[0]) if shape else Layout()
        path = data_file(args.data, float(points), layout)
        rows.append(run(path, int(ranks), layout, args.verbose))
        print(rows[-1], flush=True)
    print("\n| maps | p | points | ranks | time to solution s | before the fit s | phase 1 s | phase 2 s | covariance s "
          "| J passes | cost passes | J points/s per rank | cost points/s per rank | read share | reductions s "
          "| peak RSS per rank MiB | max abs(popt-truth)/perr | popt sha |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['layout']} | {r['p']} | {r['points']:.3g} | {r['ranks']} | {r['wall']:.1f} | "
              f"{r['wall'] - r['fit_total']:.1f} | {r['phase1']:.1f} | {r['phase2']:.1f} | {r['covariance']:.1f} | "
              f"{r['njev']} | {r['ncost']} | {r['jac_pps'] / r['ranks']:.3g} | {r['cost_pps'] / r['ranks']:.3g} | "
              f"{r['read_share']:.2f} | {r['reductions']:.3f} | {', '.join(f'{m:.0f}' for m in r['rss_mib'])} | "
              f"{r['max_sigma']:.2f} | {r['popt_sha']} |")
    single = [r for r in rows if "x" not in r["layout"]]
    for r in (r for r in rows if "x" in r["layout"]):
        ref = [s for s in single if s["ranks"] == r["ranks"]]
        if ref:
            ref = max(ref, key=lambda s: s["points"])
            print(f"\n{r['layout']} maps, {r['points']:.3g} points on {r['ranks']} ranks against one ring "
                  f"({ref['points']:.3g} points): J points/s per rank {r['jac_pps'] / ref['jac_pps']:.2f}x, "
                  f"cost points/s per rank {r['cost_pps'] / ref['cost_pps']:.2f}x; phase 1 share "
                  f"{r['phase1'] / r['wall']:.1%}, read share of the passes {r['read_share']:.1%}, before the fit "
                  f"(open, start, noise) {(r['wall'] - r['fit_total']) / r['wall']:.1%}")
    two = [r for r in rows if r["ranks"] == 2]
    if not two:
        print("\n(no 2-rank run: no reduction buffers and no 3.5e9 prediction)")
        return
    maps = max(two, key=lambda r: r["points"])
    n_maps = (maps["p"] - 7) // 2
    print(f"\nReduction buffer per pass at p = {maps['p']} ({n_maps} maps, individual), 3.5e9 points, chunk "
          f"{maps['chunk']}:")
    print("| ranks | slots | arrow layout MB | dense JᵀWJ MB |")
    print("|---|---|---|---|")
    for ranks in (16, 64, 256):
        slots, arrow, dense = reduction_buffer(3.5e9, ranks, n_maps, maps["chunk"])
        print(f"| {ranks} | {slots} | {arrow:.1f} | {dense:.1f} |")
    print(f"\nPredicted time to solution, 3.5e9 points (assumed: {args.fs_mb_per_rank:g} MB/s file system per rank, "
          f"Allreduce α = {args.alpha:g} s, β = {args.beta:g} s/byte; per-rank rates, pass counts, phase 1 and the "
          f"time before the fit from the largest 2-rank run above, {maps['layout']} maps):")
    print("| ranks | J pass s | cost pass s | reduction s | slots | buffer MB | time to solution s |")
    print("|---|---|---|---|---|---|---|")
    for ranks in (16, 64, 256):
        pr = predict(rows, 3.5e9, ranks, args.fs_mb_per_rank, args.alpha, args.beta)
        print(f"| {ranks} | {pr['j_pass']:.2f} | {pr['cost_pass']:.2f} | {pr['reduction']:.4f} | {pr['slots']} | "
              f"{pr['buffer_mb']:.1f} | {pr['total']:.0f} |")


if __name__ == "__main__":
    main()
