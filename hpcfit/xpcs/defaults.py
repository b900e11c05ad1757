"""The XPCS fit's default start values and bounds: their one home (``hpcfit.xpcs.fit``, the run
configuration's defaults and the ``init xpcs`` template all read them from here)."""

#: Default start values of the physical parameters (D0 in Å²/s, γ̇ in 1/s, φ0 in degrees).
DEFAULT_P0 = {"D0": 1000.0, "alpha": 0.0, "D_offset": 0.0, "gamma_dot_t0": 1e-3, "beta": 0.0,
              "gamma_dot_t_offset": 0.0, "phi0": 0.0}
#: Default bounds, wide enough for the soft-matter flows of He et al. (PNAS 2024).
DEFAULT_BOUNDS = {"D0": (1e-3, 1e7), "alpha": (-2.0, 2.0), "D_offset": (-1e4, 1e4),
                  "gamma_dot_t0": (1e-8, 10.0), "beta": (-2.0, 2.0), "gamma_dot_t_offset": (-1.0, 1.0),
                  "phi0": (-180.0, 180.0), "contrast": (1e-4, 2.0), "offset": (0.5, 1.5)}
