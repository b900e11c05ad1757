"""g2 fits per q bin (issue 21, items 2, 3 and 5): every bin's fit against scipy's curve_fit on the
same data (cost within 1e-6, errors alike), the truth of simulated files, fixed parameters, bounds,
weights, bins and delays without data, many files at once, and untrustworthy fits named."""
import os

import numpy as np
import pytest
from scipy.optimize import curve_fit

from hpcfit.errors import InputError
from hpcfit.xpcs.g2 import fit_g2
from hpcfit.xpcs.layouts import multitau_delays
from hpcfit.xpcs.multitau import read_g2
from hpcfit.xpcs.simulate_g2 import simulate_g2

Q = np.geomspace(0.004, 0.04, 12)
REAL = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "real")


def numpy_g2(form):
    """The forms of hpcfit.models.g2, written again in NumPy for scipy."""
    if form == "single":
        return lambda t, c, g, b: b + c * np.exp(-2 * g * t)
    if form == "stretched":
        return lambda t, c, g, beta, b: b + c * np.exp(-2 * (g * t) ** beta)
    return lambda t, c, g, g2, a, b: b + c * (a * np.exp(-g * t) + (1 - a) * np.exp(-g2 * t)) ** 2


def scipy_fits(path, form, fits, weighted=True, **kw):
    """curve_fit on every bin, from the truth-independent start hpcfit used, to convergence."""
    d = read_g2(path)
    out = []
    for j in range(len(fits)):
        k = fits.bin[j]
        ok = d.has_data[:, k]
        popt, pcov = curve_fit(numpy_g2(form), d.tau[ok], d.g2[ok, k], p0=fits.popt[j],
                               sigma=d.err[ok, k] if weighted else None, maxfev=20000, **kw)
        r = (numpy_g2(form)(d.tau[ok], *popt) - d.g2[ok, k]) / (d.err[ok, k] if weighted else 1.0)
        out.append((popt, np.sqrt(np.diag(pcov)), float(r @ r)))
    return out


@pytest.mark.parametrize("form, extra", [("single", {}), ("stretched", {"beta": 0.7}),
                                         ("double", {"gamma2_ratio": 0.05, "fraction": 0.6})])
def test_every_bin_fits_as_scipy_and_finds_the_simulated_truth(tmp_path, form, extra):
    path = tmp_path / "g2.hdf"
    truth = simulate_g2(path, q=Q, D=3e5, form=form, contrast=np.linspace(0.15, 0.25, Q.size), noise=0.002,
                        seed=4, **extra)
    fits = fit_g2(str(path), form=form)
    assert len(fits) == Q.size and fits.names[0] == "contrast" and np.array_equal(fits.q, Q)
    ref = scipy_fits(str(path), form, fits)
    for j, (popt, perr, chi2) in enumerate(ref):
        # scipy started from hpcfit's answer: it finds nothing lower, and agrees on the errors
        assert fits.chi2[j] <= chi2 * (1 + 1e-6), (j, fits.chi2[j], chi2)
        np.testing.assert_allclose(fits.perr[j], perr, rtol=2e-3)
    assert np.all(fits.status > 0)
    z = np.abs(fits.popt - truth) / fits.perr
    # a decay that has not ended within the delays leaves contrast and baseline ill-determined and
    # the errors' linear approximation poor: judge the truth where the slowest rate is resolved
    slowest = truth[:, 2] if form == "double" else truth[:, 1]
    resolved = slowest * read_g2(path).tau[-1] > 2.0
    assert resolved.sum() >= Q.size // 2 and np.all(z[resolved] < 4), z[resolved].max(axis=0)
    assert np.all(np.abs(fits.reduced_chi2 - 1) < 0.5)
    if form != "double":                                 # a double decay is often not resolved: flagged
        assert all(issue == "" for issue in fits.issues), fits.issues


