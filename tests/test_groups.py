"""Block-sparse Jacobian passes (hpcfit.groups): the arrow-shaped JᵀWJ equals the dense one."""
import numpy as np
import pytest

import hpcfit
from hpcfit.comm import Communicator
from hpcfit import RegularGrid
from hpcfit.data import ArraySource
from hpcfit.errors import InputError
from hpcfit.groups import ParameterGroups, resolve_groups
from hpcfit.kernels.evaluator import PassEvaluator

N_SHARED = 3


class GroupedDecay:
    """amp_g·exp(−b·t) + a·sin(c·t) + off_g for group g: x = (group, t); hashable, so kernels are reused."""

    def __init__(self, n_groups, layout):
        self.n_groups, self.layout = n_groups, layout

    def __hash__(self):
        return hash((self.n_groups, self.layout))

    def __eq__(self, other):
        return isinstance(other, GroupedDecay) and (other.n_groups, other.layout) == (self.n_groups, self.layout)

    def own(self, params):
        import jax.numpy as jnp

        rest = jnp.stack(params[N_SHARED:])
        g = self.n_groups
        if self.layout == "by_parameter":
            return rest[:g], rest[g:]
        return rest[0::2], rest[1::2]

    def __call__(self, x, *params):
        import jax.numpy as jnp

        a, b, c = params[:N_SHARED]
        amp, off = self.own(params)
        g = x[0].astype(jnp.int32)
        return amp[g] * jnp.exp(-b * x[1]) + a * jnp.sin(c * x[1]) + off[g]


def _theta(n_groups, layout, rng):
    amp, off = 1.0 + 0.3 * rng.random(n_groups), 0.1 * rng.standard_normal(n_groups)
    own = np.concatenate([amp, off]) if layout == "by_parameter" else np.stack([amp, off], axis=1).reshape(-1)
    return np.concatenate([[0.5, 0.7, 1.3], own])


def _data(sizes, layout, seed=0):
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(len(sizes)), sizes).astype(float)
    t = rng.uniform(0, 3, group.size)
    model = GroupedDecay(len(sizes), layout)
    theta = _theta(len(sizes), layout, rng)
    y = np.asarray(model(np.stack([group, t]), *theta)) + 0.01 * rng.standard_normal(group.size)
    return model, np.stack([group, t]), y, theta, rng


def _grid_data(n_groups, n_t, layout, seed):
    """A grouped model on a RegularGrid (group × t) and noisy data from it."""
    model = GroupedDecay(n_groups, layout)
    grid = RegularGrid(np.arange(n_groups), np.linspace(0, 3, n_t))
    rng = np.random.default_rng(seed)
    theta = _theta(n_groups, layout, rng)
    y = np.asarray(model(grid(np.arange(grid.n_points)), *theta)) + 0.01 * rng.standard_normal(grid.n_points)
    return model, grid, y, theta


def _passes(model, source, u, chunk_size, groups, loss="linear"):
    p = u.size
    with Communicator(None) as hc:
        local = source.open(hc, chunk_size)
        layout = None if groups is None else resolve_groups(groups, p, local.n_points, local.coords, chunk_size)
        ev = PassEvaluator(hc, local, model, loss, 0.5, np.zeros(p), np.ones(p), "forward", 1.0, layout)
        out = ev.jacobian_pass(u)
        ev.close()
    return out, layout


