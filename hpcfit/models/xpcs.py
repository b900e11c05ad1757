"""XPCS two-time correlation c2(φ, t1, t2) with transport coefficients D(t) and γ̇(t).

The model of He et al., PNAS 121, e2401162121 (2024), used at APS 8-ID-I, evaluated as the
reference kernel of "homodyne" 2.23 does it (``form="homodyne"``, the default):

* frames t_k = k·dt (k = 0..n_t−1), with t_0 replaced by dt/2 so that t^α stays finite for α < 0;
* rates D_k = D0·t_k^α + D_offset and γ̇_k = γ̇0·t_k^β + γ̇_offset, each floored at 1e-10;
* S = cumulative trapezoid of a rate in frame units (S_0 = 0) and I_ij = sqrt((S_i − S_j)² + 1e-12);
* g1_diff = exp(clip(−½·q²·dt·I_D, −700, 0));
* Φ = (q·L·dt / 2π)·cos(φ0 − φ)·I_γ̇ and g1_shear = sinc²(Φ) with sinc(z) = sin z / z;
* g1 = max(g1_diff·g1_shear, 1e-10) and c2 = offset_φ + contrast_φ·g1².

``form="paper"`` is the expression written in the papers: c2 = offset + contrast·g1_diff²·sinc²(Φ_p)
with Φ_p = q·L·Γ·cos(φ0 − φ)/2 and Γ = dt·I_γ̇ the shear integral in time units. It differs from
"homodyne" twice: the shear factor in c2 is sinc² (homodyne squares g1 = g1_diff·sinc², so sinc⁴),
and the phase is π times larger (½ instead of 1/2π). Here g1 = g1_diff·sinc(Φ_p), which may be
negative, so the floor is applied to g1² (≥ 1e-20), which is the same floor as homodyne's.
In mode ``static`` both forms have no shear factor and agree exactly.

Parameters, in this order: D0, alpha, D_offset (``static``) and further gamma_dot_t0, beta,
gamma_dot_t_offset, phi0 (``laminar_flow``); angles φ and φ0 are in degrees.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import InputError
from ..pairs import check_n_t
from ..validate import choice, number, per_item

PHYSICAL_NAMES = ("D0", "alpha", "D_offset", "gamma_dot_t0", "beta", "gamma_dot_t_offset", "phi0")
MODES = {"static": 3, "laminar_flow": 7}        # mode → number of physical parameters
FORMS = ("homodyne", "paper")
SCALINGS = ("individual", "shared", "fixed")

RATE_FLOOR = 1e-10          # homodyne's floor of D(t), γ̇(t) and g1
# Keeps I differentiable at t1 = t2: d/dx sqrt(x²) is undefined at 0, d/dx sqrt(x² + ε) is 0 there.
PAIR_EPS = 1e-12
# exp(−700) is near the smallest normal float64; homodyne clips there so g1_diff never underflows.
LOG_G1_MIN = -700.0
# Below this |z| the Taylor series of sin z / z is exact to float64 (next term z⁶/5040 < 1e-27).
SINC_TAYLOR_BELOW = 1e-4
# Below this |z| the series of d sinc/dz (to z⁷; next term z⁹/3991680) is exact to float64.
SINC_DERIVATIVE_SERIES_BELOW = 1e-2


# ---- validation (plain Python, run once before any tracing) -----------------------------------





def _n_frames(n_t) -> int:
    return check_n_t(n_t, 2, " (the number of frames)")


def map_q(q, n_maps: int):
    """``q`` (Å⁻¹) as the model keeps it: one positive number for every map (a float: one q ring),
    or one per map (a tuple: maps of several q rings, in one fit)."""
    if np.ndim(q) == 0:
        return number("q", q)
    values = per_item("q", q, n_maps, "map", broadcast=False)
    if np.any(values <= 0):
        raise InputError(f"`q` must be > 0 for every map; got {list(q)!r}")
    return tuple(values.tolist())


def _angles(phi) -> tuple:
    try:
        arr = np.asarray(phi, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"`phi` must be a sequence of angles in degrees: {exc}") from None
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise InputError(f"`phi` must be a non-empty 1-D sequence of finite angles in degrees; got {phi!r}")
    return tuple(arr.tolist())




def _physical(params, mode: str):
    """params as a float64 vector of the length the mode needs (values may be traced)."""
    try:
        p = jnp.asarray(params, dtype=jnp.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"`params` must be a sequence of numbers: {exc}") from None
    if p.shape != (MODES[mode],):
        raise InputError(f"`params` must hold {MODES[mode]} values for mode {mode!r} "
                         f"({', '.join(PHYSICAL_NAMES[:MODES[mode]])}); got shape {p.shape}")
    return p


# ---- the kernel: pure functions shared by two_time_c2 and TwoTimeModel -------------------------

def frame_times(n_t: int, dt: float):
    """t_k = k·dt with t_0 = dt/2, so that power laws with negative exponents stay finite."""
    t = jnp.arange(n_t, dtype=jnp.float64) * dt
    return t.at[0].set(0.5 * dt)


def power_law_rate(t, prefactor, exponent, offset):
    """max(prefactor·t^exponent + offset, 1e-10): D(t) or γ̇(t), kept positive as homodyne does."""
    return jnp.maximum(prefactor * t**exponent + offset, RATE_FLOOR)


def cumulative_trapezoid(f):
    """S_0 = 0, S_k = Σ_{m<k} (f_m + f_{m+1})/2 along the last axis, in frame units."""
    steps = jnp.cumsum(0.5 * (f[..., :-1] + f[..., 1:]), axis=-1)
    return jnp.concatenate([jnp.zeros_like(f[..., :1]), steps], axis=-1)


def pair_integral(s_i, s_j):
    """|∫ rate| between two frames, smoothed at t1 = t2 (see PAIR_EPS)."""
    return jnp.sqrt((s_i - s_j) ** 2 + PAIR_EPS)


def rate_integrals(physical, n_t: int, dt: float, mode: str):
    """Cumulative integrals (S_D, S_γ̇) on every frame; S_γ̇ is None in static mode."""
    choice("mode", mode, tuple(MODES))
    t = frame_times(n_t, dt)
    s_d = cumulative_trapezoid(power_law_rate(t, physical[0], physical[1], physical[2]))
    if mode == "static":
        return s_d, None
    return s_d, cumulative_trapezoid(power_law_rate(t, physical[3], physical[4], physical[5]))


def sinc(z):
    """sin z / z (unnormalised), by its Taylor series near 0 so that it is smooth there.

    jnp.where evaluates both branches and differentiates both: the division uses a safe argument
    (1 where |z| is small) so that its gradient, though discarded, is not 0/0 = NaN.
    """
    small = jnp.abs(z) < SINC_TAYLOR_BELOW
    z_safe = jnp.where(small, 1.0, z)
    z2 = z * z
    return jnp.where(small, 1.0 - z2 / 6.0 + z2 * z2 / 120.0, jnp.sin(z_safe) / z_safe)


def shear_phase(i_shear, cos_dphi, q: float, L: float, dt: float, form: str):
    """Φ = (q·L·dt/2π)·cos Δφ·I_γ̇ (homodyne) or q·L·(dt·I_γ̇)·cos Δφ/2 (paper)."""
    choice("form", form, FORMS)
    scale = 1.0 / (2.0 * math.pi) if form == "homodyne" else 0.5
    return scale * q * L * dt * cos_dphi * i_shear


def _shear_power(form: str) -> int:
    """e in g1 = g1_diff·sinc(Φ)^e: 2 for homodyne (sinc² in g1), 1 for the paper's form."""
    return 2 if form == "homodyne" else 1