def test_a_start_far_away_still_reaches_scipys_minimum(tmp_path):
    """scipy from a far start and hpcfit from its own start values end at the same cost."""
    path = tmp_path / "g2.hdf"
    simulate_g2(path, q=Q, D=3e5, noise=0.003, seed=5)
    fits = fit_g2(str(path))
    d = read_g2(path)
    for j in range(len(fits)):
        popt, _ = curve_fit(numpy_g2("single"), d.tau, d.g2[:, j], p0=[0.5, 1.0, 0.9], sigma=d.err[:, j],
                            maxfev=20000)
        chi2 = np.sum(((numpy_g2("single")(d.tau, *popt) - d.g2[:, j]) / d.err[:, j]) ** 2)
        assert abs(fits.chi2[j] - chi2) <= 1e-6 * chi2


def test_fixed_parameters_bounds_and_no_weights(tmp_path):
    path = tmp_path / "g2.hdf"
    simulate_g2(path, q=Q, D=3e5, form="stretched", beta=0.8, noise=0.002, seed=6)
    fixed = fit_g2(str(path), form="stretched", fixed={"baseline": 1.0}, weights=None)
    assert np.all(fixed.column("baseline") == 1.0) and np.all(fixed.perr[:, 3] == 0.0)
    d = read_g2(path)
    for j in range(len(fixed)):
        f = lambda t, c, g, beta: numpy_g2("stretched")(t, c, g, beta, 1.0)
        popt, pcov = curve_fit(f, d.tau, d.g2[:, j], p0=fixed.popt[j, :3])
        chi2 = np.sum((f(d.tau, *popt) - d.g2[:, j]) ** 2)
        assert fixed.chi2[j] <= chi2 * (1 + 1e-6)
        np.testing.assert_allclose(fixed.perr[j, :3], np.sqrt(np.diag(pcov)), rtol=2e-3)
    outside = fit_g2(str(path), form="stretched", fixed={"beta": 2.5})        # beyond the default box: kept
    assert np.all(outside.column("beta") == 2.5) and not any("beta" in issue for issue in outside.issues)
    boxed = fit_g2(str(path), form="stretched", bounds={"beta": (0.9, 1.5)})
    assert np.all(boxed.column("beta") >= 0.9)
    on = [issue for issue in boxed.issues if "on a bound: beta" in issue]
    assert len(on) >= len(boxed) // 2                   # the truth, 0.8, is outside: most end on 0.9


def test_bins_and_delays_without_data_are_left_out_and_named(tmp_path):
    path = tmp_path / "g2.hdf"
    simulate_g2(path, q=Q[:4], D=3e5, noise=0.002, seed=7)
    import h5py
    with h5py.File(path, "r+") as f:
        g2, err = f["xpcs/multitau/normalized_g2"], f["xpcs/multitau/normalized_g2_err"]
        g2[:, 2], err[:, 2] = 0.0, 0.0                    # a bin without pixels at any delay
        g2[:5, 0], err[:5, 0] = 0.0, 0.0                  # no photon pairs at the first delays
        g2[7, 0] = 50.0                                   # ... and a spike that has its (large) error
        err[7, 0] = 100.0
    fits = fit_g2(str(path))
    assert fits.bin.tolist() == [0, 1, 3] and len(fits.skipped) == 1 and "bin 2" in fits.skipped[0]
    d = read_g2(path)
    ok = d.has_data[:, 0]
    assert ok.sum() == d.tau.size - 5 and fits.dof[0] == ok.sum() - 3
    popt, _ = curve_fit(numpy_g2("single"), d.tau[ok], d.g2[ok, 0], p0=fits.popt[0], sigma=d.err[ok, 0])
    chi2 = np.sum(((numpy_g2("single")(d.tau[ok], *popt) - d.g2[ok, 0]) / d.err[ok, 0]) ** 2)
    assert abs(fits.chi2[0] - chi2) <= 1e-6 * chi2


