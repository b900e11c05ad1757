"""The XPCS point order's one home (hpcfit.pairs): position ↔ pair maps against an explicit
enumeration of the pairs, in numpy and inside JAX (the kernels' PairGrid)."""
import jax.numpy as jnp
import numpy as np
import pytest

from hpcfit.kernels.coords import PairGrid
from hpcfit.pairs import n_pairs, pair_at, pair_frames, pair_mask, pair_position


@pytest.mark.parametrize("triangle", ["upper", "both"])
@pytest.mark.parametrize("n_t", [2, 3, 17, 300])
def test_positions_and_pairs_are_inverse_and_in_order(n_t, triangle):
    want = [(i, j) for i in range(n_t) for j in range(n_t) if (i < j if triangle == "upper" else i != j)]
    t1, t2 = pair_frames(n_t, triangle)
    assert list(zip(t1.tolist(), t2.tolist())) == want and n_pairs(n_t, triangle) == len(want)
    k = np.arange(len(want))
    np.testing.assert_array_equal(pair_position(t1, t2, n_t, triangle), k)
    for xp in (np, jnp):
        a, b = pair_at(xp.asarray(k), n_t, triangle, xp=xp)
        np.testing.assert_array_equal(np.asarray(a), t1)
        np.testing.assert_array_equal(np.asarray(b), t2)
    m = np.arange(n_t * n_t).reshape(n_t, n_t)
    np.testing.assert_array_equal(m[pair_mask(n_t, triangle)], t1 * n_t + t2)
    grid = PairGrid(2, n_t, triangle)
    x = np.asarray(grid(jnp.arange(grid.n_points)))
    np.testing.assert_array_equal(x[1], np.tile(t1, 2))
    np.testing.assert_array_equal(x[2], np.tile(t2, 2))
    np.testing.assert_array_equal(x[0], np.repeat([0, 1], len(want)))


@pytest.mark.parametrize("triangle", ["upper", "both"])
@pytest.mark.parametrize("n_t, chunk", [(17, 64), (17, 500), (300, 1024), (3, 7)])
def test_a_chunk_of_contiguous_points_has_the_coordinates_of_its_indices(n_t, chunk, triangle):
    """PairGrid.at_range (one division per chunk) against the explicit pairs, at every chunk start
    of a small grid: chunks inside a map, across one or many maps, and past the last point
    (padding takes the last point's coordinates)."""
    import jax

    from hpcfit.kernels.coords import coordinates_at

    grid = PairGrid(5, n_t, triangle)
    t1, t2 = pair_frames(n_t, triangle)
    want = np.stack([np.repeat(np.arange(5), t1.size), np.tile(t1, 5), np.tile(t2, 5)])
    at = jax.jit(lambda s: grid.at_range(s, chunk))
    for start in range(0, grid.n_points, max(1, chunk // 3)):
        index = np.minimum(start + np.arange(chunk), grid.n_points - 1)
        got = np.asarray(at(jnp.asarray(start, dtype=jnp.int64)))
        np.testing.assert_array_equal(got, want[:, index])
    # a grid without at_range (any object with n_points and __call__) is called with the indices
    plain = type("Plain", (), {"n_points": grid.n_points, "__call__": lambda self, i: grid(i)})()
    np.testing.assert_array_equal(np.asarray(coordinates_at(plain, jnp.asarray(grid.n_points - 3), 8)),
                                  want[:, np.minimum(grid.n_points - 3 + np.arange(8), grid.n_points - 1)])
