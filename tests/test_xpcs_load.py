"""XPCS two-time loading: both APS 8-ID-I layouts, selection, reconstruction, stream conversion, bad input."""
import itertools
import os

import h5py
import numpy as np
import pytest

import hpcfit

from hpcfit.xpcs.load import QSelectionWarning

from hpcfit.errors import InputError
from hpcfit.xpcs.layouts import bin_number, write_aps_u, write_old
from hpcfit.xpcs.load import (
    APS_U, OLD, TwoTimeData, detect_layout, load, phi_in_ranges, reconstruct_c2, replace_diagonal)
from hpcfit.pairs import n_pairs, pair_frames as pair_indices
from hpcfit.xpcs.stream import convert_to_stream, converted_path, is_current, read_stream_meta

Q = np.array([0.001, 0.002, 0.004])
PHI = np.array([0.0, 5.0, 90.0, 180.0, 355.0])
N_T = 9
DT = 0.25


def symmetric_c2(n_q=Q.size, n_phi=PHI.size, n_t=N_T, seed=0):
    """Distinct values everywhere, so a wrong bin, angle, frame or transpose cannot pass unnoticed."""
    a = np.random.default_rng(seed).uniform(1.0, 2.0, size=(n_q, n_phi, n_t, n_t))
    return (a + np.swapaxes(a, -1, -2)).astype(np.float32).astype(np.float64)   # maps are stored as float32


def neighbour_mean_diagonal(m):
    """The diagonal a loaded matrix must have, computed one element at a time."""
    n = m.shape[0]
    out = np.empty(n)
    for k in range(n):
        nb = ([m[k, k + 1]] if k + 1 < n else []) + ([m[k - 1, k]] if k > 0 else [])
        out[k] = sum(nb) / len(nb)
    return out


def assert_matches(data, c2_ring, frames=None):
    """Off-diagonal equal to the source (sliced to `frames`), diagonal the neighbour mean of the result."""
    first, last = frames or (1, c2_ring.shape[-1])
    want = c2_ring[:, first - 1:last, first - 1:last]
    off = ~np.eye(want.shape[-1], dtype=bool)
    assert data.c2.shape == want.shape and data.c2.dtype == np.float64
    np.testing.assert_array_equal(data.c2[:, off], want[:, off])
    for a in range(want.shape[0]):
        np.testing.assert_allclose(np.diag(data.c2[a]), neighbour_mean_diagonal(data.c2[a]), rtol=1e-15)


WRITERS = {APS_U: write_aps_u, OLD: write_old}


@pytest.fixture(params=[APS_U, OLD])
def layout(request):
    return request.param


@pytest.fixture
def c2():
    return symmetric_c2()


def write(layout, path, c2, **kw):
    return WRITERS[layout](path, c2, Q, PHI, **kw)


# ---------------------------------------------------------------- pure numerics

def test_reconstruct_and_replace_diagonal_alone():
    full = symmetric_c2(1, 2, 6)[0]
    np.testing.assert_array_equal(reconstruct_c2(np.triu(full)), full)
    np.testing.assert_array_equal(reconstruct_c2(np.tril(full)), full)
    fixed = replace_diagonal(full)
    for a in range(2):
        np.testing.assert_allclose(np.diag(fixed[a]), neighbour_mean_diagonal(full[a]), rtol=1e-15)
    np.testing.assert_array_equal(np.diag(replace_diagonal(np.array([[9.0, 3.0], [3.0, 9.0]]))), [3.0, 3.0])


def test_phi_in_ranges_wraps_modulo_360():
    phi = np.array([-5.0, 0.0, 5.0, 10.0, 11.0, 180.0, 349.0, 350.0, 355.0, 360.0, 725.0])
    got = phi[phi_in_ranges(phi, [(350, 10)])]
    np.testing.assert_array_equal(got, [-5.0, 0.0, 5.0, 10.0, 350.0, 355.0, 360.0, 725.0])
    np.testing.assert_array_equal(phi[phi_in_ranges(phi, [(-10, 10), (170, 190)])],
                                  [-5.0, 0.0, 5.0, 10.0, 180.0, 350.0, 355.0, 360.0, 725.0])
    assert phi_in_ranges(phi, [(0, 360)]).all() and phi_in_ranges(phi, [(-180, 180)]).all()
    assert phi_in_ranges(phi, None).all()
    np.testing.assert_array_equal(phi[phi_in_ranges(phi, [(180, 180)])], [180.0])


