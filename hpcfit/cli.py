"""Command line: ``python -m hpcfit info`` and ``python -m hpcfit demo``.

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpcfit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, MPI library and size, parallel HDF5, JAX devices").set_defaults(
        func=cmd_info)
    demo = sub.add_parser("demo", help="a built-in demo fit (run it under mpiexec to see MPI at work)")
    demo.add_argument("--n-points", type=int, default=1_000_000, help="data points (default 10^6)")
    demo.add_argument("--chunk-size", type=int, default=None, help="points per chunk (default: automatic)")
    demo.set_defaults(func=cmd_demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
