"""Rank 0's per-iteration table (iteration, cost, Δcost, |g|, |step|, ρ, λ, seconds)."""
from __future__ import annotations

import sys

from .result import IterationRecord

_HEADER = f"{'iter':>5} {'cost':>14} {'Δcost':>11} {'|g|':>10} {'|step|':>10} {'ρ':>8} {'λ':>9} {'time/s':>8}"


class IterationTable:
    """Prints rows as they come when ``enabled`` (rank 0 and not quiet); silent otherwise."""

    def __init__(self, enabled: bool, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stdout
        self._started = False

    def row(self, rec: IterationRecord) -> None:
        if not self.enabled:
            return
        if not self._started:
            print(_HEADER, file=self.stream)
            self._started = True
        if rec.iteration == 0:
            cells = f"{'':>11} {rec.gradient_norm:10.3e} {'':>10} {'':>8} {rec.damping:9.2e}"
        else:
            cells = (f"{rec.cost_change:11.3e} {rec.gradient_norm:10.3e} {rec.step_norm:10.3e} "
                     f"{rec.ratio:8.3f} {rec.damping:9.2e}")
        print(f"{rec.iteration:5d} {rec.cost:14.7e} {cells} {rec.seconds:8.3f}", file=self.stream, flush=True)

    def line(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream, flush=True)
