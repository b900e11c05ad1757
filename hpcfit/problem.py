"""The problem a fit solves, built first (:func:`hpcfit.phases.setup.build_problem`) and handed to
every phase and evaluator (``PassEvaluator.for_problem``, ``PointEvaluator.for_problem``).

It holds what every phase needs — the communicator, this rank's chunks, the model and loss, the
normalization and the box in both parameter spaces, the options and the progress table — so no
phase threads these through long argument lists.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .comm import Communicator
from .data.chunks import LocalChunks
from .options import FitOptions
from .phases.normalize import Normalization
from .report import IterationTable


@dataclass(frozen=True)
class Problem:
    comm: Communicator
    local: LocalChunks
    model: Callable              # f(x, *θ) as the user gave it (x explicit)
    options: FitOptions
    norm: Normalization
    p0: np.ndarray
    lower: np.ndarray            # bounds in θ
    upper: np.ndarray
    lower_u: np.ndarray          # bounds in normalized u
    upper_u: np.ndarray
    absolute_sigma: bool
    table: IterationTable
    weight_scale: float = 1.0    # residuals are (f − y)·w·weight_scale inside the fit (hpcfit.data.scale)
    groups: object = None        # GroupLayout of block-sparse Jacobian passes (hpcfit.groups), or None

    @property
    def n_params(self) -> int:
        return self.p0.size

    @property
    def u0(self) -> np.ndarray:
        """p0 in u, inside the box (rounding of the affine map must not leave it)."""
        return np.clip(self.norm.to_u(self.p0), self.lower_u, self.upper_u)
