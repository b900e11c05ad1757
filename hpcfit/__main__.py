import os
import sys

from .cli import main

code = main()
if code and "mpi4py.MPI" in sys.modules:
    # An exit code every rank agreed on (an error, "not trustworthy", a preemption): end MPI cleanly.
    # Raising SystemExit under ``python -m mpi4py`` would make it call MPI_Abort, whose noise hides
    # the one-line message and whose exit status is not ours.
    from mpi4py import MPI

    if MPI.Is_initialized() and not MPI.Is_finalized():
        sys.stdout.flush()
        sys.stderr.flush()
        MPI.Finalize()
        os._exit(code)
sys.exit(code)
