"""Built-in models, written with jax.numpy as f(x, *params) exactly as scipy's curve_fit takes them."""
from .basic import exponential_decay as exponential_decay
from .basic import gaussian_peaks as gaussian_peaks
from .xpcs import TwoTimeModel as TwoTimeModel
from .xpcs import two_time_c2 as two_time_c2
