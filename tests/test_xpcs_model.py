"""XPCS two-time model: spot values of the homodyne 2.23 kernel, the paper form, the fit model, errors."""
import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hpcfit
from hpcfit import InputError
from hpcfit.models.xpcs import TwoTimeModel, c2_at_pairs, g1_field, rate_integrals, shear_phase, sinc, two_time_c2

PHI = [-10.0, 0.0, 15.0, 45.0, 90.0, 135.0, 180.0]
SETUP = dict(phi=PHI, n_t=64, dt=0.5, q=0.0054, L=2e6)
PHYSICAL = [1500.0, -0.25, 20.0, 3e-4, 0.35, 1e-5, 5.0]
CONTRAST = [0.20 + 0.02 * i for i in range(len(PHI))]
OFFSET = [1.0 + 0.001 * i for i in range(len(PHI))]
LAGS = [1, 2, 5, 10, 40]


def c2(params=PHYSICAL, mode="laminar_flow", form="homodyne", **changes):
    kwargs = dict(SETUP, contrast=CONTRAST, offset=OFFSET, mode=mode, form=form)
    kwargs.update(changes)
    return np.asarray(two_time_c2(params if mode == "laminar_flow" else params[:3], **kwargs))


def _reference(params, phi, n_t, dt, q, L, contrast, offset, form):
    """The kernel with NumPy and loops, written from the description, for one angle."""
    t = np.arange(n_t) * dt
    t[0] = dt / 2
    d = np.maximum(params[0] * t ** params[1] + params[2], 1e-10)
    g = np.maximum(params[3] * t ** params[4] + params[5], 1e-10)
    s_d, s_g = np.zeros(n_t), np.zeros(n_t)
    for k in range(1, n_t):
        s_d[k] = s_d[k - 1] + (d[k - 1] + d[k]) / 2
        s_g[k] = s_g[k - 1] + (g[k - 1] + g[k]) / 2
    out = np.empty((n_t, n_t))
    cos = math.cos(math.radians(params[6] - phi))
    for i in range(n_t):
        for j in range(n_t):
            g1_diff = math.exp(min(-0.5 * q * q * dt * math.sqrt((s_d[i] - s_d[j]) ** 2 + 1e-12), 0.0))
            gamma = dt * math.sqrt((s_g[i] - s_g[j]) ** 2 + 1e-12)          # shear integral, time units
            if form == "homodyne":
                z = q * L * gamma * cos / (2 * math.pi)
                out[i, j] = offset + contrast * max(g1_diff * (math.sin(z) / z) ** 2, 1e-10) ** 2
            else:
                z = q * L * gamma * cos / 2
                out[i, j] = offset + contrast * g1_diff**2 * (math.sin(z) / z) ** 2
    return out


def _pairs(n_phi, n_t):
    """x of shape (3, n) for every angle and every t1 < t2, and the matching index tuple."""
    i1, i2 = np.triu_indices(n_t, 1)
    angle = np.repeat(np.arange(n_phi), i1.size)
    t1, t2 = np.tile(i1, n_phi), np.tile(i2, n_phi)
    return np.stack([angle, t1, t2]).astype(float), (angle, t1, t2)


# ---- the homodyne kernel --------------------------------------------------------------------

@pytest.mark.parametrize("mode, angle, t1, expected", [
    ("laminar_flow", 1, 0, [1.209759282368, 1.185719984648, 1.051355981216, 1.001011320182, 1.001000000038]),
    ("laminar_flow", 4, 0, [1.276012634167, 1.269302952808, 1.251995280902, 1.221356700421, 1.012812392090]),
    ("static", 1, 20, [1.218263758224, 1.215592616661, 1.207938183627, 1.196224345430, 1.143926440547]),
])
def test_spot_values_of_the_homodyne_kernel(mode, angle, t1, expected):
    c = c2(mode=mode)
    assert c.shape == (len(PHI), 64, 64) and c.dtype == np.float64
    got = [c[angle, t1, t1 + lag] for lag in LAGS]
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=0)


@pytest.mark.parametrize("form", ["homodyne", "paper"])
def test_agrees_with_a_loop_reference(form):
    setup = dict(SETUP, n_t=24)
    c = c2(form=form, n_t=24)
    for k in (1, 3, 4):
        ref = _reference(PHYSICAL, PHI[k], 24, setup["dt"], setup["q"], setup["L"], CONTRAST[k], OFFSET[k], form)
        np.testing.assert_allclose(c[k], ref, rtol=1e-12, atol=0)


