"""Command line: ``python -m hpcfit info``, ``python -m hpcfit demo`` and ``python -m hpcfit simulate xpcs``.

Under MPI, launch as ``mpiexec -n N python -m mpi4py -m hpcfit ...`` so that an unhandled
exception on any rank aborts the whole job instead of leaving the other ranks waiting.
"""
from __future__ import annotations

import argparse
import sys


def _world():
    """MPI.COMM_WORLD when running under an MPI launcher with more than one rank, else None."""
    try:
        from mpi4py import MPI
    except Exception:  # noqa: BLE001 - serial use needs no MPI at all
        return None
    return MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None


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
                       q=args.q, L=args.L, params=args.params, contrast=one(args.contrast), offset=one(args.offset),
                       noise=args.noise, seed=args.seed, phi=args.phi, form=args.form, triangle=args.triangle,
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
    x.add_argument("--q", type=float, required=True, help="wave vector q")
    x.add_argument("--L", type=float, required=True, help="gap L (laminar_flow)")
    x.add_argument("--params", type=float, nargs="+", required=True,
                   help="D0 alpha D_offset [gamma_dot_t0 beta gamma_dot_t_offset phi0]")
    x.add_argument("--contrast", type=float, nargs="+", required=True, help="one value, or one per angle")
    x.add_argument("--offset", type=float, nargs="+", required=True, help="one value, or one per angle")
    x.add_argument("--phi", type=float, nargs="+", default=None,
                   help="angles in degrees (default: n_phi evenly spaced in [0, 360))")
    x.add_argument("--noise", type=float, required=True, help="standard deviation of the noise (absolute)")
    x.add_argument("--seed", type=int, required=True, help="random seed (integer >= 0)")
    x.add_argument("--triangle", choices=("upper", "both"), default="upper",
                   help="points of each map in a stream file (upper)")
    x.set_defaults(func=cmd_simulate_xpcs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpcfit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, MPI library and size, parallel HDF5, JAX devices").set_defaults(
        func=cmd_info)
    demo = sub.add_parser("demo", help="a built-in demo fit (run it under mpiexec to see MPI at work)")
    demo.add_argument("--n-points", type=int, default=1_000_000, help="data points (default 10^6)")
    demo.add_argument("--chunk-size", type=int, default=None, help="points per chunk (default: automatic)")
    demo.set_defaults(func=cmd_demo)
    _add_simulate(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
