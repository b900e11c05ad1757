"""Command line: ``python -m hpcfit fit CONFIG.toml`` (the application), ``init``, ``info``, ``demo``
and ``simulate xpcs``.

Under MPI, launch as ``mpiexec -n N python -m mpi4py -m hpcfit ...`` so that an unhandled
exception on any rank aborts the whole job instead of leaving the other ranks waiting. hpcfit's
own errors are collective: every rank returns the same exit code and rank 0 prints one line.

Exit codes of ``fit``: 0 converged and trustworthy, 2 finished but not converged or not
trustworthy (the reasons on stderr), 75 stopped by a signal with its checkpoint written (requeue
it), 130 interrupted by Ctrl-C (the checkpoint, if any, written), 1 an error.
"""
from __future__ import annotations

import argparse
import os
import sys


def _world():
    from .comm import world

    return world()


def _rank() -> int:
    from .comm import world_rank

    return world_rank()


def cmd_fit(args) -> int:
    """Read and check the configuration (every rank, agreed), prepare the data, fit, write results."""
    from .comm import Communicator

    with Communicator(_world()) as hc:          # one communicator for the whole run, passed down
        return _fit_run(args, hc)


def _fit_run(args, hc) -> int:
    from .app.config import dump_toml, read_config
    from .app.run import EXIT_PREEMPTED, exit_code, folders, prepare, run_fit, write_results
    from .checkpoint.signals import INTERRUPT_EXIT_CODE
    from .errors import Preempted

    root = hc.is_root
    say = (lambda text: print(text, flush=True)) if root else (lambda text: None)
    cfg = hc.agree(read_config, args.config, args.set or ())
    hc.check_same({f"[{name}]": repr(cfg.raw.get(name)) for name in sorted(set(cfg.raw) | {"data", "model"})},
                  "every rank must run the same configuration (the same file, the same --set)")
    from .app.config import G2_KINDS
    many = cfg.kind in G2_KINDS                 # many small fits, one table (hpcfit.app.g2_run)
    if args.dry_run:
        from .app.g2_run import plan_g2
        from .app.plan import plan

        lines = (plan_g2 if many else plan)(cfg, hc)
        if root:
            print(dump_toml(cfg.raw))
            print("\n".join(lines))
        return 0
    if args.quiet:
        cfg.fit.setdefault("verbose", 0)
    hc.agree(lambda: folders(cfg, create=False) if root else None)   # they can be made (the run makes them)
    if many:
        from .app.g2_run import run_g2
        return run_g2(cfg, hc, say)
    try:
        prepared = prepare(cfg, hc, say)
        result = run_fit(cfg, prepared, hc)
    except Preempted as stop:
        say(f"hpcfit: {stop}")
        return EXIT_PREEMPTED
    except KeyboardInterrupt as stop:
        if not getattr(stop, "agreed", False):
            raise                        # this rank alone: main() ends the job
        say(str(stop))                   # every rank together (agreed over a reduction)
        return INTERRUPT_EXIT_CODE
    out, note = write_results(cfg, prepared, result, hc)
    code = exit_code(result)
    if root:
        print(result.report())
        print(f"hpcfit: results in {os.path.abspath(out)} (result.json, result.h5"
              f"{', per_point.h5' if cfg.output.get('per_point', False) else ''}"
              f"{'' if note or not cfg.output.get('plots', True) else ', plots'})", flush=True)
        if note:                        # a plot that failed: one warning line, after the results
            print(f"hpcfit: {note}", file=sys.stderr if note.startswith("warning:") else sys.stdout, flush=True)
        if code != 0:
            reasons = "; ".join(result.trust_issues) or result.message
            print(f"hpcfit: finished but {'not converged' if not result.success else 'not trustworthy'}: "
                  f"{reasons}", file=sys.stderr, flush=True)
    return code


def cmd_init(args) -> int:
    from .app.templates import TEMPLATES

    if _rank() == 0:
        sys.stdout.write(TEMPLATES[args.kind])
    return 0


