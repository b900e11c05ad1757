"""The same kind of fit on every rank of an MPI job, each rank holding only its own shard.

    mpiexec -n 2 python -m mpi4py examples/fit_mpi.py

With distribute="local" each rank passes its own part of the data (here: generated locally);
with distribute="global" every rank would pass the same full arrays.
Under slurm/fit.sbatch, HPCFIT_CHECKPOINT names a checkpoint file: the fit writes it every
iteration and, when the job is requeued after a preemption, continues from it (resume="auto").
"""
import os

import jax.numpy as jnp
import numpy as np
from mpi4py import MPI

import hpcfit

comm = MPI.COMM_WORLD
n_total = 4_000_000
lo, hi = comm.rank * n_total // comm.size, (comm.rank + 1) * n_total // comm.size
x = np.linspace(0.0, 5.0, n_total)[lo:hi]
rng = np.random.default_rng(1000 + comm.rank)
sigma = np.full(x.size, 0.05)
y = 2.5 * np.exp(-1.3 * x) + 0.5 + sigma * rng.standard_normal(x.size)


def model(x, amplitude, rate, offset):
    return amplitude * jnp.exp(-rate * x) + offset


result = hpcfit.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0], sigma=sigma, absolute_sigma=True,
                          bounds=([0.0, 0.0, -1.0], [10.0, 10.0, 1.0]), loss="soft_l1", f_scale=0.1,
                          comm=comm, distribute="local", checkpoint=os.environ.get("HPCFIT_CHECKPOINT"),
                          resume="auto" if os.environ.get("HPCFIT_CHECKPOINT") else None)
if comm.rank == 0:
    print(result.report(["amplitude", "rate", "offset"]))
