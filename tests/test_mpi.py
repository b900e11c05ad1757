"""MPI lane: run with ``mpiexec -n 2`` and ``-n 3`` (``python -m pytest --with-mpi -m mpi``).

Every rank also runs the serial fit (comm=None) in-process: that is the reference the collective
fit must reproduce bit for bit. Expected values never depend on the rank count.
"""
import re

import numpy as np
import pytest

import hpcfit
from bad_cases import ALL_RANKS, CASES
from models import problems

pytestmark = pytest.mark.mpi(min_size=2)

PROBLEMS = problems()


def _fit(pr, comm, **kw):
    return hpcfit.curve_fit(pr.f_jax, pr.x, pr.y, p0=pr.p0, sigma=pr.sigma, absolute_sigma=pr.absolute_sigma,
                            bounds=pr.bounds, loss=pr.loss, f_scale=pr.f_scale, comm=comm, verbose=0, **kw)


def _same_bits(a, b):
    return np.asarray(a).tobytes() == np.asarray(b).tobytes()


@pytest.mark.parametrize("pr", PROBLEMS, ids=[p.name for p in PROBLEMS])
@pytest.mark.parametrize("chunk_size", [257, 1 << 20])       # many chunks; one chunk (idle ranks)
def test_bitwise_identical_to_serial(world, pr, chunk_size):
    serial = _fit(pr, None, chunk_size=chunk_size)
    par = _fit(pr, world, chunk_size=chunk_size)
    assert _same_bits(par.popt, serial.popt)
    assert _same_bits(par.pcov, serial.pcov)
    assert par.cost.hex() == serial.cost.hex()
    assert (par.n_iterations, par.nfev, par.njev, par.status) == (serial.n_iterations, serial.nfev, serial.njev,
                                                                  serial.status)
    assert par.info["n_ranks"] == world.size
    # and the same on every rank
    everyone = world.allgather(par.popt.tobytes() + par.pcov.tobytes())
    assert all(e == everyone[0] for e in everyone)