def test_pair_indices_order_and_counts():
    t1, t2 = pair_indices(4, "upper")
    assert t1.tolist() == [0, 0, 0, 1, 1, 2] and t2.tolist() == [1, 2, 3, 2, 3, 3]
    t1, t2 = pair_indices(3, "both")
    assert list(zip(t1.tolist(), t2.tolist())) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    for n in range(0, 12):
        for tri, keep in (("upper", lambda i, j: i < j), ("both", lambda i, j: i != j)):
            want = [p for p in itertools.product(range(n), repeat=2) if keep(*p)]   # lexicographic order
            t1, t2 = pair_indices(n, tri)
            assert list(zip(t1.tolist(), t2.tolist())) == want
            assert n_pairs(n, tri) == len(want) and t1.dtype == np.int64
    with pytest.raises(InputError, match="`triangle`"):
        pair_indices(4, "lower")
    with pytest.raises(InputError, match="`n_t`"):
        n_pairs(-1)


# ---------------------------------------------------------------- loading

def test_reconstruction_and_metadata(tmp_path, layout, c2):
    path = write(layout, tmp_path / "f.h5", c2)
    data = load(path, q=0.002, dt=DT)
    assert isinstance(data, TwoTimeData) and data.layout == layout == detect_layout(path)
    assert data.q == 0.002 and data.dt == DT and data.frames == (1, N_T) and data.path == str(path)
    np.testing.assert_array_equal(data.phi, PHI)
    np.testing.assert_array_equal(data.t, DT * np.arange(N_T))
    assert_matches(data, c2[1])
    assert not data.c2.flags.writeable


def test_lower_half_as_matlab_stores_it(tmp_path, layout, c2):
    data = load(write(layout, tmp_path / "f.h5", c2, half="lower"), q=0.004, dt=DT)
    assert_matches(data, c2[2])


@pytest.mark.parametrize("requested, q_idx", [(1e-9, 0), (0.0014, 0), (0.0016, 1), (0.0029, 1), (0.0031, 2),
                                              (5.0, 2)])
def test_nearest_q(tmp_path, layout, c2, requested, q_idx):
    if requested == 5.0:                             # far from every ring: used, with a warning
        with pytest.warns(QSelectionWarning, match=r"no q ring near the requested q=5: using the nearest, q=0.004"):
            data = load(write(layout, tmp_path / "f.h5", c2), q=requested, dt=DT)
    else:
        data = load(write(layout, tmp_path / "f.h5", c2), q=requested, dt=DT)
    assert data.q == Q[q_idx]
    assert_matches(data, c2[q_idx])


def test_phi_selection_wraps(tmp_path, layout, c2):
    path = write(layout, tmp_path / "f.h5", c2)
    data = load(path, q=0.001, dt=DT, phi_ranges=[(350, 10)])
    np.testing.assert_array_equal(data.phi, [0.0, 5.0, 355.0])
    assert_matches(data, c2[0][[0, 1, 4]])
    data = load(path, q=0.001, dt=DT, phi_ranges=[(170, 190), (-2, 2)])
    np.testing.assert_array_equal(data.phi, [0.0, 180.0])
    assert_matches(data, c2[0][[0, 3]])


@pytest.mark.parametrize("frames", [(1, 2), (3, 7), (4, N_T), (1, N_T)])
def test_frames_are_one_based_inclusive(tmp_path, layout, c2, frames):
    data = load(write(layout, tmp_path / "f.h5", c2), q=0.002, dt=DT, frames=frames)
    assert data.frames == frames and data.n_t == frames[1] - frames[0] + 1
    np.testing.assert_array_equal(data.t, DT * np.arange(data.n_t))
    assert_matches(data, c2[1], frames)


