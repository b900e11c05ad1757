"""MPI lane for XPCS: simulate under MPI, stream the file, and get the serial bits on every rank."""
import os

import numpy as np
import pytest

from hpcfit.xpcs import fit, simulate

pytestmark = pytest.mark.mpi(min_size=2)
TRUTH = [1500.0, -0.25, 20.0, 3e-4, 0.35, 1e-5, 5.0]


@pytest.fixture(scope="module")
def stream_file(world, shared_dir):
    path = os.path.join(shared_dir, "sim.h5")
    simulate(path, layout="stream", n_phi=5, n_t=120, mode="laminar_flow", dt=0.5, q=0.0054, L=2e6, params=TRUTH,
             contrast=0.25, offset=1.0, noise=0.002, seed=7, comm=world)
    return path


def test_streamed_laminar_fit_gives_the_serial_bits(world, stream_file):
    kw = dict(mode="laminar_flow", L=2e6, p0=[1000.0, 0.0, 0.0, 1e-3, 0.0, 0.0, 0.0], verbose=0, chunk_size=1000)
    serial = fit(stream_file, **kw)
    par = fit(stream_file, comm=world, **kw)
    assert par.popt.tobytes() == serial.popt.tobytes() and par.pcov.tobytes() == serial.pcov.tobytes()
    assert par.info["n_ranks"] == world.size and par.info["source"].startswith("HDF5")
    assert par.success
    # the same minimum as from the true start: the fit converged, not stalled (recovery of the
    # truth within 3σ is tested in test_xpcs_fit.py)
    from_truth = fit(stream_file, **dict(kw, p0=TRUTH))
    np.testing.assert_allclose(par.cost, from_truth.cost, rtol=1e-9)


def test_parallel_conversion_equals_serial(world, shared_dir):
    import h5py

    from hpcfit.xpcs import prepare_stream
    tmp = shared_dir
    src = os.path.join(tmp, "raw.h5")
    simulate(src, layout="old", n_phi=4, n_t=50, mode="static", dt=0.5, q=0.0054, L=2e6, params=TRUTH[:3],
             contrast=0.25, offset=1.0, noise=0.002, seed=9, comm=world)
    par = prepare_stream(src, q=0.0054, dt=0.5, out=os.path.join(tmp, "par.h5"), comm=world)
    if world.rank == 0:
        ser = prepare_stream(src, q=0.0054, dt=0.5, out=os.path.join(tmp, "ser.h5"))
        with h5py.File(par) as a, h5py.File(ser) as b:
            assert np.array_equal(a["y"][:], b["y"][:])
    world.Barrier()


def test_a_bad_path_on_one_rank_is_raised_everywhere(world, stream_file):
    import hpcfit
    path = stream_file if world.rank != world.size - 1 else stream_file + ".missing"
    with pytest.raises(hpcfit.InputError) as info:
        fit(path, mode="static", comm=world, verbose=0)
    messages = world.allgather(str(info.value))
    assert all(m == messages[0] for m in messages) and f"rank {world.size - 1}" in messages[0]


def test_nan_in_a_map_read_by_the_last_rank_is_named_on_every_rank(world, shared_dir):
    """prepare_stream under MPI: angle a is read by rank a % size; a NaN in the last rank's map is
    the same error (file, map, angle, frames) on every rank, and no stream file is left."""
    import h5py

    import hpcfit
    from hpcfit.xpcs import prepare_stream
    src = os.path.join(shared_dir, "nan-src.h5")
    simulate(src, layout="old", n_phi=4, n_t=30, mode="static", dt=0.5, q=0.0054, L=2e6, params=TRUTH[:3],
             contrast=0.25, offset=1.0, noise=0.002, seed=9, comm=world)
    angle = world.size - 1
    if world.rank == 0:
        with h5py.File(src, "r+") as f:
            maps = f["exchange/C2T_all"]
            name = sorted(maps)[angle]
            values = maps[name][()]
            if values[3, 11] != 0:                      # the half the file stores
                values[3, 11] = np.nan
            else:
                values[11, 3] = np.nan
            maps[name][...] = values
    world.Barrier()
    out = os.path.join(shared_dir, "nan-stream.h5")
    with pytest.raises(hpcfit.InputError) as info:
        prepare_stream(src, q=0.0054, dt=0.5, out=out, comm=world)
    messages = world.allgather(str(info.value))
    assert all(m == messages[0] for m in messages)
    assert f"{src}: map 'exchange/C2T_all/" in messages[0] and f"(angle {angle}, phi = " in messages[0]
    assert "(t1, t2) = (4, 12)" in messages[0] and f"rank {angle}" in messages[0]
    assert not os.path.exists(out)


