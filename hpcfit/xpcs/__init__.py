"""XPCS two-time fits: models, APS 8-ID-I loaders, stream files, simulation and fitting."""
from ..models.xpcs import TwoTimeModel as TwoTimeModel
from ..models.xpcs import two_time_c2 as two_time_c2
from .beamline import beamline as beamline
from .fit import fit as fit
from .fit import initial_scaling as initial_scaling
from .load import TwoTimeData as TwoTimeData
from .load import load as load
from .simulate import simulate as simulate
from .stream import convert_to_stream as convert_to_stream
from .stream import converted_path as converted_path
from .stream import is_current as is_current
from .stream import read_stream_meta as read_stream_meta
from .prepare import prepare_stream as prepare_stream
