"""MPI lane for g2 fits: the batches of many files spread over the ranks give the serial bits, and
every rank returns the whole table."""
import os

import numpy as np
import pytest

from hpcfit.xpcs.g2 import BATCH, fit_g2
from hpcfit.xpcs.simulate_g2 import simulate_g2

pytestmark = pytest.mark.mpi(min_size=2)


def test_many_files_over_the_ranks_give_the_serial_bits(world, shared_dir):
    q = np.geomspace(0.003, 0.05, 100)
    if world.rank == 0:
        for i in range(3):                             # 300 bins: two batches, one rank may get none
            simulate_g2(os.path.join(shared_dir, f"g2_{i}.hdf"), q=q, D=1e5 * (i + 1), form="stretched",
                        beta=0.8, noise=0.002, seed=i)
    world.Barrier()
    pattern = os.path.join(shared_dir, "g2_*.hdf")
    serial = fit_g2(pattern, form="stretched")
    par = fit_g2(pattern, form="stretched", comm=world)
    assert len(par) == 300 > BATCH
    assert par.popt.tobytes() == serial.popt.tobytes() and par.perr.tobytes() == serial.perr.tobytes()
    assert par.chi2.tobytes() == serial.chi2.tobytes() and par.issues == serial.issues
    assert par.file == serial.file and np.array_equal(par.bin, serial.bin)
    everyone = world.allgather(par.popt.tobytes())
    assert all(b == everyone[0] for b in everyone)


def test_a_bad_file_is_the_same_error_on_every_rank(world, shared_dir):
    from hpcfit.errors import InputError
    bad = os.path.join(shared_dir, "not_g2.txt")
    if world.rank == 0:
        with open(bad, "w") as fh:
            fh.write("1 2 3\n")
    world.Barrier()
    with pytest.raises(InputError, match="not HDF5"):
        fit_g2(bad, comm=world)


def test_the_global_fit_over_q_gives_the_serial_bits(world, shared_dir):
    from hpcfit.xpcs.g2 import fit_g2_global
    path = os.path.join(shared_dir, "global.hdf")
    if world.rank == 0:
        simulate_g2(path, q=np.geomspace(0.004, 0.04, 12), D=3e5, exponent=1.9, noise=0.002, seed=2)
    world.Barrier()
    serial = fit_g2_global(path)
    par = fit_g2_global(path, comm=world)
    assert par.popt.tobytes() == serial.popt.tobytes() and par.success
