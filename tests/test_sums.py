"""Sums over a chunk's points (hpcfit.kernels.sums): the right values, and the same bits whatever the
number of cores the process may use — XLA's CPU backend splits plain reductions and tall products
over a thread pool sized by those cores, which changed a 10⁹-point fit's bits between 1 and 2 ranks."""
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hpcfit.kernels.sums import BLOCK_ROWS, MAX_SEPARATE_BLOCKS, gram, point_sum, product_rows, tree_sum

jax.config.update("jax_enable_x64", True)


@pytest.mark.parametrize("n,q", [(1, 1), (7, 3), (1000, 5), (32768, 12), (8192 + 17, 40), (300, 150),
                                 (BLOCK_ROWS * (MAX_SEPARATE_BLOCKS + 3) + 5, 4)])
def test_sums_are_the_sums(n, q):
    rng = np.random.default_rng(n + q)
    a = rng.standard_normal((n, q))
    np.testing.assert_allclose(np.asarray(jax.jit(gram)(jnp.asarray(a))), a.T @ a, rtol=1e-12, atol=1e-12 * n)
    np.testing.assert_allclose(np.asarray(jax.jit(point_sum)(jnp.asarray(a))), a.sum(axis=0), rtol=1e-12,
                               atol=1e-12 * n)
    np.testing.assert_allclose(float(point_sum(jnp.asarray(a[:, 0]))), a[:, 0].sum(), rtol=1e-12, atol=1e-12 * n)


def test_the_tree_and_block_sizes():
    x = jnp.asarray([1e16, 1.0, -1e16, 1.0, 3.0])
    # halving: [1e16 + 1, 1 + 3, -1e16 + 0] (1e16 + 1 rounds to 1e16), then [1e16 - 1e16, 4 + 0], then 0 + 4
    assert float(tree_sum(x)) == 4.0
    assert product_rows(3) == BLOCK_ROWS and product_rows(12) == 1024 and product_rows(40) == 128
    assert product_rows(600) == 64 and all(c * c * product_rows(c) <= 1 << 18 for c in range(1, 65))


CHILD = textwrap.dedent("""
    import hashlib, os, sys
    os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(",")})
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    from hpcfit.kernels.sums import gram, point_sum
    from hpcfit.kernels.chunk import jacobian_kernel, cost_kernel
    rng = np.random.default_rng(0)
    out = {}
    for n, q in [(32768, 12), (8192, 40), (65536, 3), (4096, 100)]:
        a = jnp.asarray(rng.standard_normal((n, q)))
        out[f"gram {n}x{q}"] = jax.jit(gram)(a)
        out[f"sum {n}x{q}"] = jax.jit(point_sum)(a)
        out[f"plain {n}x{q}"] = jax.jit(lambda a: a.T @ a)(a)
    def model(x, a, b, c, d, e, f, g, h, i, j, k):
        return a * jnp.exp(-b * x) + c * jnp.sin(d * x + e) + f * x + g + h * x**2 + i * jnp.cos(j * x) + k * x**3
    x = jnp.linspace(0.0, 3.0, 32768)
    y = jnp.asarray(rng.standard_normal(32768))
    u, off, scale = jnp.ones(11), jnp.zeros(11), jnp.linspace(0.5, 1.5, 11)
    args = (u, off, scale, x, y, jnp.ones(32768), jnp.asarray(32768), jnp.asarray(1.0))
    out["jacobian"] = jacobian_kernel(model, "linear")(*args)
    out["jacobian soft_l1"] = jacobian_kernel(model, "soft_l1")(*args)
    out["cost"] = cost_kernel(model, "linear")(*args)
    # the XPCS block-sparse kernel: 2 rings x 3 angles, chunks of 32768 pairs
    from hpcfit.groups import resolve_groups
    from hpcfit.kernels.coords import PairGrid
    from hpcfit.kernels.grouped import grouped_jacobian_kernel
    from hpcfit.models.xpcs import TwoTimeModel
    grid = PairGrid(6, 400, "upper")
    xpcs = TwoTimeModel((0.0, 60.0, 120.0) * 2, 400, 0.5, (0.004,) * 3 + (0.006,) * 3, 2e6)
    layout = resolve_groups(xpcs.parameter_groups, xpcs.n_params, grid.n_points, grid, 32768)
    theta = np.array([1500.0, -0.25, 20.0, 3e-4, 0.35, 1e-5, 5.0] + [0.2] * 6 + [1.0] * 6)
    kernel = grouped_jacobian_kernel(xpcs, "linear", layout, grid, 32768)
    c2 = jnp.asarray(rng.normal(1.1, 0.01, 32768))
    out["xpcs"] = kernel(jnp.ones(19), jnp.zeros(19), jnp.asarray(theta), jnp.zeros(()), c2, jnp.ones(32768),
                         jnp.asarray(32768), jnp.asarray(1.0), jnp.asarray(40000))
    for k, v in out.items():
        print(k, hashlib.sha256(np.asarray(v).tobytes()).hexdigest())
""")


def _hashes(cores):
    env = dict(os.environ, HPCFIT_COMPILATION_CACHE="off")
    done = subprocess.run([sys.executable, "-c", CHILD, ",".join(map(str, cores))], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(line.rsplit(" ", 1) for line in done.stdout.splitlines())


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs a process with at least two cores")
def test_kernel_sums_have_the_same_bits_on_one_core_and_on_two():
    cores = sorted(os.sched_getaffinity(0))[:2]
    one, two = _hashes(cores[:1]), _hashes(cores)
    ours = [k for k in one if not k.startswith("plain")]
    assert [k for k in ours if one[k] != two[k]] == []
    # the control: a plain AᵀA of a tall A; where it differs, the check above was a real one
    print("plain products that differ between 1 and 2 cores:", [k for k in one if k.startswith("plain")
                                                               and one[k] != two[k]])
