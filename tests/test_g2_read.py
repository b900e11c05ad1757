"""Reading multitau g2 results (issue 21, item 1): both real APS-U files against their datasets read
directly with h5py, and a written file whose q map is not the identity, with a bin without data."""
import os

import h5py
import numpy as np
import pytest

from hpcfit.errors import InputError
from hpcfit.xpcs.multitau import read_g2

REAL = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "real")
FILES = {"E0173_H06-c6c5-4_a0009_f100000_r00001_results.hdf": (61, 36),
         "Average_B0146_S3_7_060C10p_att00_Rq0_00001_00050_results.hdf": (61, 27)}


@pytest.mark.parametrize("name", sorted(FILES))
def test_both_real_files_give_g2_tau_and_q_of_every_bin(name):
    path = os.path.join(REAL, name)
    if not os.path.exists(path):
        pytest.skip("the shared real data are not next to this checkout")
    d = read_g2(path)
    with h5py.File(path, "r") as f:
        g2 = f["xpcs/multitau/normalized_g2"][()]
        err = f["xpcs/multitau/normalized_g2_err"][()]
        delays = f["xpcs/multitau/delay_list"][()]
        q = f["xpcs/qmap/dynamic_v_list_dim0"][()]
        frame_time = float(np.squeeze(f["entry/instrument/detector_1/frame_time"][()]))
    assert d.g2.shape == FILES[name] and np.array_equal(d.g2, g2.astype(float))
    assert d.dt == pytest.approx(frame_time) and frame_time == pytest.approx(2e-5, rel=1e-6)   # stride 1, avg 1
    np.testing.assert_allclose(d.tau, delays * frame_time, rtol=1e-12)
    assert np.array_equal(d.q, q) and np.all(d.phi == 0.0)        # one φ bin; mapping is the identity here
    # a delay without photon pairs is stored as g2 = 0 with error 0: no data there
    assert np.array_equal(d.has_data, err > 0) and (~d.has_data).sum() > 100
    assert d.empty == ()
    assert read_g2(path, dt=1e-3).tau[0] == pytest.approx(1e-3 * delays[0])


def _write(path, *, mapping=(0, 2, 3, 5), map_names=(b"q", b"phi"), empty_bin=2, config=True, **overrides):
    """A multitau file as boost_corr writes it, on a 3 q x 2 φ grid of which 4 cells have pixels."""
    rng = np.random.default_rng(0)
    delays = np.array([1, 2, 3, 4, 6, 8, 12, 16])
    g2 = (1.0 + 0.2 * np.exp(-delays[:, None] / 5.0) + 0.001 * rng.standard_normal((8, 4))).astype(np.float32)
    err = np.full((8, 4), 0.001, np.float32)
    g2[:, empty_bin] = 0.0
    err[:, empty_bin] = 0.0
    err[0, 0] = 0.0
    datasets = {"xpcs/multitau/normalized_g2": g2, "xpcs/multitau/normalized_g2_err": err,
                "xpcs/multitau/delay_list": delays, "xpcs/qmap/dynamic_v_list_dim0": np.array([0.01, 0.02, 0.03]),
                "xpcs/qmap/dynamic_v_list_dim1": np.array([-45.0, 45.0]),
                "xpcs/qmap/dynamic_index_mapping": np.array(mapping, np.uint8),
                "xpcs/qmap/map_names": np.array(map_names, dtype=object)}
    if config:
        datasets.update({"entry/instrument/detector_1/frame_time": np.array([[0.001]], np.float32),
                         "xpcs/multitau/config/stride_frame": np.int64(2), "xpcs/multitau/config/avg_frame": np.int64(5)})
    datasets.update(overrides)
    with h5py.File(path, "w") as f:
        for key, value in datasets.items():
            if value is not None:
                f[key] = value
    return path


def test_columns_follow_the_dynamic_index_mapping_and_a_bin_without_data_is_named(tmp_path):
    d = read_g2(_write(tmp_path / "r.hdf"))
    # cells 0, 2, 3, 5 of the q-major 3 x 2 grid: (q, φ) = (.01, -45), (.02, -45), (.02, 45), (.03, 45)
    assert d.q.tolist() == [0.01, 0.02, 0.02, 0.03] and d.phi.tolist() == [-45.0, -45.0, 45.0, 45.0]
    assert d.dt == pytest.approx(0.001 * 2 * 5, rel=1e-6)
    np.testing.assert_allclose(d.tau, [0.01, 0.02, 0.03, 0.04, 0.06, 0.08, 0.12, 0.16], rtol=1e-6)
    assert d.empty == (2,) and "q = 0.02 Å⁻¹, φ = 45°" in d.describe_bin(2)
    assert not d.has_data[0, 0] and d.has_data[1:, 0].all() and d.has_data[:, [1, 3]].all()


def test_map_names_in_the_other_order_swap_the_axes(tmp_path):
    d = read_g2(_write(tmp_path / "r.hdf", map_names=(b"phi", b"q")))
    # axis 0 is then φ (values 0.01..0.03 read as angles) and axis 1 q
    assert d.phi.tolist() == [0.01, 0.02, 0.02, 0.03] and d.q.tolist() == [-45.0, -45.0, 45.0, 45.0]


@pytest.mark.parametrize("change, message", [
    ({"config": False}, r"`dt` is required: .* does not record dt"),
    ({"xpcs/multitau/normalized_g2_err": np.ones((7, 4))}, r"normalized_g2_err' has shape \(7, 4\)"),
    ({"xpcs/multitau/delay_list": np.array([1, 2, 3, 3, 6, 8, 12, 16])}, r"delay_list' must hold 8 increasing"),
    ({"mapping": (0, 2, 3, 9)}, r"dynamic_index_mapping' must give each of the 4 g2 columns a cell of the 3 x 2"),
    ({"map_names": (b"q", b"angle")}, r"map_names' is \['q', 'angle'\]"),
    ({"xpcs/multitau/normalized_g2": None}, r"no multitau g2 \('xpcs/multitau/normalized_g2' is missing"),
])
def test_bad_files_are_named_with_what_is_wrong(tmp_path, change, message):
    with pytest.raises(InputError, match=message):
        read_g2(_write(tmp_path / "r.hdf", **change))


def test_the_low_level_reads_equal_h5pys_and_leave_groups_and_empty_datasets_to_it(tmp_path):
    import h5py

    from hpcfit.xpcs.load import low_level_dataset, whole

    with h5py.File(tmp_path / "kinds.h5", "w") as f:
        f["vec"] = np.arange(5.0)
        f["row"] = np.arange(6, dtype=np.uint16).reshape(1, 6)
        f["scalar"] = 2.5
        f["names"] = np.array([b"q", b"phi"], dtype=object)
        f["table"] = np.random.default_rng(0).random((4, 3)).astype(np.float32)
        f.create_group("grp")
        f.create_dataset("nothing", data=h5py.Empty("f8"))
    with h5py.File(tmp_path / "kinds.h5", "r") as f:
        for name in ("vec", "row", "scalar", "names", "table"):
            got, want = whole(low_level_dataset(f, name)), f[name][()]
            assert got.dtype == np.asarray(want).dtype and np.array_equal(got, want), name
        assert [low_level_dataset(f, n) for n in ("grp", "nothing", "missing", "vec/deeper")] == [None] * 4
