"""XPCS end to end: simulate a laminar-flow two-time dataset in the APS-U layout and fit it straight
from that file, every rank streaming its own chunks of the maps.

    mpiexec -n 2 python -m mpi4py examples/xpcs_laminar_flow.py [WORKDIR]
"""
import os
import sys
import tempfile

from mpi4py import MPI

import hpcfit.xpcs as xpcs

comm = MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None
workdir = sys.argv[1] if len(sys.argv) > 1 else (tempfile.gettempdir() if comm is None else "/tmp")
raw = os.path.join(workdir, "hpcfit-example-aps-u.h5")
truth = [1500.0, -0.25, 20.0, 3e-4, 0.35, 1e-5, 5.0]   # D0, alpha, D_offset, gamma_dot_t0, beta, offset, phi0

xpcs.simulate(raw, layout="aps-u", n_phi=8, n_t=300, mode="laminar_flow", dt=0.5, q=0.0054, L=2e6,
              params=truth, contrast=0.25, offset=1.0, noise=0.003, seed=1, phi=[-170 + 45 * i for i in range(8)],
              comm=comm)
result = xpcs.fit(xpcs.beamline(raw, q=0.0054, dt=0.5), mode="laminar_flow", L=2e6, comm=comm)
if comm is None or comm.Get_rank() == 0:
    print(result.report())
    print("truth:", dict(zip(result.names, truth)))
