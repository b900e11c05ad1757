"""Per-point outputs at 10⁷ points: seconds and peak RSS per rank of write_per_point (the gathered
writer, and the collective "mpio" one with parallel h5py), against the fit's own time.

    python benchmarks/bench_per_point.py --make /tmp/pp-data.h5            # the data, once (240 MB)
    python benchmarks/bench_per_point.py /tmp/pp-data.h5                    # 1 rank
    mpiexec -n 2 python -m mpi4py benchmarks/bench_per_point.py /tmp/pp-data.h5
    (parallel lane venv) mpiexec.mpich -n 2 python -m mpi4py benchmarks/bench_per_point.py /tmp/pp-data.h5
"""
import argparse
import os
import resource
import time

import numpy as np


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--make", action="store_true")
    ap.add_argument("--n", type=int, default=10_000_000)
    args = ap.parse_args()
    if args.make:
        import h5py
        x = np.linspace(0.0, 5.0, args.n)
        sigma = 0.01 + 0.002 * x
        y = 2.0 * np.exp(-1.3 * x) + 0.5 + sigma * np.random.default_rng(0).standard_normal(args.n)
        with h5py.File(args.path, "w") as f:
            f["x"], f["y"], f["sigma"] = x, y, sigma
        return
    import h5py
    from mpi4py import MPI

    import hpcfit
    from hpcfit.comm import Communicator
    from hpcfit.data import HDF5Source
    from hpcfit.output.per_point import write_per_point

    world = MPI.COMM_WORLD
    comm = world if world.size > 1 else None
    t0 = time.perf_counter()
    result = hpcfit.fit(hpcfit.models.exponential_decay, HDF5Source(args.path, x="x", sigma="sigma"),
                        [1.0, 0.2, 0.0], method="gn", verbose=0, comm=comm)
    t_fit = time.perf_counter() - t0
    rss_fit = peak_mib()
    out = args.path.replace(".h5", f"-per-point-{world.size}.h5")
    world.Barrier()
    t0 = time.perf_counter()
    with Communicator(comm) as hc:
        write_per_point(out, result, HDF5Source(args.path, x="x", sigma="sigma"), hc, result.info["chunk_size"])
    t_write = time.perf_counter() - t0
    rows = world.gather((t_fit, t_write, rss_fit, peak_mib()), root=0)
    if world.rank == 0:
        with h5py.File(out) as f:
            writer = f.attrs["writer"]
        n = result.n_points
        worst = max(r[1] for r in rows)
        print(f"n={n} ranks={world.size} writer={writer} fit {rows[0][0]:.2f} s, write {worst:.2f} s "
              f"({n / worst:.3g} points/s, {worst / rows[0][0]:.2f}x the fit); peak RSS per rank after the fit / "
              f"after writing (MiB): " + ", ".join(f"{a:.0f}/{b:.0f}" for _, _, a, b in rows))
        os.remove(out)


if __name__ == "__main__":
    main()