def _g1_factors(i_diff, i_shear, cos_dphi, q: float, L: float, dt: float, form: str):
    """(g1_diff, Φ, sinc(Φ)); the last two are None without shear."""
    choice("form", form, FORMS)
    g1_diff = jnp.exp(jnp.clip(-0.5 * q * q * dt * i_diff, LOG_G1_MIN, 0.0))
    if i_shear is None:
        return g1_diff, None, None
    phase = shear_phase(i_shear, cos_dphi, q, L, dt, form)
    return g1_diff, phase, sinc(phase)


def _with_shear(g1_diff, s, form: str):
    return g1_diff if s is None else g1_diff * (s * s if _shear_power(form) == 2 else s)


def g1_field(i_diff, i_shear, cos_dphi, q: float, L: float, dt: float, form: str):
    """g1 = g1_diff·sinc²(Φ) (homodyne) or g1_diff·sinc(Φ_p) (paper); no shear when i_shear is None."""
    g1_diff, _, s = _g1_factors(i_diff, i_shear, cos_dphi, q, L, dt, form)
    return _with_shear(g1_diff, s, form)


def sinc_derivative(z, s):
    """d/dz sin z / z given s = sinc(z): (cos z − s)/z, or near 0 (|z| < 0.01) its Taylor series
    −z/3 + z³/30 − z⁵/840 + z⁷/45360, where the difference cos z − s would lose up to 8 digits to
    cancellation (autodiff of sinc loses them there too)."""
    small = jnp.abs(z) < SINC_DERIVATIVE_SERIES_BELOW
    z_safe = jnp.where(small, 1.0, z)
    z2 = z * z
    series = z * (-1.0 / 3.0 + z2 * (1.0 / 30.0 + z2 * (-1.0 / 840.0 + z2 / 45360.0)))
    return jnp.where(small, series, (jnp.cos(z_safe) - s) / z_safe)