def test_both_layouts_give_identical_data(tmp_path, c2):
    kw = dict(q=0.0035, dt=DT, phi_ranges=[(355, 95)], frames=(2, 8))
    u = load(write_aps_u(tmp_path / "u.h5", c2, Q, PHI), **kw)
    o = load(write_old(tmp_path / "o.h5", c2, Q, PHI), **kw)
    assert (u.layout, o.layout) == (APS_U, OLD)
    np.testing.assert_array_equal(u.c2, o.c2)
    np.testing.assert_array_equal(u.phi, o.phi)
    assert (u.q, u.dt, u.frames) == (o.q, o.dt, o.frames)


def test_aps_u_processed_subset_and_empty_cells(tmp_path, c2):
    # cells 1 = (0, 1) and 5 = (1, 0) have no pixels, so labels skip them through dynamic_index_mapping:
    # labels 5, 6, 7 name cells 6, 7, 8 = (1, 1), (1, 2), (1, 3); processed out of order, c2_00001 is label 7
    path = write_aps_u(tmp_path / "u.h5", c2, Q, PHI, empty=[(0, 1), (1, 0)], processed=[7, 1, 5, 6])
    with h5py.File(path, "r") as f:
        assert f["xpcs/qmap/dynamic_index_mapping"][:7].tolist() == [0, 2, 3, 4, 6, 7, 8]
    data = load(path, q=0.002, dt=DT)
    np.testing.assert_array_equal(data.phi, PHI[1:4])
    assert_matches(data, c2[1][1:4])
    data = load(path, q=0.0012, dt=DT)
    np.testing.assert_array_equal(data.phi, [0.0])
    assert_matches(data, c2[0][[0]])


def test_aps_u_without_index_mapping_uses_label_as_cell(tmp_path, c2):
    path = write_aps_u(tmp_path / "u.h5", c2, Q, PHI, processed=[bin_number(2, 3, PHI.size)])
    with h5py.File(path, "a") as f:
        del f["xpcs/qmap/dynamic_index_mapping"]
    with pytest.warns(QSelectionWarning, match=r"requested q=1: using the nearest, q=0.004"):   # the only ring
        data = load(path, q=1.0, dt=DT)
    np.testing.assert_array_equal(data.phi, [180.0])
    assert_matches(data, c2[2][[3]])


@pytest.mark.parametrize("naming", ["bin", "counter"])
def test_old_layout_subset_with_both_namings(tmp_path, c2, naming):
    processed = [2, 3, 5, 12, 15]                   # q 0: phi 1, 2, 4; q 2: phi 1, 4
    path = write_old(tmp_path / "o.h5", c2, Q, PHI, processed=processed, naming=naming)
    with h5py.File(path, "r") as f:
        names = sorted(f["exchange/C2T_all"])
    assert names[0] == ("C2T_00002" if naming == "bin" else "g2_00001")
    data = load(path, q=0.001, dt=DT)
    np.testing.assert_array_equal(data.phi, PHI[[1, 2, 4]])
    assert_matches(data, c2[0][[1, 2, 4]])
    data = load(path, q=0.0021, dt=DT)               # q 1 has no map: the nearest ring with data is chosen
    assert data.q == 0.001


@pytest.mark.parametrize("naming", ["bin", "counter"])
def test_old_layout_map_listed_but_missing_is_an_error(tmp_path, c2, naming):
    path = write_old(tmp_path / "o.h5", c2, Q, PHI, processed=[2, 3, 5, 12, 15], naming=naming)
    with h5py.File(path, "a") as f:
        del f["exchange/C2T_all"][sorted(f["exchange/C2T_all"])[1]]       # bin 3's map (q 0, phi 2)
    with pytest.raises(hpcfit.InputError, match=r"'xpcs/qphi_bin_to_process' lists bin\(s\) \[.*\].* has no map "
                                                r"for them: the file is incomplete"):
        load(path, q=0.001, dt=DT)


# ---------------------------------------------------------------- stream conversion

