"""Streaming from HDF5: the same bits as the same arrays in memory, and clear errors for bad files."""
import h5py
import numpy as np
import pytest

import hpcfit
from hpcfit import RegularGrid
from hpcfit.data import HDF5Source
from hpcfit.models import exponential_decay

N = 20011


def _data():
    rng = np.random.default_rng(5)
    x = np.linspace(0.0, 5.0, N)
    sigma = 0.04 + 0.02 * rng.uniform(size=N)
    y = 2.5 * np.exp(-1.3 * x) + 0.5 + sigma * rng.standard_normal(N)
    return x, y, sigma


def write(path, **datasets):
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f[name] = value
    return str(path)


@pytest.fixture(scope="module")
def h5file(tmp_path_factory):
    x, y, sigma = _data()
    return write(tmp_path_factory.mktemp("h5") / "data.h5", x=x, y=y, sigma=sigma)


@pytest.fixture(scope="module")
def reference():
    x, y, sigma = _data()
    return hpcfit.curve_fit(exponential_decay, x, y, p0=[1, 1, 0], sigma=sigma, chunk_size=1000, verbose=0)


@pytest.mark.parametrize("coords", ["dataset", "grid"])
@pytest.mark.parametrize("cache_bytes", [0, 1 << 30])
def test_streamed_fit_is_bitwise_the_in_memory_fit(h5file, reference, coords, cache_bytes):
    x, _, _ = _data()
    source = HDF5Source(h5file, y="y", sigma="sigma", cache_bytes=cache_bytes,
                        **({"x": "x"} if coords == "dataset" else {"grid": RegularGrid(x)}))
    res = hpcfit.fit(exponential_decay, source, p0=[1, 1, 0], chunk_size=1000, verbose=0)
    assert res.popt.tobytes() == reference.popt.tobytes()
    assert res.pcov.tobytes() == reference.pcov.tobytes()
    assert (res.njev, res.nfev) == (reference.njev, reference.nfev)
    assert res.info["source"].startswith("HDF5")


def test_two_dimensional_x_and_product_grid(tmp_path):
    a, b = np.linspace(0, 3, 101), np.linspace(-2, 2, 57)
    A, B = np.meshgrid(a, b, indexing="ij")
    x = np.stack([A.ravel(), B.ravel()])
    y = 1.7 * np.exp(-0.8 * x[0]) * np.cos(1.3 * x[1]) + 0.1

    import jax.numpy as jnp

    def model(x, p, q, r, s):
        return p * jnp.exp(-q * x[0]) * jnp.cos(r * x[1]) + s

    path = write(tmp_path / "xy.h5", x=x, y=y)
    ref = hpcfit.curve_fit(model, x, y, p0=[1, 1, 1, 0], chunk_size=500, verbose=0)
    from_x = hpcfit.fit(model, HDF5Source(path, x="x"), p0=[1, 1, 1, 0], chunk_size=500, verbose=0)
    from_grid = hpcfit.fit(model, HDF5Source(path, grid=RegularGrid(a, b)), p0=[1, 1, 1, 0], chunk_size=500,
                           verbose=0)
    assert from_x.popt.tobytes() == ref.popt.tobytes() == from_grid.popt.tobytes()
    np.testing.assert_allclose(ref.popt, [1.7, 0.8, 1.3, 0.1], rtol=1e-9)


def _fit(source):
    return hpcfit.fit(exponential_decay, source, p0=[1, 1, 0], chunk_size=1000, verbose=0)


def test_missing_file(tmp_path):
    with pytest.raises(hpcfit.InputError, match=r"file .*nope\.h5' does not exist"):
        _fit(HDF5Source(tmp_path / "nope.h5", x="x"))


def test_not_hdf5(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("hello")
    with pytest.raises(hpcfit.InputError, match=r"cannot open .*text\.h5' as HDF5"):
        _fit(HDF5Source(path, x="x"))


def test_missing_dataset(h5file):
    with pytest.raises(hpcfit.InputError, match=r"dataset 'counts' does not exist \(the `y` dataset\).*'sigma', 'x', 'y'"):
        _fit(HDF5Source(h5file, y="counts", x="x"))


def test_shape_mismatch(tmp_path):
    x, y, _ = _data()
    path = write(tmp_path / "bad.h5", x=x[:-1], y=y)
    with pytest.raises(hpcfit.InputError, match=r"dataset 'x' must have shape \(20011,\) or \(k, 20011\)"):
        _fit(HDF5Source(path, x="x"))


def test_nan_in_a_chunk_names_the_dataset_and_global_index(tmp_path):
    x, y, sigma = _data()
    y = y.copy()
    y[13457] = np.nan
    path = write(tmp_path / "nan.h5", x=x, y=y, sigma=sigma)
    with pytest.raises(hpcfit.InputError, match=r"nan\.h5', dataset 'y' contains NaN or Inf; first at global point index 13457"):
        _fit(HDF5Source(path, x="x", sigma="sigma"))


def test_non_positive_sigma(tmp_path):
    x, y, sigma = _data()
    sigma = sigma.copy()
    sigma[777] = 0.0
    path = write(tmp_path / "sig.h5", x=x, y=y, sigma=sigma)
    with pytest.raises(hpcfit.InputError, match=r"dataset 'sigma' must be > 0; value 0.0 at global index 777"):
        _fit(HDF5Source(path, x="x", sigma="sigma"))


def test_grid_and_x_arguments(h5file):
    with pytest.raises(hpcfit.InputError, match="exactly one of `x`"):
        _fit(HDF5Source(h5file))
    with pytest.raises(hpcfit.InputError, match="exactly one of `x`"):
        _fit(HDF5Source(h5file, x="x", grid=RegularGrid([1.0, 2.0])))
    with pytest.raises(hpcfit.InputError, match=r"`grid` has 3 points but file .* has 20011"):
        _fit(HDF5Source(h5file, grid=RegularGrid([1.0, 2.0, 3.0])))


def test_source_must_be_a_source():
    with pytest.raises(hpcfit.InputError, match="`source` must be a data source"):
        hpcfit.fit(exponential_decay, np.zeros(10), p0=[1, 1, 0])


def test_float32_y_stays_float32_until_the_kernels_and_gives_the_float64_answer(tmp_path):
    """A float32 y dataset is read and handed to the kernels as float32 (half the bytes); the kernels
    widen it, so the fit is bit for bit the fit of the same values given as float64."""
    from hpcfit.comm import Communicator

    x, y, sigma = _data()
    y32 = y.astype(np.float32)
    path = write(tmp_path / "f32.h5", x=x, y=y32, sigma=sigma)
    with Communicator(None) as hc:
        chunk = HDF5Source(path, y="y", x="x", sigma="sigma").open(hc, 1000).read(0)
    assert chunk.y.dtype == np.float32 and chunk.weight.dtype == np.float64
    streamed = hpcfit.fit(exponential_decay, HDF5Source(path, y="y", x="x", sigma="sigma"), [1, 1, 0],
                          chunk_size=1000, verbose=0)
    in_memory = hpcfit.curve_fit(exponential_decay, x, y32.astype(np.float64), p0=[1, 1, 0], sigma=sigma,
                                 chunk_size=1000, verbose=0)
    assert streamed.popt.tobytes() == in_memory.popt.tobytes()
    assert streamed.pcov.tobytes() == in_memory.pcov.tobytes()