def test_many_files_by_a_glob_in_file_then_bin_order(tmp_path):
    for i in range(3):
        simulate_g2(tmp_path / f"run{i}.hdf", q=Q[:5], D=1e5 * (i + 1), noise=0.002, seed=i)
    fits = fit_g2(str(tmp_path / "run*.hdf"))
    assert len(fits) == 15 and [os.path.basename(f) for f in fits.file[::5]] == ["run0.hdf", "run1.hdf", "run2.hdf"]
    assert fits.bin.tolist() == list(range(5)) * 3
    gamma = fits.column("gamma").reshape(3, 5)
    np.testing.assert_allclose(gamma / gamma[0], [[1] * 5, [2] * 5, [3] * 5], rtol=0.1)
    # the same rows as each file fitted alone
    alone = fit_g2(str(tmp_path / "run1.hdf"))
    assert alone.popt.tobytes() == fits.popt[5:10].tobytes()


def test_the_kernel_compiled_while_reading_is_the_one_the_fits_use(tmp_path, monkeypatch):
    """fit_g2 compiles its kernel on a background thread from the first file's delays while it reads
    the rest: the solve then reuses that compilation; files with other delays compile their own."""
    import hpcfit.xpcs.g2 as g2
    from hpcfit.xpcs.g2 import _kernel

    started, real = [], g2._compile_ahead
    monkeypatch.setattr(g2, "_compile_ahead", lambda *args: started.append(args) or real(*args))
    for i in range(3):
        simulate_g2(tmp_path / f"run{i}.hdf", q=Q[:4], D=1e5, noise=0.002, seed=i)
    fits = fit_g2(str(tmp_path / "run*.hdf"), max_iterations=123)       # a kernel of its own
    assert started == [("single", 123, 61, 3)] and _kernel("single", 123)._cache_size() == 1
    assert fits.trustworthy.all()
    # the first file with fewer delays than the others: its compilation is not the one needed
    simulate_g2(tmp_path / "a_short.hdf", q=Q[:4], D=1e5, noise=0.002, seed=5, n_delays=40)
    mixed = fit_g2([str(tmp_path / "a_short.hdf"), str(tmp_path / "run*.hdf")], max_iterations=124)
    assert started[-1] == ("single", 124, 40, 3) and _kernel("single", 124)._cache_size() == 2
    assert mixed.popt[4:].tobytes() == fit_g2(str(tmp_path / "run*.hdf"), max_iterations=124).popt.tobytes()


def test_a_real_file_fits_and_says_which_bins_not_to_trust():
    path = os.path.join(REAL, "E0173_H06-c6c5-4_a0009_f100000_r00001_results.hdf")
    if not os.path.exists(path):
        pytest.skip("the shared real data are not next to this checkout")
    fits = fit_g2(path)
    assert len(fits) == 36 and np.all(np.isfinite(fits.chi2))
    bad = ~fits.trustworthy
    # photon-starved bins: g2 of 10-100 at the shortest delays, far outside their errors
    assert bad.sum() >= 10 and all("reduced χ²" in i or "bound" in i or "undetermined" in i or "not converged" in i
                                   for i in np.array(fits.issues)[bad])


@pytest.mark.parametrize("kw, message", [
    ({"form": "triple"}, r"`form` must be one of 'single', 'stretched', 'double'; got 'triple'"),
    ({"fixed": {"tau": 1.0}}, r"`fixed`: unknown parameter 'tau'; the parameters are contrast, gamma, baseline"),
    ({"bounds": {"gamma": (5.0, 1.0)}}, r"`bounds` of 'gamma': need low < high"),
    ({"weights": "sigma"}, r"`weights` must be 'err'"),
])
def test_bad_arguments_are_named(tmp_path, kw, message):
    path = tmp_path / "g2.hdf"
    simulate_g2(path, q=Q[:2], D=3e5)
    with pytest.raises(InputError, match=message):
        fit_g2(str(path), **kw)


def test_a_pattern_without_files_is_an_error(tmp_path):
    with pytest.raises(InputError, match=r"`files`: the pattern .* matches no file"):
        fit_g2(str(tmp_path / "none*.hdf"))


def test_multitau_delays_are_the_real_files():
    delays = multitau_delays(61)
    assert delays[:12].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16] and delays[-1] == 81920


