"""``python -m hpcfit fit`` for [data] kind "g2" and "g2-simulated": every q bin of the multitau
files fitted on its own (:func:`hpcfit.xpcs.fit_g2`), the table written as ``g2_fits.csv`` and
``g2_fits.h5``, the rates' q-law and the plots. Collective: every rank runs the same steps."""
from __future__ import annotations

import glob
import json
import math
import os
import sys

from ..comm import Communicator
from ..errors import InputError
from .config import RunConfig

#: Exit codes as for every fit (hpcfit.app.run): 0 every bin trusted, 2 some not.
EXIT_OK, EXIT_UNTRUSTED = 0, 2


def g2_files(cfg: RunConfig):
    """What fit_g2 reads: [data] file (paths or patterns), or the simulated folder's files."""
    if cfg.kind == "g2-simulated":
        return os.path.join(cfg.data["file"], "g2_*.hdf")
    return cfg.data["file"]


def g2_arguments(cfg: RunConfig) -> dict:
    """fit_g2's keywords from [model] and [parameters] (a parameter's value is used when it is fixed:
    every bin starts from its own data)."""
    fixed = {p.name: p.value for p in cfg.parameters if p.fixed}
    bounds = {p.name: (p.lower, p.upper) for p in cfg.parameters
              if not p.fixed and (math.isfinite(p.lower) or math.isfinite(p.upper))}
    weights = cfg.model.get("weights", "err")
    if weights not in ("err", "none"):
        raise InputError(f"{cfg.source} [model]: `weights` must be \"err\" (1/normalized_g2_err) or \"none\"; "
                         f"got {weights!r}")
    from ..xpcs.g2 import GLOBAL_FORMS
    if cfg.model.get("global", False) and cfg.model.get("form", "single") not in GLOBAL_FORMS:
        raise InputError(f"{cfg.source} [model]: global = true fits form {' or '.join(map(repr, GLOBAL_FORMS))}; got "
                         f"form = {cfg.model.get('form')!r}")
    return {"form": cfg.model.get("form", "single"), "weights": None if weights == "none" else "err",
            "fixed": fixed, "bounds": bounds, "dt": cfg.data.get("dt"), "tau_range": cfg.data.get("tau_range")}


def simulate_files(cfg: RunConfig, say=print) -> None:
    """Rank 0, kind "g2-simulated": write the files unless the folder holds those of this [data]."""
    from ..xpcs.simulate_g2 import simulate_g2

    folder = cfg.data["file"]
    recipe = {k: v for k, v in cfg.data.items() if k not in ("kind", "file")}
    stamp = os.path.join(folder, "simulation.json")
    if os.path.exists(stamp):
        with open(stamp, encoding="utf-8") as fh:
            if json.load(fh) == recipe:
                return
    found = glob.glob(os.path.join(folder, "g2_*.hdf"))
    if found and not os.path.exists(stamp):
        # files this run did not write: never overwrite or remove them
        raise InputError(f"[data] file: the folder {folder} holds {os.path.basename(found[0])} and other g2_*.hdf "
                         "files that hpcfit did not simulate (no simulation.json); kind = \"g2-simulated\" writes "
                         "into a folder of its own: name another one, or fit those files with kind = \"g2\"")
    os.makedirs(folder, exist_ok=True)
    for old in found:                             # an earlier simulation of other settings
        os.remove(old)
    n_files = int(recipe.get("n_files", 1))
    keys = ("exponent", "form", "contrast", "baseline", "beta", "noise")
    for i in range(n_files):
        simulate_g2(os.path.join(folder, f"g2_{i:04d}.hdf"), q=recipe["q"], D=recipe["D"],
                    seed=int(recipe.get("seed", 0)) + i, **{k: recipe[k] for k in keys if k in recipe})
    with open(stamp, "w", encoding="utf-8") as fh:
        json.dump(recipe, fh)
    say(f"hpcfit: simulated {n_files} multitau file(s) in {folder}")


