"""hpcfit: MPI-parallel streaming nonlinear least squares with JAX chunk kernels."""
from ._version import __version__ as __version__
from .api import curve_fit as curve_fit
from .api import fit as fit
from .errors import FitError as FitError
from .errors import HpcfitError as HpcfitError
from .errors import InputError as InputError
from .errors import Preempted as Preempted
from .errors import REQUEUE_EXIT_CODE as REQUEUE_EXIT_CODE
from .errors import RankDeficientWarning as RankDeficientWarning
from .options import FitOptions as FitOptions
from .result import FitResult as FitResult
from .result import Status as Status
from . import data as data
from . import models as models