@pytest.mark.parametrize("mode", ["static", "laminar_flow"])
@pytest.mark.parametrize("form", ["homodyne", "paper"])
def test_symmetric_and_largest_on_the_diagonal(mode, form):
    c = c2(mode=mode, form=form)
    np.testing.assert_array_equal(c, np.swapaxes(c, 1, 2))
    top = (np.asarray(OFFSET) + np.asarray(CONTRAST))[:, None]
    diagonal = np.diagonal(c, axis1=1, axis2=2)
    # On the diagonal I = sqrt(1e-12) = 1e-6, not 0. For diffusion that moves g1 by ~1e-11, but
    # q·L ~ 1e4 turns it into a shear phase Φ ~ 1e-3, so with flow c2 is below its top by ~1e-6.
    rtol = 1e-10 if mode == "static" else 2e-6
    np.testing.assert_allclose(diagonal, np.broadcast_to(top, diagonal.shape), rtol=rtol, atol=0)
    assert np.all(c <= top[:, :, None] + 1e-15)
    assert np.all(c <= diagonal[:, :, None] + 1e-15)            # decorrelation grows with |t1 − t2|


def test_static_mode_ignores_the_angle():
    c = c2(mode="static", contrast=0.3, offset=1.0)
    np.testing.assert_array_equal(c, np.broadcast_to(c[:1], c.shape))


def test_sinc_taylor_branch_is_continuous_and_differentiable():
    z = jnp.array([0.0, 1e-8, 0.99e-4, 1.01e-4, 0.5, -0.5, 3.0])
    safe = np.where(np.asarray(z) == 0, 1.0, np.asarray(z))
    exact = np.where(np.asarray(z) == 0, 1.0, np.sin(safe) / safe)
    np.testing.assert_allclose(np.asarray(sinc(z)), exact, rtol=1e-15, atol=0)
    grad = np.asarray(jax.vmap(jax.grad(sinc))(z))
    assert grad[0] == 0.0 and np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad[2], grad[3], rtol=2e-2)            # −z/3 on both sides of 1e-4


# ---- the paper form -------------------------------------------------------------------------

def test_paper_form_stays_between_offset_and_offset_plus_contrast():
    c = c2(form="paper")
    low = np.asarray(OFFSET)[:, None, None]
    high = low + np.asarray(CONTRAST)[:, None, None]
    assert np.all(c >= low) and np.all(c <= high + 1e-15)
    assert not np.allclose(c, c2(form="homodyne"))                   # the shear term does differ


def test_paper_form_equals_homodyne_without_shear():
    np.testing.assert_array_equal(c2(mode="static", form="paper"), c2(mode="static", form="homodyne"))
    # With γ̇ = 0 in laminar mode the shear integral is not 0 but sqrt(1e-12) = 1e-6 (PAIR_EPS), a
    # phase Φ ~ 1e-3 at q·L = 1e4: the forms then agree with static to ~1e-6 only, not exactly.
    no_flow = PHYSICAL[:3] + [0.0, 0.35, 0.0, 5.0]
    for form in ("homodyne", "paper"):
        np.testing.assert_allclose(c2(no_flow, form=form), c2(mode="static"), rtol=2e-6, atol=0)


# ---- the fit model --------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["static", "laminar_flow"])
@pytest.mark.parametrize("form", ["homodyne", "paper"])
@pytest.mark.parametrize("scaling", ["individual", "shared", "fixed"])
def test_model_matches_the_full_matrix(mode, form, scaling):
    physical = PHYSICAL[:3] if mode == "static" else PHYSICAL
    if scaling == "individual":
        model = TwoTimeModel(**SETUP, mode=mode, scaling=scaling, form=form)
        params, contrast, offset = physical + CONTRAST + OFFSET, CONTRAST, OFFSET
    elif scaling == "shared":
        model = TwoTimeModel(**SETUP, mode=mode, scaling=scaling, form=form)
        params, contrast, offset = physical + [0.25, 1.002], 0.25, 1.002
    else:
        model = TwoTimeModel(**SETUP, mode=mode, scaling=scaling, form=form, contrast=CONTRAST, offset=1.0)
        params, contrast, offset = physical, CONTRAST, 1.0
    assert model.n_params == len(params)
    x, index = _pairs(len(PHI), SETUP["n_t"])
    got = np.asarray(model(x, *params))
    full = c2(physical, mode=mode, form=form, contrast=contrast, offset=offset)
    assert got.shape == (x.shape[1],)
    np.testing.assert_allclose(got, full[index], rtol=1e-14, atol=0)