def plan_g2(cfg: RunConfig, comm=None) -> list[str]:
    """The dry run: the files and bins to fit, the batches per rank (rank 0 reads the g2 tables)."""
    from ..xpcs.g2 import BATCH, _expand
    from ..xpcs.multitau import read_g2

    args = g2_arguments(cfg)
    with Communicator(comm) as hc:
        def count():
            if cfg.kind == "g2-simulated" and not glob.glob(g2_files(cfg)):
                n_files = int(cfg.data.get("n_files", 1))
                return n_files, n_files * len(cfg.data["q"]), 0
            paths = _expand(g2_files(cfg))
            data = [read_g2(p, dt=args["dt"]) for p in paths]
            return len(paths), sum(d.n_bins - len(d.empty) for d in data), sum(len(d.empty) for d in data)
        n_files, n_bins, empty = hc.on_root(count)
        size = hc.size
    batches = -(-n_bins // BATCH)
    return ["# plan", f"files: {n_files}", f"q bins to fit: {n_bins} ({empty} without data, skipped)",
            f"model: g2 {args['form']}, weights {args['weights'] or 'none'}, fixed {args['fixed'] or 'none'}",
            f"ranks: {size}; batches of {BATCH} fits: {batches}, {batches // size}-{-(-batches // size)} per rank",
            f"output: {cfg.output_dir} (g2_fits.csv, g2_fits.h5{', plots' if cfg.output.get('plots', True) else ''})"]


def global_fits(cfg: RunConfig, fits, comm) -> list[dict]:
    """Collective, [model] global = true: the fit over q of each file (Γ = D·qⁿ shared), one row each."""
    from ..xpcs.g2 import fit_g2_global

    rows = []
    for path in dict.fromkeys(fits.file):
        res = fit_g2_global(path, form=cfg.model.get("form", "single"), exponent=cfg.model.get("exponent"),
                            weights=None if cfg.model.get("weights", "err") == "none" else "err",
                            dt=cfg.data.get("dt"), p0_from=fits, comm=comm, verbose=0)
        shared = [n for n in res.names if not n.startswith(("contrast_", "baseline_"))]
        row = {"file": path}
        for i, name in enumerate(shared):
            row[name], row[f"{name}_err"] = float(res.popt[i]), float(res.perr[i])
        row.update({"reduced_chi2": float(res.chi2 / res.dof), "status": res.status.name,
                    "trustworthy": bool(res.success and res.trustworthy), "issues": "; ".join(res.trust_issues)})
        rows.append(row)
    return rows


def _write_rows(rows: list[dict], path: str) -> None:
    import csv

    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        out = csv.DictWriter(fh, fieldnames=list(rows[0]))
        out.writeheader()
        out.writerows([{k: repr(v) if isinstance(v, float) else v for k, v in row.items()} for row in rows])
    os.replace(tmp, path)


def run_g2(cfg: RunConfig, comm=None, say=print) -> int:
    """Collective: simulate (kind g2-simulated), fit every bin (and, with [model] global, each file
    over q), write the tables and the plots; the exit code."""
    from ..xpcs.g2 import fit_g2, q_law

    with Communicator(comm) as hc:
        args = hc.agree(g2_arguments, cfg)
        hc.agree(lambda: simulate_files(cfg, say) if hc.is_root and cfg.kind == "g2-simulated" else None)
        fits = fit_g2(g2_files(cfg), comm=hc, **args)
        overall = global_fits(cfg, fits, hc) if cfg.model.get("global", False) else []
        out = cfg.output_dir

        def write():
            os.makedirs(out, exist_ok=True)
            fits.save(os.path.join(out, "g2_fits.csv"))
            fits.save(os.path.join(out, "g2_fits.h5"))
            if overall:
                _write_rows(overall, os.path.join(out, "g2_global.csv"))
            law = q_law(fits)
            note = None
            if cfg.output.get("plots", True):
                from ..output.plots import write_g2_plots
                _, note = write_g2_plots(fits, out, law)
            return law, note

        law, note = hc.agree(lambda: write() if hc.is_root else (None, None))
    if not hc.is_root:
        trusted = fits.trustworthy.all() and all(row["trustworthy"] for row in overall)
        return EXIT_OK if trusted else EXIT_UNTRUSTED
    trusted = int(fits.trustworthy.sum())
    print(f"g2 ({fits.form}): {len(fits)} bins fitted in {len(set(fits.file))} file(s), {trusted} trusted, "
          f"{len(fits.skipped)} without data skipped")
    for row in overall:
        n = f"n = {row['n']:.4f} ± {row['n_err']:.2g}" if row["n_err"] > 0 else f"n = {row['n']:g} (held)"
        print(f"global fit of {os.path.basename(row['file'])}: D = {row['D']:.6g} ± {row['D_err']:.2g}, {n}, "
              f"reduced χ² {row['reduced_chi2']:.3f}{'' if row['trustworthy'] else ', NOT TRUSTWORTHY: ' + row['issues']}")
    if law is not None:
        print(f"q-law over the trusted fits ({law.used}): Γ = D·q^n, D = {law.D:.6g} ± {law.D_err:.2g}, "
              f"n = {law.n:.4f} ± {law.n_err:.2g}")
    print(f"hpcfit: results in {os.path.abspath(out)} (g2_fits.csv, g2_fits.h5{', g2_global.csv' if overall else ''}"
          f"{'' if note or not cfg.output.get('plots', True) else ', g2_fits.png, g2_rates.png'})", flush=True)
    if note:
        print(f"hpcfit: {note}", flush=True)
    if any(not row["trustworthy"] for row in overall):
        print("hpcfit: finished but a global fit over q is not trustworthy (see above)", file=sys.stderr, flush=True)
        return EXIT_UNTRUSTED
    if trusted < len(fits):
        first = next(i for i, ok in enumerate(fits.trustworthy) if not ok)
        print(f"hpcfit: finished but {len(fits) - trusted} of {len(fits)} fits are not trustworthy (e.g. "
              f"{os.path.basename(fits.file[first])} bin {fits.bin[first]}: {fits.issues[first]}); see the "
              "table's issues column", file=sys.stderr, flush=True)
        return EXIT_UNTRUSTED
    return EXIT_OK
