"""The global chunk grid and the canonical reduction tree: pure arithmetic, no MPI."""
import itertools
import random

import numpy as np
import pytest

from hpcfit.data.grid import ChunkGrid, TreeAccumulator, combine_blocks, dyadic_blocks


@pytest.mark.parametrize("n_points,chunk_size", [(1, 1), (7, 3), (100, 10), (1000, 64), (12345, 1000), (5, 100)])
@pytest.mark.parametrize("n_ranks", [1, 2, 3, 4, 7, 64])
def test_ranks_own_contiguous_runs_that_cover_every_point_once(n_points, chunk_size, n_ranks):
    grid = ChunkGrid(n_points, chunk_size, n_ranks)
    assert grid.n_chunks == -(-n_points // chunk_size)
    runs = [grid.rank_chunks(r) for r in range(n_ranks)]
    assert runs[0][0] == 0 and runs[-1][1] == grid.n_chunks
    for (a0, b0), (a1, b1) in zip(runs, runs[1:]):
        assert b0 == a1 and a0 <= b0
    sizes = [b - a for a, b in runs]
    assert max(sizes) - min(sizes) <= 1                     # balanced
    covered = []
    for r in range(n_ranks):
        s, e = grid.rank_points(r)
        covered.extend(range(s, e))
    assert covered == list(range(n_points))
    # chunk k always covers the same points whatever the rank count
    for k in range(grid.n_chunks):
        assert grid.chunk_points(k) == ChunkGrid(n_points, chunk_size, 1).chunk_points(k)


def test_bad_grid_arguments():
    for args in [(0, 4), (10, 0), (10, 4, 0)]:
        with pytest.raises(ValueError):
            ChunkGrid(*args)


def _reference_tree_sum(leaves):
    """Canonical tree sum written independently: pad to a power of two with None, pair up."""
    level = list(leaves)
    size = 1
    while size < len(level):
        size *= 2
    level += [None] * (size - len(level))
    while len(level) > 1:
        nxt = []
        for a, b in zip(level[::2], level[1::2]):
            nxt.append(a if b is None else b if a is None else a + b)
        level = nxt
    return level[0]


def _random_split(n, parts, rng):
    cuts = sorted(rng.randint(0, n) for _ in range(parts - 1))
    bounds = [0] + cuts + [n]
    return list(zip(bounds, bounds[1:]))


@pytest.mark.parametrize("n_leaves", [1, 2, 3, 5, 8, 13, 64, 100])
def test_any_split_gives_the_same_bits(n_leaves):
    rng = random.Random(n_leaves)
    gen = np.random.default_rng(n_leaves)
    values = gen.standard_normal(n_leaves) * 10.0 ** gen.uniform(-8, 8, n_leaves)   # order-sensitive sums
    reference = _reference_tree_sum(list(values))
    for parts in [1, 2, 3, 4, 7]:
        for _ in range(5):
            blocks = {}
            for a, b in _random_split(n_leaves, parts, rng):
                for level, index in dyadic_blocks(a, b, n_leaves):
                    lo, hi = index << level, min((index + 1) << level, n_leaves)
                    assert a <= lo < hi <= b
                    acc = TreeAccumulator(lambda x, y: x + y)
                    for v in values[lo:hi]:
                        acc.push(v)
                    blocks[(level, index)] = acc.result()
            assert combine_blocks(blocks, n_leaves, lambda x, y: x + y) == reference


def test_dyadic_blocks_tile_the_run():
    for n in range(1, 40):
        for a, b in itertools.combinations(range(n + 1), 2):
            leaves = []
            for level, index in dyadic_blocks(a, b, n):
                leaves.extend(range(index << level, min((index + 1) << level, n)))
            assert leaves == list(range(a, b))
        assert dyadic_blocks(3, 3, n) == []


def test_combine_needs_blocks():
    with pytest.raises(ValueError):
        combine_blocks({}, 4, lambda x, y: x + y)
    with pytest.raises(ValueError):
        TreeAccumulator(lambda x, y: x + y).result()
