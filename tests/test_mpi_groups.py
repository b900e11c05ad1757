"""MPI lane: block-sparse Jacobian passes give the serial bits on any rank count."""
import pytest

import hpcfit
from test_groups import N_SHARED, _data

pytestmark = pytest.mark.mpi(min_size=2)


@pytest.mark.parametrize("chunk_size", [37, 1 << 20])          # chunks across group boundaries; one chunk
def test_grouped_fit_gives_the_serial_bits(world, chunk_size):
    sizes = [120, 9, 200, 71]
    model, x, y, theta, _ = _data(sizes, "by_parameter", seed=2)
    groups = hpcfit.ParameterGroups(N_SHARED, 2, group_sizes=sizes)
    kw = dict(p0=theta * 0.8, parameter_groups=groups, chunk_size=chunk_size, verbose=0)
    serial = hpcfit.curve_fit(model, x, y, **kw)
    par = hpcfit.curve_fit(model, x, y, comm=world, **kw)
    assert par.popt.tobytes() == serial.popt.tobytes()
    assert par.pcov.tobytes() == serial.pcov.tobytes()
    assert (par.cost, par.n_iterations, par.njev) == (serial.cost, serial.n_iterations, serial.njev)
    everyone = world.allgather(par.popt.tobytes())
    assert all(e == everyone[0] for e in everyone)


def test_a_bad_declaration_is_refused_on_every_rank(world):
    sizes = [120, 9, 200, 71]
    model, x, y, theta, _ = _data(sizes, "by_parameter")
    with pytest.raises(hpcfit.InputError, match="adds up to 399 points; the data have 400"):
        hpcfit.curve_fit(model, x, y, p0=theta, comm=world, verbose=0,
                         parameter_groups=hpcfit.ParameterGroups(N_SHARED, 2, group_sizes=[120, 8, 200, 71]))
