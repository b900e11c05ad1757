"""Writing one map per angle under MPI: every rank produces its angles, rank 0 writes them all.

Used by the simulator and the parallel conversion to stream files. Memory per rank: one map.
Every step ends in an agreement, so a failure anywhere (a bad angle, a failed write on rank 0)
is raised on every rank and none is left waiting.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..comm import Communicator
from ..progress import Progress


def write_rounds(hc: Communicator, n_maps: int, n_t: int, produce: Callable[[int, np.ndarray], np.ndarray],
                 put: Callable[[int, np.ndarray], None] | None, close: Callable[[], object] | None,
                 label: str = "maps") -> None:
    """Collective: map ``a`` is produced by rank ``a % size`` into an (n_t, n_t) buffer, one round of
    ``size`` maps at a time; rank 0 ``put``s them in order and finally ``close``s (rank 0's
    ``put``/``close``; ignored elsewhere). Rank 0 reports progress of long work under ``label``."""
    buf = np.empty((n_t, n_t))          # this rank's one map: produced into, sent from, received into (rank 0)
    pending = None                      # rank 0: a failed write, raised on every rank at the next agreement
    progress = Progress(label, n_maps, "maps", n_t * (n_t - 1) / 2) if hc.is_root else None
    for first in range(0, n_maps, hc.size):
        mine = hc.agree(_produce, produce, first + hc.rank, n_maps, buf, pending)
        if not hc.is_root:
            if mine is not None:
                hc.send_array(mine, 0)
            continue
        for r in range(min(hc.size, n_maps - first)):     # map first + r is rank r's; rank 0's comes first
            if r:
                hc.recv_array(buf, r)
            if pending is None:
                try:
                    put(first + r, buf)
                except Exception as exc:  # noqa: BLE001 - kept until every rank can raise it (no rank waits)
                    pending = exc
        progress.update(min(first + hc.size, n_maps))
    if progress is not None:
        progress.close()
    hc.agree(_finish, close if hc.is_root else None, pending)


def _produce(produce, a: int, n_maps: int, buf: np.ndarray, pending: Exception | None):
    if pending is not None:
        raise pending
    return None if a >= n_maps else produce(a, buf)


def _finish(close, pending: Exception | None) -> None:
    if pending is not None:
        raise pending
    if close is not None:
        close()