def test_parameter_names_and_order():
    model = TwoTimeModel(phi=[0, 90], n_t=8, dt=1.0, q=0.01, L=1e6)
    assert model.physical_names == ["D0", "alpha", "D_offset", "gamma_dot_t0", "beta", "gamma_dot_t_offset",
                                    "phi0"]
    assert model.parameter_names == model.physical_names + ["contrast_0", "contrast_1", "offset_0", "offset_1"]
    shared = TwoTimeModel(phi=[0, 90], n_t=8, dt=1.0, q=0.01, L=1e6, mode="static", scaling="shared")
    assert shared.parameter_names == ["D0", "alpha", "D_offset", "contrast", "offset"] and shared.n_params == 5
    fixed = TwoTimeModel(phi=[0, 90], n_t=8, dt=1.0, q=0.01, L=1e6, scaling="fixed", contrast=0.2, offset=1)
    assert fixed.parameter_names == fixed.physical_names and fixed.n_params == 7


def test_model_is_frozen_and_hashed_by_its_configuration():
    a = TwoTimeModel(**SETUP)
    b = TwoTimeModel(**dict(SETUP, phi=np.array(PHI)))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != TwoTimeModel(**SETUP, form="paper")
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.q = 1.0


@functools.partial(jax.jit, static_argnums=(0, 1))
def _jacobian(how, model, x, params):
    jac = jax.jacfwd if how == "forward" else jax.jacrev
    return jac(lambda p: model(x, *p))(params)


@pytest.mark.parametrize("phi0", [PHYSICAL[6], 90.0, 0.0])
def test_jacobian_is_finite_including_zero_shear_phase(phi0):
    # phi0 = 90 makes cos(φ0 − φ) = 0 at φ = 0 and 180 (Φ = 0, Taylor branch); phi0 = 0 puts
    # φ = 0 on the peak and φ = 90 on the zero.
    model = TwoTimeModel(**SETUP)
    params = jnp.asarray(PHYSICAL[:6] + [phi0] + CONTRAST + OFFSET)
    x, _ = _pairs(len(PHI), SETUP["n_t"])
    x = jnp.concatenate([jnp.asarray(x), jnp.array([[1.0, 4.0], [3.0, 3.0], [3.0, 3.0]])], axis=1)  # + diagonal
    jac = np.asarray(_jacobian("forward", model, x, params))
    assert jac.shape == (x.shape[1], model.n_params) and np.all(np.isfinite(jac))
    assert np.any(jac[:, 6] != 0)
    rev = np.asarray(_jacobian("reverse", model, x[:, :50], params))
    np.testing.assert_allclose(rev, jac[:50], rtol=1e-10, atol=1e-14)


def test_curve_fit_recovers_static_parameters_and_reuses_its_kernels():
    setup = dict(phi=[0.0, 90.0], n_t=40, dt=0.5, q=0.0054, L=2e6, mode="static", scaling="shared")
    truth = [1500.0, -0.25, 20.0, 0.25, 1.0]
    x, _ = _pairs(2, 40)
    y = np.asarray(TwoTimeModel(**setup)(x, *truth))
    p0 = [1300.0, -0.2, 25.0, 0.2, 1.01]
    first = hpcfit.curve_fit(TwoTimeModel(**setup), x, y, p0=p0, verbose=0)
    assert first.success
    np.testing.assert_allclose(first.popt, truth, rtol=1e-6)
    # An equal model built anew hashes the same, so nothing is compiled again.
    second = hpcfit.curve_fit(TwoTimeModel(**setup), x, y, p0=p0, verbose=0)
    assert not any(second.compile_counts.values()), second.compile_counts


# ---- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, name", [
    (dict(params=PHYSICAL[:3]), "params"),
    (dict(params=PHYSICAL, mode="static"), "params"),
    (dict(params=["D0"] * 7), "params"),
    (dict(mode="turbulent"), "mode"),
    (dict(form="sinc"), "form"),
    (dict(contrast=[0.2, 0.3]), "contrast"),
    (dict(offset=[[1.0] * 7]), "offset"),
    (dict(offset=[1.0] * 6 + [np.nan]), "offset"),
    (dict(n_t=1), "n_t"),
    (dict(n_t=10.0), "n_t"),
    (dict(dt=0.0), "dt"),
    (dict(dt=-0.5), "dt"),
    (dict(dt=np.inf), "dt"),
    (dict(q=0), "q"),
    (dict(L=-2e6), "L"),
    (dict(phi=[]), "phi"),
    (dict(phi=[0.0, np.nan]), "phi"),
])
def test_bad_evaluator_input_names_the_argument(changes, name):
    kwargs = dict(SETUP, contrast=0.2, offset=1.0, params=PHYSICAL)
    kwargs.update(changes)
    params = kwargs.pop("params")
    with pytest.raises(InputError, match=f"`{name}`"):
        two_time_c2(params, **kwargs)