def test_a_beamline_file_streamed_directly_gives_the_serial_bits(world, shared_dir):
    """Each rank reads its own chunks from the float32 maps (chunks across rows and angles)."""
    from hpcfit.xpcs import beamline

    path = os.path.join(shared_dir, "beamline.h5")
    simulate(path, layout="aps-u", n_phi=4, n_t=80, mode="laminar_flow", dt=0.5, q=0.0054, L=2e6, params=TRUTH,
             contrast=0.25, offset=1.0, noise=0.002, seed=3, comm=world)
    data = beamline(path, q=0.0054, dt=0.5, frames=(2, 79))
    kw = dict(mode="laminar_flow", L=2e6, verbose=0, chunk_size=611, scan=False)
    serial = fit(data, **kw)
    par = fit(data, comm=world, **kw)
    assert par.popt.tobytes() == serial.popt.tobytes() and par.pcov.tobytes() == serial.pcov.tobytes()
    assert par.info["source"].startswith("two-time file") and par.info["n_ranks"] == world.size


def test_several_rings_with_the_noise_from_the_data_give_the_serial_bits(world, shared_dir):
    """Two q rings (the noise of each estimated on rank 0 and shared), chunks across maps and rings."""
    from hpcfit.xpcs import beamline

    path = os.path.join(shared_dir, "rings.h5")
    simulate(path, layout="aps-u", n_phi=3, n_t=100, mode="laminar_flow", dt=0.5, q=[0.004, 0.0065], L=2e6,
             params=TRUTH, contrast=0.25, offset=1.0, noise=[0.002, 0.005], noise_growth=0.5, seed=5, comm=world,
             phi=[-40.0, 10.0, 70.0])
    data = beamline(path, q="all", dt=0.5)
    kw = dict(mode="laminar_flow", L=2e6, verbose=0, chunk_size=977, scan=False, p0=TRUTH)
    serial = fit(data, **kw)
    par = fit(data, comm=world, **kw)
    assert par.popt.tobytes() == serial.popt.tobytes() and par.pcov.tobytes() == serial.pcov.tobytes()
    assert 0.9 < par.reduced_chi2 < 1.1
    assert par.info["xpcs"]["noise"] == serial.info["xpcs"]["noise"] and len(par.info["xpcs"]["rings"]) == 2


def test_a_nan_in_the_last_ranks_chunks_of_a_beamline_file_is_named_on_every_rank(world, shared_dir):
    """Streaming the maps directly: only the last rank reads the last angle's chunks; its NaN is the
    same error (file, map, angle, frames) on every rank, and the file is not touched."""
    import h5py

    import hpcfit
    from hpcfit.xpcs import beamline
    src = os.path.join(shared_dir, "nan-direct.h5")
    simulate(src, layout="aps-u", n_phi=3, n_t=40, mode="static", dt=0.5, q=0.0054, L=2e6, params=TRUTH[:3],
             contrast=0.25, offset=1.0, noise=0.002, seed=9, comm=world)
    if world.rank == 0:
        with h5py.File(src, "r+") as f:
            maps = f["xpcs/twotime/correlation_map"]
            maps[sorted(maps)[-1]][30, 37] = np.nan          # the last angle, near its last pairs
    world.Barrier()
    before = os.stat(src).st_mtime_ns
    with pytest.raises(hpcfit.InputError) as err:
        fit(beamline(src, q=0.0054, dt=0.5), mode="static", scan=False, method="gn", chunk_size=100, comm=world,
            verbose=0)
    message = str(err.value)
    assert "angle index 2" in message and "frames (31, 38)" in message, message
    assert world.allgather(message) == [message] * world.size
    assert os.stat(src).st_mtime_ns == before


def test_a_parameter_groups_declaration_on_one_rank_only_is_refused_everywhere(world, shared_dir):
    """A different parameter_groups on one rank is named on every rank; nobody hangs."""
    import hpcfit
    from hpcfit.xpcs import beamline
    src = os.path.join(shared_dir, "groups-one-rank.h5")
    simulate(src, layout="aps-u", n_phi=2, n_t=30, mode="static", dt=0.5, q=0.0054, L=2e6, params=TRUTH[:3],
             contrast=0.25, offset=1.0, noise=0.002, seed=4, comm=world)
    groups = "off" if world.rank == world.size - 1 else "auto"
    with pytest.raises(hpcfit.InputError, match="parameter_groups") as err:
        fit(beamline(src, q=0.0054, dt=0.5), mode="static", scan=False, comm=world, verbose=0,
            parameter_groups=groups)
    assert world.allgather(str(err.value)) == [str(err.value)] * world.size
