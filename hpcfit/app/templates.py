"""``python -m hpcfit init xpcs|curve``: commented configurations that run as written (on simulated
or built-in data), with their results under the folder of the file. The XPCS one's [parameters] are
the fit's defaults (:mod:`hpcfit.xpcs.defaults`), written out."""
from ..xpcs.defaults import DEFAULT_BOUNDS, DEFAULT_P0


def _number(v: float) -> str:
    """``v`` as written in the templates: 1e-3, -1e4, 1e7 for powers of ten far from 1, else as Python writes it."""
    mantissa, exponent = f"{v:.0e}".split("e")
    if v != 0 and (abs(v) >= 1e4 or abs(v) < 1e-2) and float(f"{v:.0e}") == v:
        return f"{mantissa}e{int(exponent)}"
    return repr(float(v))


def _xpcs_parameters() -> str:
    """One line per physical parameter: its default start value and bounds."""
    return "\n".join(f"{name} = {{value = {_number(DEFAULT_P0[name])}, min = {_number(DEFAULT_BOUNDS[name][0])}, "
                     f"max = {_number(DEFAULT_BOUNDS[name][1])}}}" for name in DEFAULT_P0)


_XPCS = '''\
# hpcfit run configuration: an XPCS two-time fit (laminar flow), runnable as written.
#   python -m hpcfit fit run.toml                      (serial)
#   mpiexec -n 4 python -m mpi4py -m hpcfit fit run.toml
# Relative paths are relative to this file's folder. Every key is documented in docs/usage.md.

[data]
# Simulated data, made on first use (in the output directory) and reused while this section is
# unchanged. For a beamline file (APS 8-ID-I, either layout) write instead:
#   kind = "xpcs"
#   file = "/data/sample_results.hdf"
#   q = 0.0054               # the q ring (nearest one in the file; a warning if it is far), or
#                            # several rings in one fit: "all", [0.004, 0.0054], {min = 0.004, max = 0.008}
#   dt = 0.5                 # seconds per frame of the maps (default: what the file records)
#   phi_ranges = [[-10, 10], [170, 190]]   # optional: degrees to keep
#   frames = [1, 1000]       # optional: 1-based, inclusive
# Every rank streams its own chunks straight from the file's maps (nothing is copied); with
# convert = true the points are first copied once to a stream file in the output directory.
kind = "xpcs-simulated"
n_phi = 8
n_t = 300
mode = "laminar_flow"
dt = 0.5
q = 0.0054
L = 2e6
params = [1500.0, -0.25, 20.0, 3e-4, 0.35, 1e-5, 5.0]   # the truth the fit should find
contrast = 0.25
offset = 1.0
noise = 0.003
seed = 1
phi = [-170.0, -125.0, -80.0, -35.0, 10.0, 55.0, 100.0, 145.0]

[model]
name = "xpcs"
mode = "laminar_flow"      # or "static" (D0, alpha, D_offset only)
L = 2e6                    # sample-to-shear length scale (Angstrom)
scaling = "individual"     # contrast and offset per angle
noise = "auto"             # sigma per map and lag estimated from the data; or a number; or "none"

[parameters]
# start value, bounds; fixed = true holds a parameter at its value
{parameters}

[fit]
method = "hybrid"          # explore on a sample first, then Levenberg-Marquardt on all the data
ftol = 1e-8

[checkpoint]
path = "hpcfit-results/checkpoint.h5"   # resumed automatically when the job is rerun
every = 1

[output]
directory = "hpcfit-results"
'''

CURVE = '''\
# hpcfit run configuration: a curve fit (three Gaussian peaks), runnable as written.
#   python -m hpcfit fit run.toml
#   mpiexec -n 4 python -m mpi4py -m hpcfit fit run.toml
# Relative paths are relative to this file's folder. Every key is documented in docs/usage.md.

[data]
# The built-in demo data. For your own data write instead, e.g.:
#   file = "data.h5"         # HDF5, streamed chunk by chunk: y, x, sigma name datasets
#   y = "y"
#   x = "x"
#   sigma = "sigma"          # optional
# or a small table read on rank 0 and shared: file = "data.csv" (columns x, y[, sigma] by number
# or header name), "data.npz" (arrays x, y[, sigma]) or "data.npy" (columns).
kind = "demo"
n_points = 200000

[model]
name = "gaussian_peaks"    # or function = "mypackage.models:peaks" / "models.py:peaks"

[parameters]
a1 = 2.0
m1 = -1.5
s1 = {value = 1.0, min = 0.01}
a2 = 1.0
m2 = 0.8
s2 = {value = 1.2, min = 0.01}
a3 = 1.5
m3 = 2.6
s3 = {value = 0.8, min = 0.01}

[fit]
method = "hybrid"

[checkpoint]
path = "hpcfit-results-curve/checkpoint.h5"   # resumed automatically when the job is rerun or requeued

[output]
directory = "hpcfit-results-curve"   # its own: the XPCS template writes hpcfit-results
'''

XPCS = _XPCS.replace("{parameters}\n", _xpcs_parameters() + "\n")

G2 = '''\
# hpcfit run configuration: one-time g2 fits of multitau results, runnable as written.
#   python -m hpcfit fit run.toml                      (serial)
#   mpiexec -n 2 python -m mpi4py -m hpcfit fit run.toml
# Every q bin of every file is fitted on its own; the fits are spread over the ranks. Relative paths
# are relative to this file's folder. Every key is documented in docs/g2.md.

[data]
# Simulated files, made on first use (in the output directory) and reused while this section is
# unchanged. For the beamline's multitau result files (APS 8-ID-I, boost_corr) write instead:
#   kind = "g2"
#   file = ["/data/night/*_results.hdf"]    # paths or glob patterns
#   dt = 2e-5     # optional: seconds per delay step (default: frame_time x stride x avg_frame recorded)
kind = "g2-simulated"
n_files = 20
q = [0.003, 0.005, 0.008, 0.012, 0.017, 0.023, 0.03, 0.038, 0.045, 0.05]   # 1/Angstrom
D = 2e5                    # Gamma = D * q^exponent (1/s): the truth the fits should find
exponent = 2.0
form = "stretched"
beta = 0.8
contrast = 0.2
baseline = 1.0
noise = 0.003
seed = 1

[model]
name = "g2"
form = "stretched"         # "single", "stretched" (KWW) or "double" exponential
weights = "err"            # 1/normalized_g2_err, or "none"
global = false             # true: also each file's fit over q, Gamma = D*q^n shared -> g2_global.csv
# exponent = 2.0           # with global: n held there (diffusion)

[parameters]
# Each bin starts from its own data; give a box (min, max) or hold a parameter (fixed = true, value).
beta = {min = 0.2, max = 1.5}
# baseline = {value = 1.0, fixed = true}

[output]
directory = "results-g2"   # g2_fits.csv, g2_fits.h5, g2_fits.png, g2_rates.png
plots = true
'''

TEMPLATES = {"xpcs": XPCS, "curve": CURVE, "g2": G2}