@pytest.mark.parametrize("triangle", ["upper", "both"])
def test_convert_to_stream_round_trip(tmp_path, layout, c2, triangle):
    src = write(layout, tmp_path / "f.h5", c2)
    data = load(src, q=0.004, dt=DT, phi_ranges=[(350, 10)], frames=(2, 7))
    out = convert_to_stream(data, tmp_path / "s.h5", triangle=triangle)
    meta = read_stream_meta(out)
    t1, t2 = pair_indices(data.n_t, triangle)
    with h5py.File(out, "r") as f:
        y = f["y"][()]
    assert y.ndim == 1 and y.size == meta.n_points == data.phi.size * n_pairs(data.n_t, triangle)
    np.testing.assert_array_equal(y.reshape(data.phi.size, -1), data.c2[:, t1, t2])
    for a in range(data.phi.size):
        np.testing.assert_array_equal(y[a * t1.size:(a + 1) * t1.size], data.c2[a][t1, t2])
    np.testing.assert_array_equal(meta.phi, data.phi)
    assert (meta.n_t, meta.dt, meta.q, meta.triangle, meta.frames, meta.layout) == (
        data.n_t, DT, 0.004, triangle, (2, 7), layout)
    assert meta.source_path == str(src) and meta.source_size == os.path.getsize(src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.h5", "s.h5"]      # no temporary file left


def test_is_current_follows_the_source(tmp_path, c2):
    src = write_aps_u(tmp_path / "f.h5", c2, Q, PHI)
    stream = converted_path(src, 0.002, None, None, "upper")
    assert not is_current(stream, src)                                # not converted yet
    convert_to_stream(load(src, q=0.002, dt=DT), stream)
    assert is_current(stream, src)
    other = write_aps_u(tmp_path / "g.h5", c2, Q, PHI)
    assert not is_current(stream, other)                              # a different source
    st = os.stat(src)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # touched
    assert not is_current(stream, src)
    assert not is_current(stream, tmp_path / "gone.h5")


def test_converted_path_is_a_deterministic_sibling(tmp_path):
    src = tmp_path / "run_0001_results.hdf"
    a = converted_path(src, 0.002, [(350, 10)], (1, 100), "upper")
    assert a == converted_path(src, 0.002, ((350.0, 10.0),), [1, 100], "upper")
    assert a.parent == tmp_path and a.name.startswith("run_0001_results.hpcfit-") and a.suffix == ".h5"
    others = {converted_path(src, 0.003, [(350, 10)], (1, 100), "upper"),
              converted_path(src, 0.002, None, (1, 100), "upper"),
              converted_path(src, 0.002, [(350, 10)], (2, 100), "upper"),
              converted_path(src, 0.002, [(350, 10)], (1, 100), "both"),
              converted_path(tmp_path / "run_0001_results.h5", 0.002, [(350, 10)], (1, 100), "upper")}
    assert a not in others and len(others) == 5


# ---------------------------------------------------------------- bad input

def raises(match_all, fn, *args, **kw):
    with pytest.raises(InputError) as info:
        fn(*args, **kw)
    for text in match_all:
        assert str(text) in str(info.value), (text, str(info.value))
    return str(info.value)


def test_missing_file(tmp_path):
    raises([tmp_path / "nope.h5", "not found"], load, tmp_path / "nope.h5", q=0.002, dt=DT)


def test_not_hdf5_and_neither_layout(tmp_path):
    bad = tmp_path / "text.h5"
    bad.write_text("not hdf5")
    raises([bad, "HDF5"], load, bad, q=0.002, dt=DT)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f.create_group("entry")
    raises([empty, "xpcs/twotime", "exchange/C2T_all", "xpcs/dqlist", "entry"], load, empty, q=0.002, dt=DT)


@pytest.mark.parametrize("name", ["xpcs/qmap/dynamic_v_list_dim0", "xpcs/qmap/dynamic_v_list_dim1",
                                  "xpcs/twotime/processed_bins", "xpcs/twotime/correlation_map",
                                  "xpcs/twotime/correlation_map/c2_00002"])
def test_missing_dataset_aps_u(tmp_path, c2, name):
    path = write_aps_u(tmp_path / "u.h5", c2, Q, PHI)
    with h5py.File(path, "a") as f:
        del f[name]
    raises([path, name, "APS-U layout"], load, path, q=0.002, dt=DT)


@pytest.mark.parametrize("name", ["xpcs/dqlist", "xpcs/dphilist", "exchange/C2T_all"])
def test_missing_dataset_old(tmp_path, c2, name):
    path = write_old(tmp_path / "o.h5", c2, Q, PHI)
    with h5py.File(path, "a") as f:
        del f[name]
    raises([path, name, "old layout"], load, path, q=0.002, dt=DT)


def test_shape_mismatches(tmp_path, c2):
    path = write_old(tmp_path / "o.h5", c2, Q, PHI)
    with h5py.File(path, "a") as f:
        del f["xpcs/dphilist"]
        f["xpcs/dphilist"] = np.zeros((1, 4))
    raises([path, "xpcs/dphilist", "xpcs/dqlist", "(1, M)"], load, path, q=0.002, dt=DT)

    path = write_aps_u(tmp_path / "u.h5", c2, Q, PHI)
    with h5py.File(path, "a") as f:
        del f["xpcs/twotime/correlation_map/c2_00007"]
        f["xpcs/twotime/correlation_map/c2_00007"] = np.triu(np.ones((N_T - 1, N_T - 1)))
    raises([path, "c2_00007", f"({N_T}, {N_T})"], load, path, q=0.002, dt=DT)

    path = write_aps_u(tmp_path / "full.h5", c2, Q, PHI)
    with h5py.File(path, "a") as f:
        f["xpcs/twotime/correlation_map/c2_00001"][...] = c2[0, 0]        # full matrix, not a half
    raises([path, "c2_00001", "both sides of the diagonal"], load, path, q=0.001, dt=DT)


def test_empty_phi_selection_lists_available_angles(tmp_path, layout, c2):
    path = write(layout, tmp_path / "f.h5", c2)
    msg = raises([path, "`phi_ranges`", "[0.0, 5.0, 90.0, 180.0, 355.0]", "q=0.002"],
                 load, path, q=0.002, dt=DT, phi_ranges=[(20, 80)])
    assert "modulo 360" in msg


@pytest.mark.parametrize("frames", [(0, 5), (1, N_T + 1), (5, 3), (4, 4)])
def test_frames_out_of_range(tmp_path, layout, c2, frames):
    path = write(layout, tmp_path / "f.h5", c2)
    raises([path, "`frames`", f"1 <= first < last <= {N_T}"], load, path, q=0.002, dt=DT, frames=frames)


@pytest.mark.parametrize("kw, name", [(dict(dt=0.0), "`dt`"), (dict(dt=-1.0), "`dt`"), (dict(dt=np.nan), "`dt`"),
                                      (dict(q=0.0), "`q`"), (dict(q=-0.002), "`q`"), (dict(q="0.002"), "`q`"),
                                      (dict(frames=(1.0, 5)), "`frames`"), (dict(frames=3), "`frames`"),
                                      (dict(phi_ranges=[(1,)]), "`phi_ranges`"),
                                      (dict(phi_ranges=[]), "`phi_ranges`")])
def test_bad_arguments(tmp_path, c2, kw, name):
    path = write_aps_u(tmp_path / "u.h5", c2, Q, PHI)
    raises([name], load, path, **{"q": 0.002, "dt": DT, **kw})


def test_stream_errors(tmp_path, c2):
    src = write_aps_u(tmp_path / "u.h5", c2, Q, PHI)
    raises([src, "'format'"], read_stream_meta, src)
    raises([tmp_path / "none.h5", "not found"], read_stream_meta, tmp_path / "none.h5")
    raises(["`triangle`"], convert_to_stream, load(src, q=0.002, dt=DT), tmp_path / "s.h5", triangle="lower")
    raises(["`data`"], convert_to_stream, c2, tmp_path / "s.h5")


def test_writer_rejects_bad_shapes(tmp_path, c2):
    raises(["`c2`"], write_aps_u, tmp_path / "u.h5", c2[:, :2], Q, PHI)
    raises(["`processed`"], write_old, tmp_path / "o.h5", c2, Q, PHI, processed=[3, 1])
    raises(["`processed`"], write_aps_u, tmp_path / "u.h5", c2, Q, PHI, processed=[0])


def test_nan_in_a_map_is_named_by_file_map_angle_and_frames(tmp_path, c2):
    """A NaN in one map of the file: xpcs.fit (from load) and prepare_stream both name the file, the
    map's dataset, the angle (index, φ), q and the frame pair in the file's 1-based frames; the
    conversion leaves no stream file behind."""
    from hpcfit.xpcs import fit, prepare_stream
    bad = c2.copy()
    bad[1, 2, 4, 7] = bad[1, 2, 7, 4] = np.nan          # q index 1, angle 2 (phi 90), 0-based frames 4 and 7
    path = write_old(tmp_path / "nan.h5", bad, Q, PHI)
    data = load(path, q=Q[1], dt=DT, frames=(2, N_T))
    assert np.isnan(data.c2).sum() == 2                  # loading keeps the values (a viewer may want them)
    name = data.maps[2]
    assert name.startswith("exchange/C2T_all/")
    want = (rf"{path}: map '{name}' \(angle 2, phi = 90 deg, q = 0\.002\) holds 1 NaN or Inf value\(s\) among the "
            r"fitted pairs; the first at frames \(t1, t2\) = \(5, 8\) \(1-based frames of the file\)")
    with pytest.raises(InputError, match=want):
        fit(data, mode="static", verbose=0)
    out = tmp_path / "stream.h5"
    with pytest.raises(InputError, match=want):
        prepare_stream(path, q=Q[1], dt=DT, frames=(2, N_T), out=out)
    assert not out.exists() and not list(tmp_path.glob("stream.h5*"))
    with pytest.raises(InputError, match=want):
        convert_to_stream(data, out)
    assert not out.exists()
    # another angle's selection does not see it
    assert prepare_stream(path, q=Q[1], dt=DT, frames=(2, N_T), phi_ranges=[(-10, 10)], out=out) == out


def test_recorded_dt_of_the_real_result_files():
    """The real APS-U files record frame_time only (multitau results: no two-time config), so dt is
    not known from them; a file with all three gives their product."""
    from hpcfit.xpcs.load import recorded_dt
    real = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "real",
                        "E0173_H06-c6c5-4_a0009_f100000_r00001_results.hdf")
    if not os.path.exists(real):
        pytest.skip("the shared real data are not next to this checkout")
    dt, what = recorded_dt(real)
    assert dt is None and "xpcs/twotime/config/stride_frame" in what and "frame_time" not in what.split("missing")[1]