def g1_squared_partials(delta_d, delta_g, cos_dphi, q: float, L: float, dt: float, form: str):
    """G = max(g1², 1e-20) at pair differences ΔS_D = S_D[t1] − S_D[t2], ΔS_γ̇ (None: static), and
    its partials (∂G/∂ΔS_D, ∂G/∂ΔS_γ̇, ∂G/∂cos(φ0 − φ)) from the same intermediates: about one more
    cosine per point instead of a pass per parameter. Where the floor or homodyne's clip of
    log g1_diff at −700 holds, G does not move and the partials are 0 (as autodiff gives)."""
    a = 0.5 * q * q * dt
    i_diff = pair_integral(delta_d, 0.0)
    i_shear = None if delta_g is None else pair_integral(delta_g, 0.0)
    g1_diff, phase, s = _g1_factors(i_diff, i_shear, cos_dphi, q, L, dt, form)
    g1 = _with_shear(g1_diff, s, form)
    g2 = g1 * g1
    live = g2 > RATE_FLOOR**2
    value = jnp.maximum(g2, RATE_FLOOR**2)
    d_log_diff = jnp.where(-a * i_diff > LOG_G1_MIN, -a * delta_d / i_diff, 0.0)
    d_delta_d = jnp.where(live, 2.0 * g2 * d_log_diff, 0.0)
    if delta_g is None:
        return value, d_delta_d, None, None
    e = _shear_power(form)
    # ∂G/∂Φ = 2e·g1_diff²·sinc^(2e−1)·sinc′: written without dividing by sinc, which may be 0
    d_phase = 2.0 * e * g1_diff * g1_diff * (s * s * s if e == 2 else s) * sinc_derivative(phase, s)
    d_phase = jnp.where(live, d_phase, 0.0)
    c = shear_phase(1.0, 1.0, q, L, dt, form)   # Φ = c·cos(φ0 − φ)·I_γ̇
    return value, d_delta_d, d_phase * c * cos_dphi * delta_g / i_shear, d_phase * c * i_shear


def c2_from_g1(g1, contrast, offset):
    """offset + contrast·max(g1², 1e-20): homodyne's floor g1 ≥ 1e-10, written on g1² so that it
    also holds for the paper form, whose g1 can be negative."""
    return offset + contrast * jnp.maximum(g1 * g1, RATE_FLOOR**2)


def cos_delta_phi(physical, phi_deg, mode: str):
    """cos(φ0 − φ), angles in degrees; None in static mode (no shear)."""
    choice("mode", mode, tuple(MODES))
    if mode == "static":
        return None
    return jnp.cos(jnp.deg2rad(physical[6] - phi_deg))


def c2_at_pairs(physical, s_d, s_g, idx1, idx2, phi_deg, contrast, offset, *, q, L, dt, mode, form):
    """c2 at frame pairs (idx1, idx2), angles phi_deg; every argument broadcasts against the others."""
    i_diff = pair_integral(s_d[idx1], s_d[idx2])
    i_shear = None if s_g is None else pair_integral(s_g[idx1], s_g[idx2])
    g1 = g1_field(i_diff, i_shear, cos_delta_phi(physical, phi_deg, mode), q, L, dt, form)
    return c2_from_g1(g1, contrast, offset)