@pytest.mark.parametrize("changes, name", [
    (dict(scaling="per_angle"), "scaling"),
    (dict(form="Paper"), "form"),
    (dict(mode="flow"), "mode"),
    (dict(scaling="fixed", offset=1.0), "contrast"),
    (dict(scaling="fixed", contrast=[0.2, 0.3], offset=1.0), "contrast"),
    (dict(contrast=0.2), "contrast"),
    (dict(n_t=1), "n_t"),
    (dict(dt=0), "dt"),
])
def test_bad_model_configuration_names_the_argument(changes, name):
    with pytest.raises(InputError, match=f"`{name}`"):
        TwoTimeModel(**dict(SETUP, **changes))


def test_model_called_with_the_wrong_number_of_parameters():
    model = TwoTimeModel(**SETUP, scaling="shared")
    x, _ = _pairs(len(PHI), 4)
    with pytest.raises(InputError, match="takes 9 parameters"):
        model(x, *PHYSICAL)


def test_kernel_helpers_validate_form_and_mode():
    one = jnp.ones(3)
    with pytest.raises(InputError, match="`form`"):
        shear_phase(one, one, 0.01, 1e6, 1.0, "Homodyne")
    with pytest.raises(InputError, match="`form`"):
        g1_field(one, None, None, 0.01, 1e6, 1.0, "papers")      # validated even without shear
    with pytest.raises(InputError, match="`mode`"):
        rate_integrals(jnp.ones(7), 4, 1.0, "flow")
    s_d, s_g = rate_integrals(jnp.asarray(PHYSICAL), 4, 1.0, "laminar_flow")
    with pytest.raises(InputError, match="`mode`"):
        c2_at_pairs(jnp.asarray(PHYSICAL), s_d, s_g, 0, 1, 0.0, 0.2, 1.0, q=0.01, L=1e6, dt=1.0, mode="Static",
                    form="homodyne")


@pytest.mark.parametrize("mode, scaling, form", [("laminar_flow", "individual", "homodyne"),
                                                 ("laminar_flow", "shared", "paper"),
                                                 ("laminar_flow", "fixed", "homodyne"),
                                                 ("static", "individual", "homodyne"),
                                                 ("static", "shared", "paper")])
@pytest.mark.parametrize("regime", ["typical", "floored", "no_shear"])
def test_grouped_jacobian_equals_autodiff(mode, scaling, form, regime):
    """The block-sparse pass's hand-made derivatives (per-frame table, three partials per point) are
    JAX's own, also where g1 is floored / log g1 clipped and where Φ is in sinc's Taylor range."""
    import jax
    import jax.numpy as jnp

    from hpcfit import PairGrid

    n_phi, n_t = 4, 30
    phi = tuple(np.linspace(-150.0, 150.0, n_phi))
    kw = {"contrast": 0.2, "offset": 1.0} if scaling == "fixed" else {}
    model = TwoTimeModel(phi, n_t, 0.5, 0.0054, 2e6, mode=mode, scaling=scaling, form=form, **kw)
    physical = {"typical": [1500.0, -0.25, 20.0, 3e-4, 0.35, 1e-5, 5.0],
                "floored": [3e8, 0.0, 0.0, 3e-4, 0.35, 1e-5, 5.0],          # g1_diff = e^-700 beyond a few lags
                "no_shear": [1500.0, -0.25, 20.0, 1e-12, 0.0, 0.0, 5.0]}[regime][:len(model.physical_names)]
    rest = {"individual": [0.2 + 0.01 * i for i in range(n_phi)] + [1.0 + 0.001 * i for i in range(n_phi)],
            "shared": [0.2, 1.0], "fixed": []}[scaling]
    theta = np.array(physical + rest)
    x = PairGrid(n_phi, n_t)(jnp.arange(PairGrid(n_phi, n_t).n_points))
    value, d_shared, d_own = model.grouped_jacobian(x, *theta)
    jac = np.asarray(jax.jacfwd(lambda t: model(x, *t))(jnp.asarray(theta)))
    np.testing.assert_array_equal(np.asarray(value), np.asarray(model(x, *theta)))
    groups = model.parameter_groups
    s = groups.n_shared
    col_scale = np.abs(jac).max(axis=0) + 1e-300
    # autodiff of sin z / z loses up to 8 digits to cancellation for 1e-4 < |Φ| < 1e-2 (no shear), where
    # the series is exact: there the two agree to what autodiff keeps
    tol = 1e-7 if regime == "no_shear" and mode == "laminar_flow" else 1e-12
    assert np.all(np.abs(np.asarray(d_shared) - jac[:, :s]) <= tol * col_scale[:s])
    angle = np.asarray(x[0]).astype(int)
    for j in range(groups.per_group):
        own = jac[np.arange(angle.size), s + j * n_phi + angle]
        np.testing.assert_allclose(np.asarray(d_own[:, j]), own, rtol=1e-14, atol=0)
    assert np.all((jac[:, s:] != 0).sum(axis=1) <= groups.per_group)     # a point touches its angle's only