@pytest.mark.parametrize("layout", ["by_parameter", "by_group"])
@pytest.mark.parametrize("loss", ["linear", "soft_l1"])
@pytest.mark.parametrize("chunk_size", [5, 64, 1000])          # a chunk spanning 3 groups; boundaries inside chunks
def test_block_sparse_normal_equations_equal_dense(layout, loss, chunk_size):
    sizes = [100, 7, 3, 250, 40]                              # unequal; 7 and 3 smaller than a chunk
    model, x, y, theta, rng = _data(sizes, layout)
    u = theta * (1 + 0.2 * rng.standard_normal(theta.size))
    groups = ParameterGroups(N_SHARED, 2, layout, group_sizes=sizes)
    dense, _ = _passes(model, ArraySource(x, y), u, chunk_size, None, loss)
    sparse, resolved = _passes(model, ArraySource(x, y), u, chunk_size, groups, loss)
    chunks = np.arange(x.shape[1]) // chunk_size
    assert resolved.span == max(len(np.unique(x[0][chunks == k])) for k in np.unique(chunks))
    scale = np.abs(dense.jtj).max()
    np.testing.assert_allclose(sparse.jtj, dense.jtj, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(sparse.jtr, dense.jtr, rtol=0, atol=1e-12 * np.abs(dense.jtr).max())
    assert sparse.cost == pytest.approx(dense.cost, rel=1e-13)
    # structure: a point never couples two groups' own parameters
    own = np.arange(N_SHARED, theta.size)
    by_group = np.array([(i - N_SHARED) % 5 if layout == "by_parameter" else (i - N_SHARED) // 2 for i in own])
    cross = by_group[:, None] != by_group[None, :]
    assert np.all(sparse.jtj[np.ix_(own, own)][cross] == 0)


def test_grid_source_groups_are_its_leading_axis():
    """Implicit coordinates: the leading grid axis is the group; chunks straddle group boundaries."""
    n_groups = 6
    model, grid, y, theta = _grid_data(n_groups, 97, "by_parameter", 3)
    u = theta * 1.1
    dense, _ = _passes(model, ArraySource(None, y, grid=grid), u, 40, None)
    sparse, layout = _passes(model, ArraySource(None, y, grid=grid), u, 40, ParameterGroups(N_SHARED, 2))
    assert layout.n_groups == n_groups and layout.span == 2
    np.testing.assert_allclose(sparse.jtj, dense.jtj, rtol=0, atol=1e-12 * np.abs(dense.jtj).max())
    np.testing.assert_allclose(sparse.jtr, dense.jtr, rtol=0, atol=1e-12 * np.abs(dense.jtr).max())


def test_fit_with_groups_matches_dense_fit_and_scipy():
    from scipy.optimize import least_squares

    sizes = [300, 200, 250, 150]
    model, x, y, theta, _ = _data(sizes, "by_group", seed=5)
    p0 = theta * 0.9
    groups = ParameterGroups(N_SHARED, 2, "by_group", group_sizes=sizes)
    sparse = hpcfit.curve_fit(model, x, y, p0=p0, parameter_groups=groups, chunk_size=128, verbose=0)
    dense = hpcfit.curve_fit(model, x, y, p0=p0, parameter_groups=None, chunk_size=128, verbose=0)
    ref = least_squares(lambda p: np.asarray(model(x, *p)) - y, p0, method="lm", xtol=1e-14, ftol=1e-14)
    assert np.all(np.abs(sparse.popt - ref.x) < 1e-3 * sparse.perr)       # same optimum, to a small part of σ
    np.testing.assert_allclose(sparse.popt, dense.popt, rtol=1e-9)
    np.testing.assert_allclose(sparse.pcov, dense.pcov, rtol=1e-6, atol=1e-14)
    assert sparse.success


def test_shared_only_declaration_works_with_explicit_x():
    model, x, y, theta, _ = _data([50, 60], "by_parameter")
    fixed_groups = lambda xx, a, b, c, g0, g1, o0, o1: model(xx, a, b, c, g0, g1, o0, o1)  # noqa: E731
    dense, _ = _passes(fixed_groups, ArraySource(x, y), theta, 32, None)
    shared, layout = _passes(fixed_groups, ArraySource(x, y), theta, 32, ParameterGroups(theta.size, 0))
    assert layout.n_groups == 1
    np.testing.assert_allclose(shared.jtj, dense.jtj, rtol=1e-13, atol=0)


@pytest.mark.parametrize("option, message", [
    (ParameterGroups(N_SHARED, 2, group_sizes=[100, 100]), "adds up to 200 points; the data have 110"),
    (ParameterGroups(N_SHARED, 3, group_sizes=[50, 60]), "does not match p0's 7 parameters"),
    (ParameterGroups(N_SHARED, 2), "needs `group_sizes`"),
    ({"n_shared": 3}, "must have keys n_shared and per_group"),
    ("sometimes", "`parameter_groups` must be"),
])
def test_bad_declarations_are_named(option, message):
    model, x, y, theta, _ = _data([50, 60], "by_parameter")
    with pytest.raises(InputError, match=message):
        hpcfit.curve_fit(model, x, y, p0=theta, parameter_groups=option, verbose=0)


def test_bad_fields_and_reverse_mode_are_refused():
    with pytest.raises(InputError, match="parameter_groups.layout"):
        ParameterGroups(3, 2, "interleaved")
    with pytest.raises(InputError, match="parameter_groups.group_sizes"):
        ParameterGroups(3, 2, group_sizes=[10, 0])
    model, x, y, theta, _ = _data([50, 60], "by_parameter")
    with pytest.raises(InputError, match="jacobian_mode='forward'"):
        hpcfit.curve_fit(model, x, y, p0=theta, parameter_groups=ParameterGroups(3, 2, group_sizes=[50, 60]),
                         jacobian_mode="per_point_reverse", verbose=0)


def test_dense_solve_time_stays_small_next_to_a_pass():
    """Rank 0 solves the damped system densely: at p = 207 (100 angles) the solve costs far less than
    reading the normal equations' share of one pass (measured numbers in docs/benchmarks.md)."""
    from hpcfit.groups import GroupLayout

    layout = GroupLayout(7, 2, 100, "by_parameter", tuple(range(0, 101 * 10, 10)), 2)
    assert layout.n_params == 207
    assert layout.width == 7 * 8 // 2 + 100 * (3 + 14) + 207 + 3        # not p(p+1)/2 = 21528
    position = layout.packed_position()
    assert (position >= 0).sum() == 7 * 7 + 100 * (4 + 2 * 14)          # the arrow's non-zeros


def test_phase_1_sample_passes_are_block_sparse_and_equal_dense():
    """The sample (sorted global indices on a grid source) spans many groups per chunk: the per-group
    blocks come from segment sums; the result is the dense pass's to rounding."""
    from hpcfit.phases.explore import sample_groups as _sample_groups
    from hpcfit.data.sample import gather_sample, sample_chunks
    from hpcfit.kernels.coords import IndexedX

    n_groups = 9
    model, grid, y, theta = _grid_data(n_groups, 301, "by_group", 4)
    u = theta * 0.9
    p = theta.size
    with Communicator(None) as hc:
        local = ArraySource(None, y, grid=grid).open(hc, 512)
        layout = resolve_groups(ParameterGroups(N_SHARED, 2, "by_group"), p, local.n_points, grid, 512)
        sample = gather_sample(hc, local, 700, 0)
    for chunk_size in (1024, 128):                       # one chunk over all groups (segment sums); span 2 or 3
        chunks = sample_chunks(sample, chunk_size)
        sample_layout = _sample_groups(layout, sample, chunks)
        assert sample_layout.span == n_groups if chunk_size == 1024 else 2 <= sample_layout.span <= 3
        args = (Communicator(None), chunks, IndexedX(model, grid), "soft_l1", 0.5, np.zeros(p), np.ones(p))
        dense = PassEvaluator(*args).jacobian_pass(u)
        sparse = PassEvaluator(*args, groups=sample_layout).jacobian_pass(u)
        np.testing.assert_allclose(sparse.jtj, dense.jtj, rtol=0, atol=1e-12 * np.abs(dense.jtj).max())
        np.testing.assert_allclose(sparse.jtr, dense.jtr, rtol=0, atol=1e-12 * np.abs(dense.jtr).max())


def test_a_declaration_is_part_of_the_checkpointed_answer(tmp_path):
    """The declaration is recorded with the checkpoint (JSON) and compared on resume."""
    sizes = [120, 80]
    model, x, y, theta, _ = _data(sizes, "by_parameter", seed=7)
    groups = ParameterGroups(N_SHARED, 2, group_sizes=sizes)
    kw = dict(p0=theta * 0.9, chunk_size=64, verbose=0, method="gn", checkpoint=str(tmp_path / "ck.h5"))
    first = hpcfit.curve_fit(model, x, y, parameter_groups=groups, **kw)
    again = hpcfit.curve_fit(model, x, y, parameter_groups=groups, resume=True, **kw)
    assert again.popt.tobytes() == first.popt.tobytes()
    with pytest.raises(InputError, match="parameter_groups"):
        hpcfit.curve_fit(model, x, y, parameter_groups=None, resume=True, **kw)