def test_files_of_another_kind_say_what_they_are_and_what_is_accepted(tmp_path):
    """A text map, a multitau-only result and an HDF5 file of another kind: one error naming the
    file, what it is and what is accepted (also from recorded_dt, which the app asks first)."""
    from hpcfit.xpcs.load import recorded_dt, select
    text = tmp_path / "map.txt"
    np.savetxt(text, np.ones((6, 6)), fmt="%.3f")
    multitau = tmp_path / "multitau.hdf"
    with h5py.File(multitau, "w") as f:
        f["xpcs/multitau/normalized_g2"] = np.ones((5, 3))
        f["xpcs/qmap/dynamic_v_list_dim0"] = Q
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["counts"] = np.ones(3)
    accepted = "accepted: APS 8-ID-I two-time result files (HDF5 with xpcs/twotime/correlation_map"
    for path, what in [(text, "a text file of numbers (6 per line: a table or a map saved as text), not HDF5"),
                       (multitau, "an APS multitau result file with g2 (xpcs/multitau/normalized_g2) but no "
                                  "two-time maps (no xpcs/twotime, no exchange/C2T_all)"),
                       (other, "an HDF5 file without the XPCS result layout (top-level keys ['counts']")]:
        message = raises([f"{path}: {what}", accepted], select, path, q=0.002)
        assert "\n" not in message
        assert raises([f"{path}: {what}"], detect_layout, path) == message
    raises([f"{text}: a text file of numbers"], recorded_dt, text)


@pytest.mark.parametrize("name, what", [
    ("8IDE_A073M115_ttc_blockavg300.txt", "a text file of numbers (300 per line: a table or a map saved as text)"),
    ("E0173_H06-c6c5-4_a0009_f100000_r00001_results.hdf", "an APS multitau result file with g2"),
    ("Average_B0146_S3_7_060C10p_att00_Rq0_00001_00050_results.hdf", "an APS multitau result file with g2")])
def test_the_real_files_without_two_time_maps_are_named_as_what_they_are(name, what):
    real = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "real", name)
    if not os.path.exists(real):
        pytest.skip("the shared real data are not next to this checkout")
    path = os.path.abspath(real)
    raises([f"{path}: {what}", "accepted: APS 8-ID-I two-time result files"], detect_layout, path)