def cmd_info(_args) -> int:
    import platform

    import h5py
    import jax
    import jaxlib
    import numpy

    from . import __version__
    from .comm import mpi_summary

    mpi = mpi_summary()
    if mpi.get("world rank", 0) != 0:
        return 0
    rows = [("hpcfit", __version__), ("python", platform.python_version()), ("jax", jax.__version__),
            ("jaxlib", jaxlib.__version__),
            ("numpy", numpy.__version__), ("h5py", h5py.__version__),
            ("h5py parallel HDF5 (mpio)", str(bool(h5py.get_config().mpi))),
            ("HDF5 library", ".".join(map(str, h5py.version.hdf5_version_tuple)))]
    rows += [(k, str(v)) for k, v in mpi.items()]
    rows += [("JAX backend", jax.default_backend()), ("JAX devices", ", ".join(str(d) for d in jax.devices())),
             ("JAX float64", str(bool(jax.config.jax_enable_x64)))]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(n_points=args.n_points, chunk_size=args.chunk_size, comm=_world())


def cmd_simulate_xpcs(args) -> int:
    from .xpcs.simulate import simulate

    comm = _world()
    one = (lambda v: v[0] if len(v) == 1 else v)          # one value on the command line means every angle
    summary = simulate(args.out, layout=args.layout, n_phi=args.n_phi, n_t=args.n_t, mode=args.mode, dt=args.dt,
                       q=one(args.q), L=args.L, params=args.params, contrast=one(args.contrast), offset=one(args.offset),
                       noise=one(args.noise), noise_growth=args.noise_growth, seed=args.seed, phi=args.phi, form=args.form, triangle=args.triangle,
                       comm=comm)
    if comm is None or comm.Get_rank() == 0:
        print(summary.brief())
    return 0


def _add_simulate(sub) -> None:
    simulate = sub.add_parser("simulate", help="write a synthetic data set (run it under mpiexec to share the work)")
    kinds = simulate.add_subparsers(dest="kind", required=True)
    x = kinds.add_parser("xpcs", help="XPCS two-time maps: hpcfit.models.xpcs.two_time_c2 plus Gaussian noise",
                         description="Write XPCS two-time maps, the model plus Gaussian noise, in an APS 8-ID-I "
                                     "layout or as a stream file. The noise depends on --seed only, not on the "
                                     "number of ranks.")
    x.add_argument("--out", required=True, help="output HDF5 file")
    x.add_argument("--layout", choices=("aps-u", "old", "stream"), default="aps-u", help="file layout (aps-u)")
    x.add_argument("--n-phi", type=int, required=True, help="number of angles")
    x.add_argument("--n-t", type=int, required=True, help="frames per map (maps are n_t x n_t)")
    x.add_argument("--mode", choices=("static", "laminar_flow"), default="laminar_flow", help="model (laminar_flow)")
    x.add_argument("--form", choices=("homodyne", "paper"), default="homodyne", help="model form (homodyne)")
    x.add_argument("--dt", type=float, required=True, help="seconds per frame")
    x.add_argument("--q", type=float, nargs="+", required=True,
                   help="wave vector q of the ring, or several rings (each gets every angle)")
    x.add_argument("--L", type=float, required=True, help="gap L (laminar_flow)")
    x.add_argument("--params", type=float, nargs="+", required=True,
                   help="D0 alpha D_offset [gamma_dot_t0 beta gamma_dot_t_offset phi0]")
    x.add_argument("--contrast", type=float, nargs="+", required=True,
                   help="one value, one per angle, or one per map (rings x angles)")
    x.add_argument("--offset", type=float, nargs="+", required=True,
                   help="one value, one per angle, or one per map (rings x angles)")
    x.add_argument("--phi", type=float, nargs="+", default=None,
                   help="angles in degrees (default: n_phi evenly spaced in [0, 360))")
    x.add_argument("--noise", type=float, nargs="+", required=True,
                   help="standard deviation of the noise (absolute), or one per q ring")
    x.add_argument("--seed", type=int, required=True, help="random seed (integer >= 0)")
    x.add_argument("--noise-growth", type=float, default=0.0,
                   help="noise grows with the lag tau: sigma = noise * (1 + g * tau / (n_t - 1)) (default 0)")
    x.add_argument("--triangle", choices=("upper", "both"), default="upper",
                   help="points of each map in a stream file (upper)")
    x.set_defaults(func=cmd_simulate_xpcs)