# ---- public API -------------------------------------------------------------------------------

def two_time_c2(params, *, phi, n_t, dt, q, L, contrast, offset, mode="laminar_flow", form="homodyne"):
    """The full two-time correlation c2[φ, t1, t2], shape (n_phi, n_t, n_t).

    ``params`` holds 3 (static) or 7 (laminar_flow) physical values in PHYSICAL_NAMES order;
    ``contrast`` and ``offset`` are scalars or one value per angle of ``phi`` (degrees); ``q`` is a
    scalar or one value per angle (maps of several q rings). Returns a jax.Array (``np.asarray``
    gives NumPy); it stays differentiable in ``params``.
    """
    choice("mode", mode, tuple(MODES))
    choice("form", form, FORMS)
    angles = _angles(phi)
    n_t, dt, q, L = _n_frames(n_t), number("dt", dt), map_q(q, len(angles)), number("L", L)
    if isinstance(q, tuple):
        q = jnp.asarray(q)[:, None, None]
    contrast = jnp.asarray(per_item("contrast", contrast, len(angles)))[:, None, None]
    offset = jnp.asarray(per_item("offset", offset, len(angles)))[:, None, None]
    physical = _physical(params, mode)

    s_d, s_g = rate_integrals(physical, n_t, dt, mode)
    frames = jnp.arange(n_t)
    return c2_at_pairs(physical, s_d, s_g, frames[None, :, None], frames[None, None, :],
                       jnp.asarray(angles)[:, None, None], contrast, offset,
                       q=q, L=L, dt=dt, mode=mode, form=form)


def angle_groups(mode: str, scaling: str, n_physical: int | None = None):
    """The parameter groups of the model: the ``n_physical`` fitted physical parameters (the mode's,
    more with parameters per file) shared, and with scaling ``individual`` one contrast and one offset
    per angle (all contrasts, then all offsets)."""
    from ..groups import ParameterGroups

    n_phys = MODES[mode] if n_physical is None else n_physical
    if scaling == "individual":
        return ParameterGroups(n_phys, 2, "by_parameter")
    return ParameterGroups(n_phys + (2 if scaling == "shared" else 0), 0)


