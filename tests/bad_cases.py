"""Bad-input cases shared by the serial and the MPI tests.

Each case builds curve_fit arguments for one rank; the defect appears only on ``bad_rank`` (in a
serial run, bad_rank = 0), and ``match`` is what the error message must say.
"""
import jax.numpy as jnp
import numpy as np

N = 600


def model(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def _good():
    x = np.linspace(0.0, 3.0, N)
    y = 2.0 * np.exp(-1.1 * x) + 0.3 + 0.01 * np.cos(37.0 * x)
    return dict(f=model, xdata=x, ydata=y, p0=[1.0, 1.0, 0.0])


def _with(key, fn):
    def build(is_bad):
        kw = _good()
        if is_bad:
            kw[key] = fn(kw[key]) if callable(fn) else fn
        return kw
    return build


def _set(i, value):
    def fn(a):
        a = np.array(a, dtype=float)
        a[i] = value
        return a
    return fn


CASES = {
    "y_shape": (_with("ydata", lambda y: y[:-1]), r"`xdata` and `ydata` disagree on the number of points"),
    "x_3d": (_with("xdata", lambda x: x.reshape(2, 3, N // 6, 1)[..., 0]), r"`xdata` and `ydata` disagree|`xdata` must"),
    "x_nan": (_with("xdata", _set(17, np.nan)), r"`xdata` contains NaN or Inf .*first at index 17"),
    "y_inf": (_with("ydata", _set(5, np.inf)), r"`ydata` contains NaN or Inf .*first at index 5"),
    "sigma_nan": (lambda bad: {**_good(), "sigma": _set(3, np.nan)(np.ones(N)) if bad else np.ones(N)},
                  r"`sigma` contains NaN or Inf"),
    "sigma_zero": (lambda bad: {**_good(), "sigma": _set(9, 0.0)(np.ones(N)) if bad else np.ones(N)},
                   r"`sigma` must be > 0 everywhere; sigma\[9\] = 0.0"),
    "sigma_2d": (lambda bad: {**_good(), "sigma": np.eye(N) if bad else np.ones(N)}, r"`sigma` must be 1-D"),
    "p0_length": (_with("p0", [1.0, 1.0]), r"len\(p0\) = 2|`p0` differs between ranks"),
    "p0_outside": (lambda bad: {**_good(), "bounds": ([0, 0, 0], [5, 5, 5]), "p0": [1.0, 9.0, 0.1] if bad
                                else [1.0, 1.0, 0.1]}, r"`p0` is outside the bounds: p0\[1\] = 9.0"),
    "lower_gt_upper": (lambda bad: {**_good(), "bounds": ([0, 3, 0], [5, 2, 5]) if bad else ([0, 0, -1], [5, 5, 5])},
                       r"parameter 1 has lower 3.0 > upper 2.0"),
    "too_few_points": (lambda bad: {**_good(), "xdata": np.arange(3.0), "ydata": np.ones(3)} if bad else
                       {**_good(), "xdata": np.arange(3.0), "ydata": np.ones(3)},
                       r"n = 3 points, p = 3 parameters"),
    "model_shape": (lambda bad: {**_good(), "f": (lambda x, a, b, c: jnp.sum(a * x) + b + c) if bad else model},
                    r"must return shape \(\d+,\), but it returned shape \(\)|`f`|model"),
    "model_nonfinite": (lambda bad: {**_good(), "f": (lambda x, a, b, c: a * jnp.log(x - b) + c),
                                     "p0": [1.0, 1.0, 0.0]},
                        r"at p0 = .*, \d+ point\(s\) of the data \(arrays\) have a residual .* NaN or Inf.* the first at global "
                        r"point index 0\. Check the data there"),
    "unknown_option": (lambda bad: {**_good(), "tolerance": 1e-3} if bad else _good(), r"unknown option\(s\) 'tolerance'"),
    "bad_loss": (lambda bad: {**_good(), "loss": "l2" if bad else "linear"}, r"`loss` must be one of"),
    "bad_f_scale": (lambda bad: {**_good(), "f_scale": -1.0 if bad else 1.0}, r"`f_scale` must be a finite number > 0"),
    "bad_method": (lambda bad: {**_good(), "method": "lm" if bad else "gn"}, r"`method` must be one of 'hybrid', 'gn'"),
    "bad_preset": (lambda bad: {**_good(), "preset": "quick" if bad else "default"}, r"`preset` must be one of"),
    "bad_warmup_dtype": (lambda bad: {**_good(), "warmup_dtype": "float16" if bad else "float64"},
                         r"`warmup_dtype` must be one of 'float64', 'float32'"),
    "bad_warmup_switch": (lambda bad: {**_good(), "cost_guard": "off" if bad else True},
                          r"`cost_guard` must be True or False"),
    "bad_checkpoint_every": (lambda bad: {**_good(), "checkpoint_every": 0 if bad else 1},
                             r"`checkpoint_every` must be an integer >= 1"),
    "bad_resume": (lambda bad: {**_good(), "resume": 3 if bad else None},
                   r"`resume` must be None, True .*'auto'"),
    "bad_distribute": (lambda bad: {**_good(), "distribute": "scatter" if bad else "global"},
                       r"`distribute` must be 'global' or 'local'"),
    "empty": (lambda bad: {**_good(), "xdata": np.zeros(0), "ydata": np.zeros(0)} if bad else _good(),
              r"`xdata` and `ydata` have no points"),
    "y_complex": (_with("ydata", lambda y: y + 1j), r"`ydata` is complex"),
    "bounds_type": (lambda bad: {**_good(), "bounds": ({}, 5) if bad else (-np.inf, np.inf)},
                    r"`bounds` lower must be a number or a sequence of numbers"),
    # data of any one magnitude are rescaled (tests/test_scale.py); one wild value among ordinary ones is named
    "cost_overflow": (lambda bad: {**_good(), "ydata": np.where(np.arange(_good()["ydata"].size) ==
                                                                _good()["ydata"].size - 1, 1e160, _good()["ydata"])},
                      rf"at p0 = .*, 1 point\(s\) of the data \(arrays\) have a residual .* too large to square in "
                      rf"float64 .* the first at global point index {N - 1}\. Check the data there"),
    # three values that each square to a finite number, but whose sum does not
    "cost_sum_overflow": (lambda bad: {**_good(), "ydata": np.where(np.arange(N) >= N - 3, 1.2e154 if bad else 1.0,
                                                                        _good()["ydata"])},
                          r"the cost overflowed at p0 .*data: arrays\) although every residual squares to a finite "
                          r"value.* rescale ydata or sigma"),
    "derivative_nonfinite": (lambda bad: {**_good(), "f": (lambda x, a, b, c: a * jnp.sqrt(x - b) + c),
                                          "p0": [1.0, 0.0, 0.0]},
                             r"JᵀWJ is not finite at p0 = .*: the model's derivatives are NaN or Inf"),
    "bad_nan_policy": (lambda bad: {**_good(), "nan_policy": "propagate" if bad else "omit"},
                       r"`nan_policy` must be 'raise' .* or 'omit'"),
    "bad_jac": (lambda bad: {**_good(), "jac": "4-point" if bad else "2-point"}, r"`jac` must be None, one of"),
    "bad_multistart": (lambda bad: {**_good(), "multistart": -1 if bad else "auto"},
                       r"`multistart` must be 'auto' or an integer >= 0"),
    "bad_explore_starts": (lambda bad: {**_good(), "explore_starts": [[1.0, 1.0]] if bad else [[2.0, 1.0, 0.3]]},
                           r"`explore_starts`: every start must have 3 values"),
    "bad_max_nfev": (lambda bad: {**_good(), "max_nfev": 0 if bad else 100}, r"`max_nfev` must be an integer >= 1"),
    "no_tolerance": (lambda bad: {**_good(), "ftol": 0, "xtol": 0, "gtol": 0 if bad else 1e-8},
                     r"at least one of `ftol`, `xtol`, `gtol` must be >= machine epsilon"),
}

# Cases whose defect is the same on every rank by construction (not a one-rank defect).
ALL_RANKS = {"too_few_points", "model_nonfinite", "cost_overflow", "cost_sum_overflow", "derivative_nonfinite"}