@pytest.mark.parametrize("pr", PROBLEMS[:5], ids=[p.name for p in PROBLEMS[:5]])
def test_local_shards_match_serial(world, pr):
    """Uneven shards, one per rank, fit as their union."""
    n = pr.x.shape[-1]
    weights = np.arange(1, world.size + 1)
    cuts = np.concatenate([[0], np.cumsum(weights) * n // weights.sum()])
    lo, hi = cuts[world.rank], cuts[world.rank + 1]
    serial = _fit(pr, None, chunk_size=300)
    local = hpcfit.curve_fit(pr.f_jax, pr.x[..., lo:hi], pr.y[lo:hi], p0=pr.p0,
                             sigma=None if pr.sigma is None else pr.sigma[lo:hi], absolute_sigma=pr.absolute_sigma,
                             bounds=pr.bounds, loss=pr.loss, f_scale=pr.f_scale, comm=world, distribute="local",
                             chunk_size=300, verbose=0)
    np.testing.assert_allclose(local.popt, serial.popt, rtol=1e-12, atol=0)
    np.testing.assert_allclose(local.pcov, serial.pcov, rtol=1e-9, atol=0)
    assert local.n_points == n


def test_a_rank_with_an_empty_local_shard_takes_part(world):
    pr = PROBLEMS[0]
    owners = [r for r in range(world.size) if r != 1]           # rank 1 passes no points at all
    parts = np.array_split(np.arange(pr.x.size), len(owners))
    idx = parts[owners.index(world.rank)] if world.rank in owners else np.arange(0)
    res = hpcfit.curve_fit(pr.f_jax, pr.x[idx], pr.y[idx], p0=pr.p0, comm=world, distribute="local", verbose=0,
                           chunk_size=500)
    serial = _fit(pr, None, chunk_size=500)
    np.testing.assert_allclose(res.popt, serial.popt, rtol=1e-12)


def _raise_collectively(world, kw):
    with pytest.raises(hpcfit.InputError) as info:
        hpcfit.curve_fit(kw.pop("f"), kw.pop("xdata"), kw.pop("ydata"), comm=world, verbose=0, **kw)
    messages = world.allgather(str(info.value))
    assert all(m == messages[0] for m in messages), messages
    return messages[0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_on_one_rank_raises_everywhere(world, name):
    build, match = CASES[name]
    bad_rank = world.size - 1
    kw = build(name in ALL_RANKS or world.rank == bad_rank)
    message = _raise_collectively(world, kw)
    assert re.search(match, message), message
    if name not in ALL_RANKS:
        assert f"rank {bad_rank}" in message


@pytest.mark.parametrize("distribute", ["global", "local"])
def test_bad_value_in_one_shard_names_it(world, distribute):
    build, _ = CASES["y_inf"]
    kw = build(False)
    if world.rank == world.size - 1:
        kw["ydata"] = kw["ydata"].copy()
        kw["ydata"][5] = np.nan
    kw["distribute"] = distribute
    message = _raise_collectively(world, kw)
    assert "`ydata` contains NaN or Inf" in message and f"found on rank {world.size - 1}" in message


def test_global_arrays_that_differ_between_ranks_are_refused(world):
    build, _ = CASES["y_inf"]
    kw = build(False)
    if world.rank == world.size - 1:
        kw["ydata"] = kw["ydata"] * (1 + 1e-15)
    message = _raise_collectively(world, kw)
    assert "`ydata` differs between ranks" in message and "distribute='local'" in message


def test_model_non_finite_in_one_ranks_part_names_the_global_index(world):
    import jax.numpy as jnp

    x = np.linspace(0.0, 1.0, 999)
    y = np.ones_like(x)
    # log(1.2 − b·x) is NaN at p0 for x > 0.9 only: the points of the last rank's chunks.
    first_bad = int(np.argmax(1.2 - 1.3333333333333333 * x <= 0))
    message = _raise_collectively(world, dict(f=lambda x, a, b: a * jnp.log(1.2 - b * x), xdata=x, ydata=y,
                                              p0=[1.0, 1.3333333333333333], chunk_size=100))
    assert f"first at global point index {first_bad}" in message


def test_any_communicator_works_split_and_self(world):
    """A split communicator (groups fitting independently) and COMM_SELF give the serial bits."""
    from mpi4py import MPI

    pr = PROBLEMS[1]
    serial = _fit(pr, None, chunk_size=700)
    group = world.Split(color=world.rank % 2, key=world.rank)
    try:
        for comm in (group, MPI.COMM_SELF):
            res = _fit(pr, comm, chunk_size=700)
            assert _same_bits(res.popt, serial.popt) and _same_bits(res.pcov, serial.pcov)
            assert res.info["n_ranks"] == comm.Get_size()
    finally:
        group.Free()


def test_verbose_may_differ_between_ranks_but_other_options_may_not(world):
    build, _ = CASES["y_inf"]
    kw = build(False)
    res = hpcfit.curve_fit(kw["f"], kw["xdata"], kw["ydata"], p0=kw["p0"], comm=world, verbose=int(world.rank == 0))
    assert res.success
    bad = dict(build(False), ftol=1e-6 if world.rank == world.size - 1 else 1e-8)
    message = _raise_collectively(world, bad)
    assert "`ftol` differs between ranks" in message


def test_unexpected_exception_on_one_rank_is_raised_everywhere(world):
    """An array-like whose conversion fails with OSError (e.g. a broken file) on one rank only."""
    class BrokenArray:
        def __array__(self, dtype=None, copy=None):
            raise OSError("disk read failed")

    build, _ = CASES["y_inf"]
    kw = build(False)
    if world.rank == world.size - 1:
        kw["ydata"] = BrokenArray()
    with pytest.raises(hpcfit.FitError) as info:
        hpcfit.curve_fit(kw["f"], kw["xdata"], kw["ydata"], p0=kw["p0"], comm=world, distribute="local", verbose=0)
    messages = world.allgather(str(info.value))
    assert all(m == messages[0] for m in messages)
    assert "OSError: disk read failed" in messages[0] and f"rank {world.size - 1}" in messages[0]


def test_an_intercommunicator_is_refused_on_every_rank_without_a_hang(world):
    low = world.rank < world.size // 2 or world.size == 1
    local = world.Split(0 if low else 1, world.rank)
    remote_leader = world.size // 2 if low else 0
    inter = local.Create_intercomm(0, world, remote_leader, tag=7)
    try:
        with pytest.raises(hpcfit.InputError, match=r"`comm` is an intercommunicator; hpcfit needs an intracommunicator"):
            hpcfit.curve_fit(hpcfit.models.exponential_decay, np.linspace(0, 1, 1000), np.ones(1000), p0=[1, 1, 0],
                             comm=inter, verbose=0)
    finally:
        inter.Free()
        local.Free()
    world.Barrier()


def test_a_cli_run_duplicates_the_world_communicator_once(world, tmp_path_factory):
    """One communicator per run: ``python -m hpcfit fit`` makes one duplicate of COMM_WORLD and
    passes it down (reading the config, the data, the fit, the result files), and the fit matches
    scipy's."""
    import json
    import os

    import hpcfit.comm
    from hpcfit.cli import main
    from scipy.optimize import curve_fit

    folder = world.bcast(str(tmp_path_factory.mktemp("cli")) if world.rank == 0 else None)
    x = np.linspace(0.0, 5.0, 4000)
    y = 2.0 * np.exp(-1.3 * x) + 0.5 + 0.01 * np.sin(37.0 * x)
    if world.rank == 0:
        np.savez(os.path.join(folder, "data.npz"), x=x, y=y)
        with open(os.path.join(folder, "run.toml"), "w") as fh:
            fh.write(f'[data]\nfile = "{folder}/data.npz"\n[model]\nname = "exponential_decay"\n'
                     f'[parameters]\na = 1.0\nb = 0.2\nc = 0.0\n[fit]\nchunk_size = 512\nverbose = 0\n'
                     f'[output]\ndirectory = "{folder}/out"\nplots = false\n')
    world.Barrier()
    before = hpcfit.comm.DUPLICATES
    assert main(["fit", os.path.join(folder, "run.toml")]) == 0
    assert hpcfit.comm.DUPLICATES - before == 1
    world.Barrier()
    with open(os.path.join(folder, "out", "result.json")) as fh:
        popt = np.array(json.load(fh)["result"]["popt"], dtype=float)
    ref, _ = curve_fit(lambda t, a, b, c: a * np.exp(-b * t) + c, x, y, p0=[1.0, 0.2, 0.0])
    np.testing.assert_allclose(popt, ref, rtol=1e-6)
