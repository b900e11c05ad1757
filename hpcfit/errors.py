"""Exceptions raised by hpcfit. Every one is raised identically on every rank of a fit."""
from __future__ import annotations


class HpcfitError(Exception):
    """Base class of hpcfit's errors."""


class InputError(HpcfitError, ValueError):
    """A user-supplied argument, array, option or file is invalid; the message names it."""


class FitError(HpcfitError, RuntimeError):
    """The fit could not continue (for example the model became non-finite at an accepted point)."""


class RankDeficientWarning(UserWarning):
    """JᵀWJ is rank deficient at the solution: some parameter combinations are not determined."""
