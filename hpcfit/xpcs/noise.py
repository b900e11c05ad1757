"""The noise of two-time maps, estimated from the data: σ per map and lag.

Along a diagonal of a map (a fixed lag τ = t2 − t1) c2 changes slowly (only by aging), while the
noise of neighbouring pairs is independent: the second differences along it,
d = c2(t1 + 2, t1 + 2 + τ) − 2·c2(t1 + 1, t1 + 1 + τ) + c2(t1, t1 + τ), are noise of variance 6σ²,
and a signal that changes linearly along the diagonal (aging) cancels from them. σ is estimated
robustly from them, as 1.4826 · MAD(d) / √6 (outliers and a few bad frames do not move it), in :data:`BANDS` bands of lags
holding equal numbers of pairs, and interpolated linearly in lag between the bands' centres
(constant beyond the first and last). Each map gets its own σ(τ): rings and angles may differ.

Assumptions (docs/xpcs.md, "Noise"): the noise of neighbouring pairs along a diagonal is
independent; the signal's curvature along a diagonal over three frames is small against σ (a
linear change cancels); σ varies smoothly with lag. When
the noise is correlated along diagonals (e.g. frame-to-frame intensity drifts) σ comes out low and
the fit's reduced χ² well above 1 says so.

About 25 000 values per map are read whatever its size (:data:`LAGS_PER_BAND` lags per band,
:data:`ROWS_PER_LAG` runs per lag; more lags of a band when its diagonals are short, up to about
:data:`SAMPLES_PER_BAND` runs), on rank 0, in one read per map.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..pairs import pair_at, pair_rows

BANDS = 8
LAGS_PER_BAND = 4
ROWS_PER_LAG = 256
SAMPLES_PER_BAND = LAGS_PER_BAND * ROWS_PER_LAG
MAD_TO_SIGMA = 1.4826      # σ of a normal distribution / its median absolute deviation
# σ is kept above this fraction of the data's typical |c2| (float32 maps resolve ~6e-8 of it): noise-free
# data would otherwise get infinite weights
RELATIVE_FLOOR = 1e-7


@dataclass(frozen=True)
class PairNoise:
    """σ of every pair of every map: ``by_lag[map, lag]`` (lag 0 is not a pair and is unused)."""

    by_lag: np.ndarray           # (n_maps, n_t)
    band_lags: np.ndarray        # (n_bands,) lag at each band's centre
    band_sigma: np.ndarray       # (n_maps, n_bands) the estimates
    method: str                  # "estimated" or "given"

    def sigma_of(self, per_map: int, n_t: int, triangle: str):
        """σ at global point indices of a :class:`~hpcfit.PairGrid` (maps of ``per_map`` points)."""
        def at(index: np.ndarray) -> np.ndarray:
            maps, k = np.divmod(index, per_map)
            t1, t2 = pair_at(k, n_t, triangle)
            return self.by_lag[maps, np.abs(t2 - t1)]
        return at

    def inverse_sigma_over(self, per_map: int, n_t: int):
        """1/σ of the points ``start … stop − 1`` (global indices of a :class:`~hpcfit.PairGrid` with
        triangle "upper", maps of ``per_map`` points): a chunk's points run along rows t1 of a map,
        and along a row the lag goes 1, 2, …, so a chunk's 1/σ are a few slices of one table, copied
        (the same values as ``1 / sigma_of(index)``, without finding each point's frames)."""
        inverse = 1.0 / self.by_lag

        def over(start: int, stop: int) -> np.ndarray:
            parts = []
            while start < stop:                       # one map at a time
                m, k = divmod(start, per_map)
                take = min(per_map - k, stop - start)
                parts += [inverse[m, t2 - t1:t2 - t1 + count] for t1, t2, count in pair_rows(k, k + take, n_t)]
                start += take
            return np.concatenate(parts) if parts else np.empty(0)
        return over

    def summary(self) -> dict:
        """For ``result.info["xpcs"]["noise"]``; :meth:`from_summary` rebuilds the same σ from it."""
        return {"method": self.method, "band_lags": self.band_lags.tolist(),
                "sigma": self.band_sigma.tolist()}

    @classmethod
    def from_bands(cls, band_lags, band_sigma, n_t: int, method: str) -> "PairNoise":
        """σ at every lag, interpolated linearly in lag between the bands' centres (constant beyond)."""
        band_lags, band_sigma = np.asarray(band_lags, dtype=float), np.asarray(band_sigma, dtype=float)
        lags = np.arange(n_t)
        by_lag = np.stack([np.interp(lags, band_lags, row) for row in band_sigma])
        return cls(by_lag, band_lags, band_sigma, method)

    @classmethod
    def from_summary(cls, summary: dict, n_t: int) -> "PairNoise":
        """The σ a fit used, from its ``result.info["xpcs"]["noise"]`` (per-point outputs)."""
        return cls.from_bands(summary["band_lags"], summary["sigma"], n_t, summary["method"])


def lag_bands(n_t: int, n_bands: int = BANDS) -> list[np.ndarray]:
    """Lags 1 … n_t − 3 (those with three neighbouring pairs on their diagonal) in up to ``n_bands``
    contiguous bands holding about equal numbers of pairs (lag τ has n_t − τ of them)."""
    lags = np.arange(1, n_t - 2)
    if lags.size == 0:
        raise InputError(f"noise from the data needs maps of at least 4 frames; these have {n_t}")
    n_bands = min(n_bands, lags.size)
    before = np.concatenate([[0], np.cumsum(n_t - lags)[:-1]]) / np.sum(n_t - lags)   # pairs of shorter lags
    band = np.minimum((before * n_bands).astype(int), n_bands - 1)
    return [lags[band == b] for b in np.unique(band)]


def _sampled_pairs(bands: list[np.ndarray], n_t: int):
    """For every band: the first frame t1 and the lag of runs of three neighbouring pairs along a
    few of its lags, as flat arrays, and the band of each run. A band gets about
    :data:`SAMPLES_PER_BAND` runs: :data:`LAGS_PER_BAND` of its lags, spread over it, when their
    diagonals are long, more (up to all of them) where they are short."""
    t1s, lags, which = [], [], []
    for b, band in enumerate(bands):
        rows_of = np.minimum(ROWS_PER_LAG, n_t - band - 2)          # runs along each lag's diagonal
        wanted = min(LAGS_PER_BAND, band.size)
        while True:
            chosen = np.unique(np.linspace(0, band.size - 1, wanted).astype(int))
            got = int(rows_of[chosen].sum())
            if got >= SAMPLES_PER_BAND or wanted == band.size:
                break
            wanted = min(band.size, max(wanted + 1, -(-wanted * SAMPLES_PER_BAND // got)))
        for lag in band[chosen]:
            rows = np.unique(np.linspace(0, n_t - lag - 3, min(ROWS_PER_LAG, n_t - lag - 2)).astype(int))
            t1s.append(rows)
            lags.append(np.full(rows.size, lag))
            which.append(np.full(rows.size, b))
    t1, lag, band = (np.concatenate(v) for v in (t1s, lags, which))
    return t1, lag, band


def estimate_noise(sample, n_maps: int, n_t: int, n_bands: int = BANDS) -> PairNoise:
    """σ per map and lag from ``sample(map, t1, t2)`` (values at frame pairs, t1 < t2, 0-based)."""
    bands = lag_bands(n_t, n_bands)
    t1, lag, band = _sampled_pairs(bands, n_t)
    run_t1 = np.concatenate([t1, t1 + 1, t1 + 2])
    run_t2 = run_t1 + np.concatenate([lag, lag, lag])
    values = sample(np.repeat(np.arange(n_maps), run_t1.size), np.tile(run_t1, n_maps),
                    np.tile(run_t2, n_maps)).reshape(n_maps, 3, t1.size)
    diff = values[:, 2] - 2.0 * values[:, 1] + values[:, 0]
    floor = RELATIVE_FLOOR * max(float(np.median(np.abs(values))), np.finfo(float).tiny)
    band_sigma = np.empty((n_maps, len(bands)))
    for b in range(len(bands)):
        d = diff[:, band == b]
        mad = np.median(np.abs(d - np.median(d, axis=1, keepdims=True)), axis=1)
        band_sigma[:, b] = np.maximum(MAD_TO_SIGMA * mad / np.sqrt(6.0), floor)
    # each band's centre: its pair-weighted mean lag
    centres = np.array([np.sum(bl * (n_t - bl)) / np.sum(n_t - bl) for bl in bands])
    return PairNoise.from_bands(centres, band_sigma, n_t, "estimated")


def given_noise(sigma: float, n_maps: int, n_t: int) -> PairNoise:
    """A σ the user gave, the same for every pair (one band)."""
    return PairNoise.from_bands([1.0], np.full((n_maps, 1), sigma), n_t, "given")
