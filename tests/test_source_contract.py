"""What every data source promises the engine (scipy's BaseMixin pattern: one class of tests, one
subclass per source). The same XPCS points — two angles of a simulated APS-U two-time file, each
pair t1 < t2 once — come from each source; each must

* cut them into the global chunk grid in order, padding with weight 0;
* give the same points by random access (``take``: phase 1's sample and the Adam warm-up);
* give both solvers the same numbers: LM (``method="gn"``) and the Adam warm-up then LM
  (``method="hybrid"``, warm-start detection off) end with the bits of the in-memory arrays with
  explicit x, and LM agrees with scipy's curve_fit.
"""
import h5py
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import curve_fit

import hpcfit
from hpcfit.comm import Communicator
from hpcfit import PairGrid
from hpcfit.data import ArraySource, HDF5Source
from hpcfit.xpcs import beamline, load, simulate
from hpcfit.xpcs.fit import fit_points

N_PHI, N_T, CHUNK, Q, DT = 2, 40, 256, 0.0054, 0.5
P0 = [0.2, 0.05, 1.0]


def model(x, a, b, c):
    """a·exp(−b·(t2 − t1)) + c: a decay along the lag, the same on each angle."""
    return a * jnp.exp(-b * (x[2] - x[1])) + c + 0.0 * x[0]


@pytest.fixture(scope="module")
def points(tmp_path_factory):
    """The beamline file, and its points as arrays: x (3, n) = angle index, t1, t2; y."""
    folder = tmp_path_factory.mktemp("contract")
    path = folder / "aps-u.h5"
    simulate(path, layout="aps-u", n_phi=N_PHI, n_t=N_T, mode="static", dt=DT, q=Q, L=1e6,
             params=[2000.0, 0.0, 0.0], contrast=0.25, offset=1.0, noise=0.002, seed=3)
    c2 = load(path, q=Q, dt=DT).c2
    grid = PairGrid(N_PHI, N_T)
    x = np.asarray(grid(jnp.arange(grid.n_points)))
    y = np.asarray(c2[x[0].astype(int), x[1].astype(int), x[2].astype(int)], dtype=np.float64)
    return {"folder": folder, "beamline": path, "x": x, "y": y, "grid": grid}


def _hdf5(points, name, with_x):
    path = points["folder"] / name
    if not path.exists():
        with h5py.File(path, "w") as f:
            f["y"] = points["y"]
            if with_x:
                f["x"] = points["x"]
    return path


def _fit(source, method):
    kw = dict(chunk_size=CHUNK, method=method)
    if method == "hybrid":
        kw.update(warm_start_detection=False, warmup_max_steps=30, explore_sample_points=600)
    return hpcfit.fit(model, source, P0, **kw)


def _bits(r):
    return np.asarray(r.popt).tobytes() + np.asarray(r.pcov).tobytes() + float(r.cost).hex().encode()


class SourceContract:
    """Subclasses give :meth:`source` over the fixture's points."""

    def source(self, points):
        raise NotImplementedError

    def test_chunks_cover_the_points_in_order(self, points):
        with Communicator(None) as hc:
            local = self.source(points).open(hc, CHUNK)
            n = points["y"].size
            assert local.n_points == n and local.n_leaves == -(-n // CHUNK) == local.n_local
            ys = []
            for i in range(local.n_local):
                chunk = local.read(i)
                assert chunk.global_start == i * CHUNK and chunk.y.shape == (CHUNK,)
                assert np.all(chunk.weight[chunk.n_valid:] == 0) and np.all(chunk.weight[:chunk.n_valid] == 1)
                ys.append(np.asarray(chunk.y[:chunk.n_valid], dtype=np.float64))
            np.testing.assert_array_equal(np.concatenate(ys), points["y"])

    def test_random_access_gives_the_same_points(self, points):
        with Communicator(None) as hc:
            local = self.source(points).open(hc, CHUNK)
            idx = np.sort(np.random.default_rng(0).choice(points["y"].size, 300, replace=False))
            x, y, w = local.take(idx)
            np.testing.assert_array_equal(np.asarray(y, dtype=np.float64), points["y"][idx])
            assert np.all(np.asarray(w) == 1)
            if x is not None:
                np.testing.assert_array_equal(x, points["x"][:, idx])

    @pytest.mark.parametrize("method", ["gn", "hybrid"])
    def test_both_solvers_give_the_bits_of_in_memory_arrays(self, points, method):
        reference = _fit(ArraySource(points["x"], points["y"]), method)
        result = _fit(self.source(points), method)
        assert _bits(result) == _bits(reference)
        assert result.n_iterations == reference.n_iterations and result.nfev == reference.nfev
        if method == "hybrid":
            assert result.warmup.ran and result.warmup.steps == reference.warmup.steps > 0
        else:
            ref, _ = curve_fit(lambda x, a, b, c: a * np.exp(-b * (x[2] - x[1])) + c, points["x"], points["y"], p0=P0)
            np.testing.assert_allclose(result.popt, ref, rtol=1e-6)


class TestArraysExplicitX(SourceContract):
    def source(self, points):
        return ArraySource(points["x"], points["y"])


class TestArraysOnAGrid(SourceContract):
    def source(self, points):
        return ArraySource(None, points["y"], grid=points["grid"])


class TestHDF5ExplicitX(SourceContract):
    def source(self, points):
        return HDF5Source(str(_hdf5(points, "explicit.h5", True)), y="y", x="x")


class TestHDF5OnAGrid(SourceContract):
    def source(self, points):
        return HDF5Source(str(_hdf5(points, "grid.h5", False)), y="y", grid=points["grid"])


class TestBeamlineFile(SourceContract):
    def source(self, points):
        return fit_points(beamline(points["beamline"], q=Q, dt=DT), "upper").source