@dataclass(frozen=True)
class TwoTimeModel:
    """c2 at points x = (map index, t1 frame, t2 frame) as a model for ``hpcfit.curve_fit``.

    ``model(x, *params)`` takes x of shape (3, n) (float arrays holding integers) and returns c2 of
    shape (n,). A map is one angle ``phi[i]`` of one q ring: ``q`` is a number (one ring) or one
    value per map (several rings in one fit: the diffusion term goes with q², the shear term with
    q, the physical parameters are shared). params are the physical parameters
    (``fitted_physical_names``) followed, for scaling ``individual``, by n_phi contrasts then n_phi
    offsets (one per map); for ``shared`` by one contrast then one offset; for ``fixed`` by nothing
    (``contrast``/``offset`` given here are used).

    A series of files (``file_of_map``: each map's file, 0, 1, …) may fit some physical parameters per
    file (``per_file``, names of ``physical_names``: e.g. D0 of each temperature), the others shared
    by all files; such a parameter is fitted once per file, named ``D0_file1``, ``D0_file2``, … in the
    place of D0. Hash and equality are over the normalised configuration, so equal models share
    compiled kernels.
    """

    phi: tuple
    n_t: int
    dt: float
    q: float | tuple
    L: float
    mode: str = "laminar_flow"
    scaling: str = "individual"
    form: str = "homodyne"
    contrast: tuple | None = None
    offset: tuple | None = None
    labels: tuple | None = None     # each map's name in per-map parameter names (default: see map_labels)
    per_file: tuple = ()            # physical parameters fitted once per file of a series
    file_of_map: tuple | None = None   # each map's file (0, 1, …), needed with per_file

    def __post_init__(self):
        choice("mode", self.mode, tuple(MODES))
        choice("scaling", self.scaling, SCALINGS)
        choice("form", self.form, FORMS)
        angles = _angles(self.phi)
        normalised = dict(phi=angles, n_t=_n_frames(self.n_t), dt=number("dt", self.dt),
                          q=map_q(self.q, len(angles)), L=number("L", self.L))
        if self.scaling == "fixed":
            for name in ("contrast", "offset"):
                if getattr(self, name) is None:
                    raise InputError(f"`{name}` is required with scaling='fixed'")
                normalised[name] = tuple(per_item(name, getattr(self, name), len(angles)).tolist())
        elif self.contrast is not None or self.offset is not None:
            raise InputError(f"`contrast` and `offset` are only used with scaling='fixed'; with "
                             f"scaling={self.scaling!r} they are fitted parameters")
        if self.labels is not None:
            labels = tuple(str(v) for v in self.labels)
            if len(labels) != len(angles) or len(set(labels)) != len(labels):
                raise InputError(f"`labels` must name each of the {len(angles)} maps once; got {self.labels!r}")
            normalised["labels"] = labels
        normalised.update(self._files(len(angles)))
        for name, value in normalised.items():
            object.__setattr__(self, name, value)

    def _files(self, n_maps: int) -> dict:
        """``per_file`` and ``file_of_map`` checked (file_of_map is kept only with per_file)."""
        names = PHYSICAL_NAMES[:MODES[self.mode]]
        per_file = (self.per_file,) if isinstance(self.per_file, str) else tuple(self.per_file or ())
        if any(n not in names for n in per_file) or len(set(per_file)) != len(per_file):
            raise InputError(f"`per_file` must name physical parameters of mode {self.mode!r} ({', '.join(names)}), "
                             f"each once; got {list(per_file)!r}")
        if not per_file:
            return {"per_file": (), "file_of_map": None}
        try:
            files = np.asarray(self.file_of_map, dtype=float)
        except (TypeError, ValueError):
            files = np.empty(0)
        if (self.file_of_map is None or files.shape != (n_maps,) or np.any(files != np.round(files))
                or files.min() != 0 or set(files.astype(int).tolist()) != set(range(int(files.max()) + 1))
                or files.max() < 1):
            raise InputError(f"`per_file` ({', '.join(per_file)}) needs a series of files: `file_of_map` with "
                             f"each of the {n_maps} maps' file (0, 1, …, every file used, at least two); "
                             f"got {self.file_of_map!r}")
        return {"per_file": tuple(n for n in names if n in per_file), "file_of_map": tuple(files.astype(int).tolist())}

    @property
    def n_files(self) -> int:
        """Files whose physical parameters may differ (1 without ``per_file``)."""
        return 1 if self.file_of_map is None else max(self.file_of_map) + 1

    @property
    def fitted_physical_names(self) -> list:
        """The physical parameters as fitted: ``physical_names``, each of ``per_file`` once per file."""
        return [name for base in self.physical_names
                for name in ([f"{base}_file{f + 1}" for f in range(self.n_files)] if base in self.per_file
                             else [base])]

    def _file_columns(self) -> list:
        """For each file, the position in the parameter vector of each physical parameter."""
        names = self.fitted_physical_names
        return [[names.index(f"{base}_file{f + 1}" if base in self.per_file else base) for base in self.physical_names]
                for f in range(self.n_files)]

    def expand_physical(self, values) -> np.ndarray:
        """Values of ``physical_names`` (one per physical parameter) as ``fitted_physical_names``: a
        parameter fitted per file starts from the same value for every file."""
        values = np.asarray(values, dtype=float)
        out = np.empty(len(self.fitted_physical_names))
        for columns in self._file_columns():
            out[columns] = values
        return out

    @property
    def n_phi(self) -> int:
        return len(self.phi)

    @property
    def q_maps(self) -> tuple:
        """The q of every map."""
        return self.q if isinstance(self.q, tuple) else (self.q,) * self.n_phi

    def _q_at(self, angle):
        """q at each point (a constant for one ring)."""
        return jnp.asarray(self.q)[angle] if isinstance(self.q, tuple) else self.q

    @property
    def map_labels(self) -> list:
        """How the per-map parameters are named: ``labels`` when given, else the map index for one
        ring, its (q, φ) for several."""
        if self.labels is not None:
            return list(self.labels)
        if not isinstance(self.q, tuple):
            return [str(i) for i in range(self.n_phi)]
        return [f"q{q:.6g}_phi{phi:g}" for q, phi in zip(self.q, self.phi)]

    @property
    def physical_names(self) -> list:
        return list(PHYSICAL_NAMES[:MODES[self.mode]])

    @property
    def parameter_names(self) -> list:
        if self.scaling == "individual":
            labels = self.map_labels
            scale = [f"contrast_{m}" for m in labels] + [f"offset_{m}" for m in labels]
        else:
            scale = ["contrast", "offset"] if self.scaling == "shared" else []
        return self.fitted_physical_names + scale

    @property
    def n_params(self) -> int:
        return len(self.parameter_names)

    def _scales(self, params):
        """(contrast, offset) per angle, each of shape (n_phi,)."""
        n_phys, n_phi = len(self.fitted_physical_names), self.n_phi
        if self.scaling == "individual":
            return (jnp.stack(params[n_phys:n_phys + n_phi]), jnp.stack(params[n_phys + n_phi:]))
        if self.scaling == "shared":
            return (jnp.full(n_phi, params[n_phys]), jnp.full(n_phi, params[n_phys + 1]))
        return jnp.asarray(self.contrast), jnp.asarray(self.offset)

    @property
    def parameter_groups(self):
        """The angles are the groups (block-sparse Jacobian passes, :mod:`hpcfit.groups`)."""
        return angle_groups(self.mode, self.scaling, len(self.fitted_physical_names))

    def _frames_and_scales(self, x, params):
        """The physical parameters of each file (a list), contrast and offset at each point, and the
        points' map, frames and file (None with one file)."""
        if len(params) != self.n_params:
            raise InputError(f"TwoTimeModel takes {self.n_params} parameters ({', '.join(self.parameter_names)}); "
                             f"got {len(params)}")
        physical = [jnp.stack([jnp.asarray(params[i], dtype=jnp.float64) for i in columns])
                    for columns in self._file_columns()]
        contrast, offset = self._scales(params)
        angle, t1, t2 = (jnp.asarray(x)[k].astype(jnp.int32) for k in range(3))
        file = None if self.file_of_map is None else jnp.asarray(self.file_of_map, dtype=jnp.int32)[angle]
        return physical, contrast[angle], offset[angle], angle, t1, t2, file

    @staticmethod
    def _by_file(per_file: list, file):
        """A per-file table (one array per file) and, for indices into its last axes, its values at
        each point's file: with one file, the table itself (the same gathers as without files)."""
        if file is None:
            return lambda *index: per_file[0][index]
        table = jnp.stack(per_file)
        return lambda *index: table[(file,) + index]

    def _physical_columns(self, d_phys, file):
        """∂c2/∂(physical parameters) (n, n_phys) as the fitted columns: a per-file parameter's
        derivative goes to its file's column, 0 in the others."""
        if file is None:
            return d_phys
        columns = []
        for k, base in enumerate(self.physical_names):
            if base in self.per_file:
                columns.append(d_phys[:, k:k + 1] * (file[:, None] == jnp.arange(self.n_files)[None, :]))
            else:
                columns.append(d_phys[:, k:k + 1])
        return jnp.concatenate(columns, axis=1)

    def _map_table(self, physical, contrast, offset):
        """Per map: [contrast, offset] and, with shear, [cos(φ0 − φ), ∂cos(φ0 − φ)/∂φ0] at its file's
        φ0, and with several rings [q]: one gather per point instead of one per quantity."""
        columns = [contrast, offset]
        if self.mode != "static":
            phi0 = (physical[0][6] if self.file_of_map is None
                    else jnp.stack([ph[6] for ph in physical])[jnp.asarray(self.file_of_map)])
            delta = jnp.deg2rad(phi0 - jnp.asarray(self.phi))
            columns += [jnp.cos(delta), -jnp.sin(delta) * (math.pi / 180.0)]
        if isinstance(self.q, tuple):
            columns.append(jnp.asarray(self.q))
        return jnp.stack([jnp.broadcast_to(c, (self.n_phi,)) for c in columns], axis=1)

    def grouped_jacobian(self, x, *params):
        """c2 and its derivatives as the block-sparse Jacobian pass wants them: (c2, ∂c2/∂shared
        (n, n_shared), ∂c2/∂own (n, 2 or 0)).

        A pair depends on the physical parameters only through ΔS_D = S_D[t1] − S_D[t2], ΔS_γ̇ and
        cos(φ0 − φ): the per-frame derivatives of S come from one forward pass over the n_t frames
        (once per chunk), the per-angle ones of cos from the n_phi angles, and each point needs
        only the three partials of g1² (:func:`g1_squared_partials`) and two gathers of one
        per-frame table [S_D, S_γ̇, ∂S/∂(rate parameters)] and one of a per-map table.
        """
        if len(params) != self.n_params:
            raise InputError(f"TwoTimeModel takes {self.n_params} parameters ({', '.join(self.parameter_names)}); "
                             f"got {len(params)}")
        physical = [jnp.stack([jnp.asarray(params[i], dtype=jnp.float64) for i in columns])
                    for columns in self._file_columns()]
        angle, t1, t2 = (jnp.asarray(x)[k].astype(jnp.int32) for k in range(3))
        file = None if self.file_of_map is None else jnp.asarray(self.file_of_map, dtype=jnp.int32)[angle]
        n_phys = MODES[self.mode]
        static = self.mode == "static"
        integrals = lambda ph: rate_integrals(ph, self.n_t, self.dt, self.mode)  # noqa: E731

        def frame_table(ph):
            # per frame: S_D, (S_γ̇,) ∂S_D/∂(D's three), (∂S_γ̇/∂(γ̇'s three))
            (s_d, s_g), (ds_d, ds_g) = integrals(ph), jax.jacfwd(integrals)(ph)
            if static:
                return jnp.concatenate([s_d[:, None], ds_d[:, :3]], axis=1)
            return jnp.concatenate([s_d[:, None], s_g[:, None], ds_d[:, :3], ds_g[:, 3:6]], axis=1)

        frames = self._by_file([frame_table(ph) for ph in physical], file)
        diff = frames(t1) - frames(t2)
        at_map = self._map_table(physical, *self._scales(params))[angle]
        contrast, offset = at_map[:, 0], at_map[:, 1]
        q = at_map[:, -1] if isinstance(self.q, tuple) else self.q
        if static:
            g2, d_d, _, _ = g1_squared_partials(diff[:, 0], None, None, q, self.L, self.dt, self.form)
            d_phys = d_d[:, None] * diff[:, 1:4]
        else:
            g2, d_d, d_g, d_c = g1_squared_partials(diff[:, 0], diff[:, 1], at_map[:, 2], q, self.L, self.dt,
                                                    self.form)
            d_phys = jnp.concatenate([d_d[:, None] * diff[:, 2:5], d_g[:, None] * diff[:, 5:8],
                                      (d_c * at_map[:, 3])[:, None]], axis=1)
        d_phys = self._physical_columns(contrast[:, None] * d_phys[:, :n_phys], file)
        value = offset + contrast * g2
        scale_columns = jnp.stack([g2, jnp.ones_like(g2)], axis=1)
        if self.scaling == "individual":
            return value, d_phys, scale_columns
        empty = jnp.zeros((g2.shape[0], 0))
        if self.scaling == "shared":
            return value, jnp.concatenate([d_phys, scale_columns], axis=1), empty
        return value, d_phys, empty

    def __call__(self, x, *params):
        physical, contrast, offset, angle, t1, t2, file = self._frames_and_scales(x, params)
        integrals = [rate_integrals(ph, self.n_t, self.dt, self.mode) for ph in physical]
        s_d = self._by_file([s for s, _ in integrals], file)
        i_diff = pair_integral(s_d(t1), s_d(t2))
        i_shear = cos_dphi = None
        if integrals[0][1] is not None:
            s_g = self._by_file([s for _, s in integrals], file)
            i_shear = pair_integral(s_g(t1), s_g(t2))
            # per angle, then gathered
            cos_dphi = self._by_file([cos_delta_phi(ph, jnp.asarray(self.phi), self.mode) for ph in physical],
                                     file)(angle)
        g1 = g1_field(i_diff, i_shear, cos_dphi, self._q_at(angle), self.L, self.dt, self.form)
        return c2_from_g1(g1, contrast, offset)