def main(argv=None) -> int:
    from ._version import __version__

    parser = argparse.ArgumentParser(prog="python -m hpcfit", description=__doc__.split("\n\n")[0],
                                     epilog="Exit codes of fit: 0 converged and trustworthy, 2 finished but not "
                                            "trustworthy, 75 preempted (checkpoint written), 130 interrupted (Ctrl-C), "
                                            "1 error.")
    parser.add_argument("--version", action="version", version=f"hpcfit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command")
    fit = sub.add_parser("fit", help="run the fit a TOML configuration describes (under mpiexec/srun, or serial)",
                         description="Run the fit a TOML configuration describes; `python -m hpcfit init xpcs` "
                                     "writes a commented example. Sections: [data] [model] [parameters] [fit] "
                                     "[checkpoint] [output] (docs/usage.md).")
    fit.add_argument("config", help="the TOML file")
    fit.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                     help="override a key, e.g. --set fit.ftol=1e-10 (repeatable; VALUE in TOML syntax)")
    fit.add_argument("--dry-run", action="store_true", help="print the resolved configuration and the plan, then exit")
    fit.add_argument("--quiet", action="store_true", help="no per-iteration table")
    fit.set_defaults(func=cmd_fit)
    init = sub.add_parser("init", help="print a commented configuration that runs as written (on simulated data)")
    init.add_argument("kind", choices=("xpcs", "curve", "g2"),
                      help="an XPCS two-time fit, a curve fit, or g2 fits of multitau files")
    init.set_defaults(func=cmd_init)
    sub.add_parser("info", help="versions, MPI library and size, parallel HDF5, JAX devices").set_defaults(
        func=cmd_info)
    demo = sub.add_parser("demo", help="a built-in demo fit (run it under mpiexec to see MPI at work)")
    demo.add_argument("--n-points", type=int, default=1_000_000, help="data points (default 10^6)")
    demo.add_argument("--chunk-size", type=int, default=None, help="points per chunk (default: automatic)")
    demo.set_defaults(func=cmd_demo)
    _add_simulate(sub)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    import warnings

    from .errors import HpcfitError

    def one_line(message, category, filename, lineno, file=None, line=None):
        """A warning as one line (not Python's two, with the source line)."""
        print(f"hpcfit: warning: {' '.join(str(message).split())}", file=file or sys.stderr, flush=True)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line
            return args.func(args)
    except HpcfitError as exc:          # collective: the same on every rank; one line, from rank 0
        if args.debug:
            raise
        if _rank() == 0:
            print(f"hpcfit: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:           # Ctrl-C outside a fit's collective stop (setup, output)
        from .checkpoint.signals import GRACE_SECONDS, INTERRUPT_EXIT_CODE
        from .comm import abort_after

        abort_after(GRACE_SECONDS, INTERRUPT_EXIT_CODE)     # the other ranks may be in a collective
        print(f"hpcfit: interrupted (SIGINT) on rank {_rank()}", file=sys.stderr, flush=True)
        return INTERRUPT_EXIT_CODE


def entry(argv=None) -> None:
    """``python -m hpcfit`` and the ``hpcfit`` console script: run, then exit with the code every
    rank agreed on (under MPI so that the launcher reports it: :func:`hpcfit.comm.exit_job`)."""
    code = main(argv)
    from .comm import exit_job

    exit_job(code)


if __name__ == "__main__":
    entry()
