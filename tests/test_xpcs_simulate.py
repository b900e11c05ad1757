"""Synthetic XPCS data: writers of one map at a time, simulate() in every layout, determinism, the CLI, and the
MPI lane (the file written by 2 or 3 ranks is the serial one bit for bit; a failure on any rank raises on all)."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from hpcfit.comm import Communicator
from hpcfit.errors import FitError, InputError
from hpcfit.models.xpcs import two_time_c2
from hpcfit.xpcs.layouts import open_aps_u_writer, open_old_writer, write_aps_u, write_old
from hpcfit.xpcs.load import load
from hpcfit.xpcs.simulate import SIMULATION_ATTR, simulate
from hpcfit.pairs import pair_frames as pair_indices
from hpcfit.xpcs.stream import convert_to_stream, open_stream_writer, read_stream_meta

# the module itself (the package attribute hpcfit.xpcs.simulate is the function)
sim_mod = sys.modules["hpcfit.xpcs.simulate"]

ROOT = Path(__file__).resolve().parents[1]
PARAMS = [1e3, -0.5, 10.0, 1e-3, 0.2, 1e-4, 30.0]
KW = dict(n_phi=3, n_t=15, dt=0.1, q=0.005, L=2e6, params=PARAMS, contrast=[0.3, 0.2, 0.25], offset=1.0, noise=0.01,
          seed=7)
OFF = ~np.eye(KW["n_t"], dtype=bool)


def content(path):
    """Every dataset's and attribute's dtype, shape and bytes, by name: equal means the same data bit for bit."""
    def attrs(obj):
        return {k: (np.asarray(v).dtype.str, np.asarray(v).tobytes()) for k, v in obj.attrs.items()}

    out = {}
    with h5py.File(path, "r") as f:
        out["/"] = attrs(f)

        def visit(name, obj):
            data = (obj.dtype.str, obj.shape, obj[()].tobytes()) if isinstance(obj, h5py.Dataset) else None
            out[name] = (data, attrs(obj))
        f.visititems(visit)
    return out


def model(params=PARAMS, **kw):
    kw = {k: v for k, v in dict(KW, **kw).items() if k not in ("n_phi", "noise", "seed", "params")}
    return np.asarray(two_time_c2(params, **kw))


def symmetric(n_q, n_phi, n_t, seed=0):
    a = np.random.default_rng(seed).uniform(1.0, 2.0, size=(n_q, n_phi, n_t, n_t))
    return a + np.swapaxes(a, -1, -2)


# ---------------------------------------------------------------- writers, one map at a time

@pytest.mark.parametrize("layout", ["aps-u", "old"])
def test_map_writers_equal_the_array_writers(tmp_path, layout):
    q, phi, c2 = [0.001, 0.002], [0.0, 90.0, 180.0], symmetric(2, 3, 6)
    if layout == "aps-u":
        kw = dict(processed=[4, 1, 3], empty=[(0, 2)], half="lower")
        write_aps_u(tmp_path / "a.h5", c2, q, phi, **kw)
        writer = open_aps_u_writer(tmp_path / "b.h5", q, phi, 6, **kw)
    else:
        kw = dict(processed=[2, 3, 6], naming="counter")
        write_old(tmp_path / "a.h5", c2, q, phi, **kw)
        writer = open_old_writer(tmp_path / "b.h5", q, phi, 6, **kw)
    with writer:
        for cell in reversed(writer.cells):                       # any order: the names are fixed up front
            writer.write(*cell, c2[cell])
    assert content(tmp_path / "a.h5") == content(tmp_path / "b.h5")


def test_map_writer_errors_leave_no_file(tmp_path):
    path = tmp_path / "u.h5"
    with open_aps_u_writer(path, [0.001], [0.0, 90.0], 4, processed=[2]) as w:
        assert w.cells == [(0, 1)]
        with pytest.raises(InputError, match="`c2_map` must have shape"):
            w.write(0, 1, np.ones((3, 3)))
        with pytest.raises(InputError, match=r"\(0, 0\) gets no map"):
            w.write(0, 0, np.ones((4, 4)))
        w.write(0, 1, np.ones((4, 4)))
        with pytest.raises(InputError, match="already written"):
            w.write(0, 1, np.ones((4, 4)))
    assert path.exists()
    with pytest.raises(InputError, match="1 of 2 maps were not written"):
        with open_old_writer(path, [0.001], [0.0, 90.0], 4) as w:
            w.write(0, 0, np.ones((4, 4)))
    assert not path.exists()
    with pytest.raises(RuntimeError, match="producer failed"):
        with open_old_writer(path, [0.001], [0.0], 4):
            raise RuntimeError("producer failed")
    assert not path.exists()
    with pytest.raises(InputError, match="`n_t`"):
        open_aps_u_writer(path, [0.001], [0.0], 1)
    with pytest.raises(InputError, match="cannot write"):
        open_aps_u_writer(tmp_path / "no" / "dir.h5", [0.001], [0.0], 4)


@pytest.mark.parametrize("triangle", ["upper", "both"])
def test_stream_writer_one_angle_at_a_time(tmp_path, triangle):
    c2 = symmetric(1, 3, 7)[0]
    path = tmp_path / "s.h5"
    with open_stream_writer(path, phi=[0.0, 10.0, 20.0], n_t=7, dt=0.5, q=0.003, triangle=triangle,
                            layout="simulated", attrs={"note": "x"}) as w:
        for a in (2, 0, 1):
            w.write(a, c2[a])
            assert not path.exists()                              # renamed into place at the end only
    meta = read_stream_meta(path)
    assert (meta.n_t, meta.dt, meta.q, meta.triangle, meta.frames, meta.layout) == (7, 0.5, 0.003, triangle, (1, 7),
                                                                                   "simulated")
    assert (meta.source_path, meta.source_size, meta.source_mtime_ns) == ("", -1, -1)
    t1, t2 = pair_indices(7, triangle)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["y"][()], c2[:, t1, t2].reshape(-1))
        assert f.attrs["note"] == "x"
    with pytest.raises(InputError, match="1 of 3 angles were not written"):
        with open_stream_writer(tmp_path / "t.h5", phi=[0.0, 1.0, 2.0], n_t=7, dt=0.5, q=0.003, layout="x") as w:
            w.write(0, c2[0])
            w.write(1, c2[1])
    with pytest.raises(InputError, match="already written"):
        with open_stream_writer(tmp_path / "t.h5", phi=[0.0], n_t=7, dt=0.5, q=0.003, layout="x") as w:
            w.write(0, c2[0])
            w.write(0, c2[0])
    with pytest.raises(InputError, match="`attrs`"):
        open_stream_writer(tmp_path / "t.h5", phi=[0.0], n_t=7, dt=0.5, q=0.003, layout="x", attrs={"n_t": 3})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]          # nothing partial, no temporary file


# ---------------------------------------------------------------- simulate: values

@pytest.mark.parametrize("mode, form", [("laminar_flow", "homodyne"), ("laminar_flow", "paper"),
                                        ("static", "homodyne")])
def test_without_noise_the_file_holds_the_model(tmp_path, monkeypatch, mode, form):
    monkeypatch.setattr(sim_mod, "BLOCK_POINTS", 40)              # 2 rows per block: many blocks, a ragged last one
    params = PARAMS if mode == "laminar_flow" else PARAMS[:3]
    s = simulate(tmp_path / "u.h5", **dict(KW, params=params, noise=0.0, mode=mode, form=form))
    data = load(s.path, q=KW["q"], dt=KW["dt"])
    np.testing.assert_array_equal(data.phi, [0.0, 120.0, 240.0])
    want = model(params, phi=data.phi, mode=mode, form=form).astype(np.float32)     # maps are float32, as at APS
    np.testing.assert_array_equal(data.c2[:, OFF], want[:, OFF])
    assert s.path == str(tmp_path / "u.h5") and s.layout == "aps-u" and s.n_ranks == 1
    assert s.n_points == 3 * 15 * 14 // 2 and (s.n_phi, s.n_t) == (3, 15)
    assert s.truth["params"] == dict(zip(["D0", "alpha", "D_offset", "gamma_dot_t0", "beta", "gamma_dot_t_offset",
                                          "phi0"], params))
    assert s.truth["contrast"] == KW["contrast"] and s.truth["offset"] == [1.0] * 3 and s.truth["noise"] == 0.0
    with h5py.File(s.path, "r") as f:
        assert json.loads(f.attrs[SIMULATION_ATTR]) == s.truth
    assert "3 angle(s) x 15^2 frames, 315 points" in s.brief()


def test_noise_is_the_documented_symmetric_draw(tmp_path):
    s = simulate(tmp_path / "u.h5", **KW)
    data = load(s.path, q=KW["q"], dt=KW["dt"])
    want = model(phi=data.phi)
    for a in range(3):
        z = np.random.default_rng([KW["seed"], a]).standard_normal((15, 15))
        noisy = want[a] + (KW["noise"] / math.sqrt(2.0)) * (z + z.T)
        np.testing.assert_array_equal(data.c2[a][OFF], noisy[OFF].astype(np.float32))
    # and it has the requested size: off-diagonal standard deviation `noise`
    big = simulate(tmp_path / "big.h5", **dict(KW, n_phi=1, n_t=300, contrast=0.3, noise=0.05))
    c2 = load(big.path, q=KW["q"], dt=KW["dt"]).c2[0]
    residual = (c2 - model(phi=[0.0], n_t=300, contrast=0.3)[0])[np.triu_indices(300, 1)]
    assert abs(residual.std() / 0.05 - 1) < 0.02 and abs(residual.mean()) < 0.002


@pytest.mark.parametrize("layout", ["aps-u", "old", "stream"])
def test_deterministic_for_a_seed(tmp_path, layout):
    a = simulate(tmp_path / "a.h5", layout=layout, **KW)
    b = simulate(tmp_path / "b.h5", layout=layout, **KW)
    c = simulate(tmp_path / "c.h5", layout=layout, **dict(KW, seed=8))
    assert content(a.path) == content(b.path) != content(c.path)


def test_layouts_agree(tmp_path):
    u = load(simulate(tmp_path / "u.h5", **KW).path, q=KW["q"], dt=KW["dt"])
    o = load(simulate(tmp_path / "o.h5", layout="old", **KW).path, q=KW["q"], dt=KW["dt"])
    assert (u.layout, o.layout) == ("aps-u", "old")
    np.testing.assert_array_equal(u.c2, o.c2)
    np.testing.assert_array_equal(u.phi, o.phi)


@pytest.mark.parametrize("triangle", ["upper", "both"])
def test_stream_layout_matches_convert_to_stream(tmp_path, triangle):
    kw = dict(KW, phi=[10.0, 200.0, 355.0], contrast=0.2)
    data = load(simulate(tmp_path / "u.h5", **kw).path, q=KW["q"], dt=KW["dt"])
    converted = read_stream_meta(convert_to_stream(data, tmp_path / "c.h5", triangle=triangle))
    s = simulate(tmp_path / "s.h5", layout="stream", triangle=triangle, **kw)
    meta = read_stream_meta(s.path)
    with h5py.File(s.path, "r") as f, h5py.File(converted.path, "r") as g:
        # the beamline layout stores float32 maps; the stream layout keeps the float64 draw
        assert f["y"][()].astype(np.float32).tobytes() == g["y"][()].astype(np.float32).tobytes()
        assert json.loads(f.attrs[SIMULATION_ATTR])["triangle"] == triangle
    np.testing.assert_array_equal(meta.phi, converted.phi)
    for key in ("n_t", "dt", "q", "triangle", "frames", "n_pairs", "n_points"):
        assert getattr(meta, key) == getattr(converted, key), key
    assert s.n_points == meta.n_points and (meta.layout, meta.source_path) == ("simulated", "")


# ---------------------------------------------------------------- simulate: bad input

@pytest.mark.parametrize("kw, name", [
    (dict(layout="hdf5"), "`layout`"), (dict(n_phi=0), "`n_phi`"), (dict(n_phi=2.0), "`n_phi`"),
    (dict(n_t=1), "`n_t`"), (dict(n_t=True), "`n_t`"), (dict(mode="shear"), "`mode`"), (dict(form="x"), "`form`"),
    (dict(dt=0.0), "`dt`"), (dict(q=-1.0), "`q`"), (dict(L=float("nan")), "`L`"), (dict(dt="0.1"), "`dt`"),
    (dict(params=PARAMS[:3]), "`params`"), (dict(params=[*PARAMS[:6], np.inf]), "`params`"),
    (dict(params="abc"), "`params`"), (dict(contrast=[0.1, 0.2]), "`contrast`"), (dict(offset=[[1.0]]), "`offset`"),
    (dict(noise=-0.1), "`noise`"), (dict(seed=-1), "`seed`"), (dict(seed=1.5), "`seed`"),
    (dict(triangle="lower"), "`triangle`"), (dict(triangle="both"), "`triangle`"), (dict(phi=[0.0, 1.0]), "`phi`"),
    (dict(phi=[0.0, 1.0, np.nan]), "`phi`"), (dict(out=3.5), "`out`"), (dict(out="/no/such/dir/x.h5"), "`out`"),
    (dict(comm="world"), "`comm`"),
    (dict(params=[1e308, -0.5, 0.0], mode="static"), "`params`"),            # finite numbers, non-finite model
])
def test_bad_arguments(tmp_path, kw, name):
    out = tmp_path / "x.h5"
    with pytest.raises(InputError) as info:
        simulate(**{"out": out, **KW, **kw})
    assert name in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_point_to_point_needs_mpi():
    with pytest.raises(FitError, match="send_array needs an MPI communicator"):
        Communicator(None).send_array(np.zeros(3))


# ---------------------------------------------------------------- the command line

CLI = ["-m", "hpcfit", "simulate", "xpcs", "--n-phi", "2", "--n-t", "12", "--dt", "0.1", "--q", "0.005", "--L",
       "2e6", "--params", *map(str, PARAMS), "--contrast", "0.3", "0.2", "--offset", "1", "--noise", "0.01",
       "--seed", "7"]


def test_cli_writes_the_same_file_as_the_api(tmp_path):
    out = subprocess.run([sys.executable, *CLI, "--out", str(tmp_path / "cli.h5"), "--layout", "stream",
                          "--triangle", "both"], capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path / "cli.h5") in lines[0] and "2 angle(s) x 12^2 frames" in lines[0]
    api = simulate(tmp_path / "api.h5", layout="stream", triangle="both", **dict(KW, n_phi=2, n_t=12,
                                                                                 contrast=[0.3, 0.2]))
    assert content(tmp_path / "cli.h5") == content(api.path)


def test_cli_bad_argument_fails_naming_it(tmp_path):
    out = subprocess.run([sys.executable, *CLI, "--out", str(tmp_path / "x.h5"), "--n-phi", "0"],
                         capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert out.returncode == 1 and out.stderr.startswith("hpcfit: error: ") and "`n_phi`" in out.stderr
    assert not (tmp_path / "x.h5").exists()


# ---------------------------------------------------------------- MPI lane

def _same_everywhere(world, value):
    values = world.allgather(value)
    assert all(v == values[0] for v in values), values
    return values[0]


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("layout, triangle", [("aps-u", "upper"), ("old", "upper"), ("stream", "both")])
@pytest.mark.parametrize("angles", ["fewer than ranks", "last round partly filled"])
def test_mpi_file_is_the_serial_file_bit_for_bit(world, shared_dir, layout, triangle, angles):
    n_phi = 1 if angles == "fewer than ranks" else 2 * world.size + 1
    kw = dict(KW, n_phi=n_phi, n_t=21, contrast=0.25, layout=layout, triangle=triangle)
    tag = f"{layout}-{n_phi}"
    serial, parallel = (os.path.join(shared_dir, f"{name}-{tag}.h5") for name in ("serial", "parallel"))
    if world.rank == 0:
        simulate(serial, **kw)                     # alone: the other ranks wait in the first agreement below
    summary = simulate(parallel, comm=world, **kw)
    assert summary.n_ranks == world.size and summary.path == parallel
    if world.rank == 0:
        same_data = content(serial) == content(parallel)
        same_bytes = Path(serial).read_bytes() == Path(parallel).read_bytes()
    assert world.bcast((same_data, same_bytes) if world.rank == 0 else None) == (True, True)


@pytest.mark.mpi(min_size=2)
def test_mpi_bad_argument_raises_on_every_rank(world, shared_dir):
    with pytest.raises(InputError) as info:
        simulate(os.path.join(shared_dir, "bad.h5"), comm=world, **dict(KW, contrast=[0.1, 0.2]))
    assert "`contrast`" in _same_everywhere(world, str(info.value))


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("where", ["model on the last rank", "write on rank 0"])
def test_mpi_failure_on_one_rank_raises_on_every_rank(world, shared_dir, monkeypatch, where):
    out = os.path.join(shared_dir, f"fail-{where.split()[0]}.h5")
    if where.startswith("model") and world.rank == world.size - 1:
        def fail(*args):
            raise RuntimeError("model failed here")
        monkeypatch.setattr(sim_mod, "_angle_map", fail)
    if where.startswith("write") and world.rank == 0:
        put = sim_mod._put

        def fail_second(writer, n_phi, a, c2_map):
            if a == 1:
                raise OSError("disk full")
            put(writer, n_phi, a, c2_map)
        monkeypatch.setattr(sim_mod, "_put", fail_second)
    with pytest.raises(FitError) as info:
        simulate(out, comm=world, **dict(KW, n_phi=2 * world.size + 1, contrast=0.3))
    message = _same_everywhere(world, str(info.value))
    want = ("RuntimeError: model failed here", world.size - 1) if where.startswith("model") else ("disk full", 0)
    assert want[0] in message and f"found on rank {want[1]}" in message
    world.Barrier()
    assert not os.path.exists(out)                                   # the partial file is removed
