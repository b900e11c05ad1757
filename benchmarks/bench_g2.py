"""g2 fits at beamline volume (issue 21, item 3): every q bin of 300 multitau files (36 bins, 61
delays each, the shape of the real E0173 file: 10 800 fits), hpcfit's batched fits on 1 and 2 ranks
(in a fresh process: the imports, then the first call, with an empty compilation cache so that
compilation is included, then again in a fresh process that finds the kernels in the disk cache, then
a second call in that process) against a scipy ``curve_fit`` loop over the same bins in the same run, from the same
start values, with the same weights; each fit's χ² compared.

Run (never more ranks than cores):
    .venv/bin/python benchmarks/bench_g2.py [--files 300] [--forms single,stretched]
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

Q = np.linspace(0.00304, 0.05, 36)       # E0173's dynamic_v_list_dim0 spans 0.00304-0.05


def simulate(folder: str, n_files: int, form: str) -> str:
    from hpcfit.xpcs.simulate_g2 import simulate_g2

    extra = {"single": {}, "stretched": {"beta": 0.75}}[form]
    for i in range(n_files):
        path = os.path.join(folder, f"{form}_{i:04d}_results.hdf")
        if not os.path.exists(path):
            simulate_g2(path, q=Q, D=2e5 * (1 + 0.01 * i), form=form, contrast=0.2, noise=0.003, seed=i, **extra)
    return os.path.join(folder, f"{form}_*_results.hdf")


def worker(pattern: str, form: str, out: str) -> None:
    """One fit_g2 in a fresh process (collective under mpiexec); rank 0 saves the table."""
    t0 = time.perf_counter()
    from mpi4py import MPI

    from hpcfit.xpcs import fit_g2

    comm = MPI.COMM_WORLD
    comm.Barrier()                   # the call starts when every rank has imported (ranks import at their own pace)
    imported = time.perf_counter() - t0
    t1 = time.perf_counter()
    fits = fit_g2(pattern, form=form, comm=comm if comm.size > 1 else None)
    first = time.perf_counter() - t1
    t1 = time.perf_counter()
    fit_g2(pattern, form=form, comm=comm if comm.size > 1 else None)
    warm = time.perf_counter() - t1
    if comm.rank == 0:
        np.savez(out, popt=fits.popt, chi2=fits.chi2, status=fits.status, trusted=fits.trustworthy)
        print(json.dumps({"ranks": comm.size, "import": imported, "first": first, "warm": warm, "fits": len(fits)}),
              flush=True)


def scipy_loop(pattern: str, form: str) -> tuple[float, np.ndarray]:
    import glob

    from scipy.optimize import curve_fit

    from hpcfit.xpcs.g2 import start_values
    from hpcfit.xpcs.multitau import read_g2

    f = {"single": lambda t, c, g, b: b + c * np.exp(-2 * g * t),
         "stretched": lambda t, c, g, beta, b: b + c * np.exp(-2 * (g * t) ** beta)}[form]
    bounds = {"single": ([0, 0, -np.inf], [np.inf, np.inf, np.inf]),
              "stretched": ([0, 0, 0.05, -np.inf], [np.inf, np.inf, 2.0, np.inf])}[form]
    chi2 = []
    t0 = time.perf_counter()
    for path in sorted(glob.glob(pattern)):
        d = read_g2(path)
        for k in range(d.n_bins):
            ok = d.has_data[:, k]
            p0 = start_values(form, d.tau[ok], d.g2[ok, k])
            try:
                popt, _ = curve_fit(f, d.tau[ok], d.g2[ok, k], p0=np.clip(p0, *[np.asarray(b) for b in bounds]),
                                    sigma=d.err[ok, k], bounds=bounds, maxfev=20000)
                r = (f(d.tau[ok], *popt) - d.g2[ok, k]) / d.err[ok, k]
                chi2.append(float(r @ r))
            except RuntimeError:
                chi2.append(np.nan)
    return time.perf_counter() - t0, np.array(chi2)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], sys.argv[4])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--forms", default="single,stretched")
    ap.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".data", "g2"))
    args = ap.parse_args()
    os.makedirs(args.data, exist_ok=True)
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    print("| form | fits | ranks | import s | first call s, cold cache (compile included) | first call s, disk cache | "
          "second call s | scipy curve_fit loop s | speed-up of the first call, cold / disk cache | "
          "speed-up of the process (import included), cold / disk cache | max χ² rel. diff | "
          "fits with χ² above scipy's by > 1e-6 | untrusted |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for form in args.forms.split(","):
        pattern = simulate(args.data, args.files, form)
        scipy_s, scipy_chi2 = scipy_loop(pattern, form)
        for ranks in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, "t.npz")
                cmd = [sys.executable, __file__, "--worker", pattern, form, out]
                if ranks > 1:
                    cmd = [mpiexec, "-bind-to", f"core:{max(1, (os.cpu_count() or 1) // ranks)}", "-n", str(ranks),
                           sys.executable, "-m", "mpi4py"] + cmd[1:]
                env = dict(os.environ, HPCFIT_COMPILATION_CACHE=os.path.join(tmp, "cache"))
                cold, cached = (json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
                                           .stdout.strip().splitlines()[-1]) for _ in range(2))
                t = np.load(out)
            rel = (t["chi2"] - scipy_chi2) / scipy_chi2
            whole = [run["import"] + run["first"] for run in (cold, cached)]
            print(f"| {form} | {cold['fits']} | {ranks} | {cold['import']:.1f} | {cold['first']:.2f} | "
                  f"{cached['first']:.2f} | {cached['warm']:.2f} | {scipy_s:.1f} | "
                  f"{scipy_s / cold['first']:.1f}x / {scipy_s / cached['first']:.1f}x | "
                  f"{scipy_s / whole[0]:.1f}x / {scipy_s / whole[1]:.1f}x | "
                  f"{np.nanmax(np.abs(rel)):.1e} | {int(np.sum(rel > 1e-6))} | {int(np.sum(~t['trusted']))} |", flush=True)


if __name__ == "__main__":
    main()
