"""MPI lane for phase 1's explore: the sample is drawn by global point index and gathered on every
rank, so the candidates, the choice and the fit are the serial ones bit for bit on 2 and 3 ranks
(from global arrays and from a streamed HDF5 file), and an error met by one rank's part of the
sample is raised on every rank."""
import os

import numpy as np
import pytest

import hpcfit
from hpcfit.data import HDF5Source
from conftest import write_shared_h5
from test_warmup import GAUSS_HARD, _gauss_data, gauss3

pytestmark = pytest.mark.mpi(min_size=2)
EXPLORE = dict(verbose=0, chunk_size=2048, explore_sample_points=3000, multistart=2, warm_start_detection=False,
               warmup_max_steps=40)


def _same(a, b):
    assert a.popt.tobytes() == b.popt.tobytes() and a.cost.hex() == b.cost.hex()
    assert a.explore.candidates == b.explore.candidates and a.explore.chosen == b.explore.chosen
    assert (a.warmup.steps, a.warmup.reason) == (b.warmup.steps, b.warmup.reason)


def test_explore_is_bitwise_the_serial_one(world):
    x, y = _gauss_data(20000)
    serial = hpcfit.curve_fit(gauss3, x, y, p0=GAUSS_HARD, **EXPLORE)
    par = hpcfit.curve_fit(gauss3, x, y, p0=GAUSS_HARD, comm=world, **EXPLORE)
    assert [c["origin"] for c in par.explore.candidates] == ["p0", "adam", "multistart 1", "multistart 2"]
    assert par.explore.sample_points == 3000
    _same(par, serial)


def test_the_winner_polished_on_a_bigger_sample_is_bitwise_the_serial_one(world):
    x, y = _gauss_data(20000)
    options = dict(EXPLORE, explore_sample_points=1000, explore_refine_points=6000)
    serial = hpcfit.curve_fit(gauss3, x, y, p0=GAUSS_HARD, **options)
    _same(hpcfit.curve_fit(gauss3, x, y, p0=GAUSS_HARD, comm=world, **options), serial)


def test_streamed_explore_is_bitwise_the_serial_in_memory_one(world, shared_dir):
    x, y = _gauss_data(20000)
    path = write_shared_h5(world, os.path.join(shared_dir, "explore.h5"), x=x, y=y)
    serial = hpcfit.curve_fit(gauss3, x, y, p0=GAUSS_HARD, **EXPLORE)
    streamed = hpcfit.fit(gauss3, HDF5Source(path, x="x"), GAUSS_HARD, comm=world, **EXPLORE)
    _same(streamed, serial)


def test_a_nan_in_one_ranks_part_of_the_sample_is_raised_everywhere(world, shared_dir):
    from hpcfit.data.sampling import stratified_points
    x, y = _gauss_data(20000)
    bad = int(stratified_points(0, 3000, x.size)[-1])          # sampled, and owned by the last rank
    y = y.copy()
    y[bad] = np.nan
    path = write_shared_h5(world, os.path.join(shared_dir, "nan.h5"), x=x, y=y)
    with pytest.raises(hpcfit.InputError, match=rf"contains NaN or Inf; first at global point index {bad}"):
        hpcfit.fit(gauss3, HDF5Source(path, x="x"), GAUSS_HARD, comm=world, **EXPLORE)


def test_an_undetermined_parameter_is_warned_once_on_rank_0_and_flagged_everywhere(world):
    from test_trust import fit_with_an_unused_parameter
    res, deficient = fit_with_an_unused_parameter(comm=world)
    assert len(deficient) == (1 if world.rank == 0 else 0)
    assert np.isinf(res.perr[3]) and not res.trustworthy and res.info["undetermined"] == ["unused"]
    assert world.allgather(res.trust_issues) == [res.trust_issues] * world.size


def _spread_case():
    from test_explore import gauss2
    x = np.linspace(0, 10, 5000)
    y = np.asarray(gauss2(x, 1.0, 3.0, 0.5, 0.7, 7.0, 0.6)) + 0.02 * np.random.default_rng(0).standard_normal(x.size)
    starts = [[1.0, 7.0, 0.5, 0.7, 3.0, 0.6], [0.5, 1.0, 2.0, 0.7, 9.0, 0.3], [1.0, 5.0, 3.0, 1.0, 5.0, 3.0]]
    kw = dict(p0=[1.0, 3.1, 0.5, 0.7, 6.9, 0.6], verbose=0, explore_starts=starts, multistart=4,
              bounds=([0.0, 0.0, 0.05, 0.0, 0.0, 0.05], [3.0, 10.0, 3.0, 3.0, 10.0, 3.0]))
    return gauss2, x, y, kw


def _count_polishes(monkeypatch):
    import hpcfit.phases.explore as explore
    calls = []
    real = explore.run_trust_region

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(explore, "run_trust_region", counted)
    return calls


def test_candidates_are_spread_over_the_ranks_and_the_fit_is_the_serial_one(world, monkeypatch):
    model, x, y, kw = _spread_case()
    serial = hpcfit.curve_fit(model, x, y, **kw)
    calls = _count_polishes(monkeypatch)
    par = hpcfit.curve_fit(model, x, y, comm=world, **kw)
    origins = [c["origin"] for c in par.explore.candidates]
    assert origins == ["p0"] + [f"multistart {k + 1}" for k in range(4)] + ["start 1", "start 2", "start 3"]
    assert any(c["status"] == "DROPPED" for c in par.explore.candidates)       # early stops, on some rank
    _same(par, serial)
    # p0 on every rank, then this rank's share of the 7 further candidates: r, r + size, ...
    assert len(calls) == 1 + len(range(world.rank, 7, world.size))


def test_an_error_in_one_ranks_candidate_is_raised_on_every_rank(world, monkeypatch):
    import hpcfit.phases.explore as explore
    model, x, y, kw = _spread_case()
    real, calls = explore.run_trust_region, []

    def failing(*args, **kwargs):
        calls.append(1)
        if world.rank == world.size - 1 and len(calls) == 2:      # the last rank's first own candidate
            raise RuntimeError("a bug in one candidate")
        return real(*args, **kwargs)
    monkeypatch.setattr(explore, "run_trust_region", failing)
    with pytest.raises(hpcfit.FitError, match=rf"RuntimeError: a bug in one candidate \[found on rank {world.size - 1}\]"):
        hpcfit.curve_fit(model, x, y, comm=world, **kw)