def test_the_table_is_written_as_csv_and_hdf5_with_every_row(tmp_path):
    import csv

    import h5py
    path = tmp_path / "g2.hdf"
    simulate_g2(path, q=Q[:4], D=3e5, noise=0.002, seed=8)
    fits = fit_g2(str(path))
    fits.save(tmp_path / "t.csv")
    fits.save(tmp_path / "t.h5")
    with open(tmp_path / "t.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and list(rows[0])[:6] == ["file", "bin", "q", "phi", "contrast", "contrast_err"]
    assert [float(r["gamma"]) for r in rows] == fits.column("gamma").tolist()          # repr: exact
    assert rows[0]["status"] == "FTOL" or rows[0]["status"] in ("GTOL", "XTOL", "FTOL_XTOL")
    with h5py.File(tmp_path / "t.h5", "r") as f:
        g = f["g2_fits"]
        assert list(g.attrs["parameters"]) == ["contrast", "gamma", "baseline"]
        assert g["popt"][()].tobytes() == fits.popt.tobytes() and g["file"].asstr()[0] == str(path)
    with pytest.raises(InputError, match=r"must end in .csv"):
        fits.save(tmp_path / "t.txt")


@pytest.mark.parametrize("form, exponent", [("single", None), ("stretched", 2.0)])
def test_the_global_fit_over_q_is_scipys_joint_least_squares(tmp_path, form, exponent):
    """Γ = D·qⁿ shared (n free, or held at 2), contrast and baseline per bin: the same minimum as
    scipy's least_squares on the joint problem, and the simulated truth."""
    from scipy.optimize import least_squares

    from hpcfit.xpcs.g2 import fit_g2_global
    path = tmp_path / "g2.hdf"
    truth_n = 2.0 if exponent is not None else 1.9
    simulate_g2(path, q=Q, D=3e5, exponent=truth_n, form=form, beta=0.8, noise=0.002, seed=9)
    res = fit_g2_global(str(path), form=form, exponent=exponent)
    assert res.names[:2] == ["D", "n"] and res.names[-1] == f"baseline_{Q.size - 1}" and res.success
    d = read_g2(path)
    nd = 1 if form == "stretched" else 0

    def residuals(p):
        D, n, rest = p[0], p[1] if exponent is None else exponent, p[2 - (exponent is not None):]
        out = []
        for k in range(Q.size):
            gamma, shape = D * Q[k] ** n, rest[:nd]
            c, b = rest[nd + k], rest[nd + Q.size + k]
            f = np.exp(-(gamma * d.tau) ** (shape[0] if nd else 1.0))
            out.append((b + c * f * f - d.g2[:, k]) / d.err[:, k])
        return np.concatenate(out)

    start = res.popt if exponent is None else np.delete(res.popt, 1)
    ref = least_squares(residuals, start, x_scale="jac", ftol=1e-14, xtol=1e-14, gtol=1e-14)
    assert res.cost <= ref.cost * (1 + 1e-9) and abs(res.cost - ref.cost) <= 1e-8 * ref.cost
    assert abs(res.popt[0] - 3e5) < 4 * res.perr[0] and abs(res.popt[1] - truth_n) < 4 * max(res.perr[1], 1e-12)
    if exponent is not None:
        assert res.popt[1] == 2.0
    if nd:
        assert abs(res.popt[2] - 0.8) < 4 * res.perr[2]


def test_a_tau_range_fits_only_those_delays(tmp_path):
    path = tmp_path / "g2.hdf"
    simulate_g2(path, q=Q[:3], D=3e5, noise=0.002, seed=10)
    d = read_g2(path)
    lo, hi = d.tau[4], d.tau[40]
    fits = fit_g2(str(path), tau_range=(lo, hi))
    keep = (d.tau >= lo) & (d.tau <= hi)
    assert np.all(fits.dof == keep.sum() - 3)
    for j in range(3):
        popt, _ = curve_fit(numpy_g2("single"), d.tau[keep], d.g2[keep, j], p0=fits.popt[j], sigma=d.err[keep, j])
        chi2 = np.sum(((numpy_g2("single")(d.tau[keep], *popt) - d.g2[keep, j]) / d.err[keep, j]) ** 2)
        assert abs(fits.chi2[j] - chi2) <= 1e-6 * chi2
    with pytest.raises(InputError, match=r"`tau_range` must be \(tau_min, tau_max\) with 0 <= tau_min < tau_max"):
        fit_g2(str(path), tau_range=(1.0, 0.1))


@pytest.mark.parametrize("form", ["single", "stretched", "double"])
def test_start_values_of_many_bins_at_once_follow_the_rule_bin_by_bin(form):
    """The start values of rows (delays with data anywhere in the row, padding after them) against
    the rule written plainly with np.median for each bin's delays with data."""
    from hpcfit.xpcs.g2 import start_values

    rng = np.random.default_rng(4)
    n, m = 300, 40
    tau = np.sort(rng.uniform(1e-5, 10.0, (n, m)), axis=1)
    g2 = 1.0 + rng.uniform(0.05, 0.3, (n, 1)) * np.exp(-2 * tau / rng.uniform(0.01, 5.0, (n, 1))) \
        + rng.normal(0, 0.01, (n, m))
    ok = rng.random((n, m)) > 0.3
    ok[:, 0] = True
    ok[:5, 1:] = False                       # bins with a single delay of data
    got = start_values(form, tau, np.where(ok, g2, 0.0), ok)
    for j in range(n):
        t, y = tau[j, ok[j]], g2[j, ok[j]]
        baseline = np.median(y[-max(1, min(5, y.size // 4)):])
        contrast = max(np.median(y[:max(1, min(3, y.size // 4))]) - baseline, 1e-3)
        below = np.flatnonzero((y - baseline) / contrast < np.exp(-2.0))
        gamma = 1.0 / max(t[below[0]] if below.size else t[-1], t[0])
        shape = {"single": [], "stretched": [1.0], "double": [gamma / 10.0, 0.5]}[form]
        np.testing.assert_allclose(got[j], [contrast, gamma, *shape, baseline], rtol=1e-15, atol=0)
    np.testing.assert_array_equal(start_values(form, tau[7, ok[7]], g2[7, ok[7]]), got[7])


def test_errors_of_a_batch_are_each_fits_covariance():
    """perr and undetermined parameters of many fits at once against hpcfit's covariance of each
    (curve_fit's scaling), with a held parameter, a rank-deficient fit and one without dof."""
    from hpcfit.phases.covariance import covariance
    from hpcfit.xpcs.g2 import COV_RCOND, _errors

    rng = np.random.default_rng(5)
    jac = rng.normal(size=(6, 20, 4))
    jac[2, :, 3] = jac[2, :, 1] * 2.0                    # parameters 1 and 3 of fit 2: one direction
    jtj = np.einsum("nki,nkj->nij", jac, jac)
    cost = rng.uniform(5, 15, 6)
    n_points = np.array([20, 20, 20, 20, 20, 3])         # fit 5: 3 points for 3 free parameters
    free = np.array([True, True, False, True])
    perr, null = _errors(jtj, cost, n_points, free)
    assert np.all(perr[:, 2] == 0) and np.all(null[:, 2] == 0)
    for j in range(5):
        want = covariance(jtj[j][np.ix_(free, free)], np.ones(3), cost[j], n_points[j], False, COV_RCOND)
        np.testing.assert_allclose(perr[j, free], want.perr, rtol=1e-12)
        assert np.flatnonzero(null[j, free]).tolist() == want.null_parameters
    assert null[2, 1] and null[2, 3] and not null[2, 0]
    assert np.all(np.isinf(perr[5, free])) and np.all(null[5, free] == 1)


def test_quick_compile_options_only_where_the_compiler_takes_them(monkeypatch):
    from hpcfit.kernels import batched_lm

    monkeypatch.setattr(batched_lm, "_quick", [])
    monkeypatch.setattr(batched_lm, "QUICK_COMPILE", {"xla_no_such_option_for_a_test": True})
    assert batched_lm.quick_compile_options() is None         # refused: compiled as usual, not an error
    monkeypatch.setattr(batched_lm, "_quick", [])
    monkeypatch.setattr(batched_lm, "QUICK_COMPILE", {"xla_cpu_use_fusion_emitters": False})
    assert batched_lm.quick_compile_options() in ({"xla_cpu_use_fusion_emitters": False}, None)
