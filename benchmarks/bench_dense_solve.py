"""Rank 0's dense solve of the damped normal equations, against p (issue 13: "Schur complement of
the per-angle blocks, or dense while p is small; measure").

For XPCS with individual scaling p = 7 + 2·n_angles. Times numpy's Cholesky solve of an arrow-
shaped, well-conditioned JᵀWJ + λD (what each LM step does; an eigen-decomposition only as the
fallback and once for the covariance, timed too), best of 5; and, side by side, the Schur
complement over the per-angle blocks (``hpcfit.solvers.lm_step.schur_solve``, what a step uses
above ``SCHUR_ABOVE`` per-group parameters), with its largest difference from the dense step.

Run:  .venv/bin/python benchmarks/bench_dense_solve.py
"""
import time

import numpy as np


def arrow_matrix(n_angles: int, rng) -> np.ndarray:
    s, p = 7, 7 + 2 * n_angles
    j = np.zeros((p, p))
    a = rng.standard_normal((50, s))
    j[:s, :s] = a.T @ a
    for g in range(n_angles):
        own = [s + g, s + n_angles + g]
        b = rng.standard_normal((20, s + 2))
        blk = b.T @ b
        idx = list(range(s)) + own
        j[np.ix_(idx, idx)] += blk
    return j


def best(fn, repeat=5):
    out = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - t)
    return out


def main():
    rng = np.random.default_rng(0)
    from hpcfit.solvers.lm_step import ArrowBlocks, schur_solve

    print("| angles | p | Cholesky solve ms | Schur solve ms | dense / Schur | max rel. diff | eigh (covariance) ms |")
    print("|---|---|---|---|---|---|---|")
    for n_angles in (25, 100, 500, 1000, 1500, 3000):
        m = arrow_matrix(n_angles, rng)
        p = m.shape[0]
        damped = m + 1e-3 * np.diag(np.diag(m))
        g = rng.standard_normal(p)
        chol = best(lambda: np.linalg.solve(np.linalg.cholesky(damped).T,
                                            np.linalg.solve(np.linalg.cholesky(damped), g)))
        blocks = ArrowBlocks(np.arange(7), np.stack([7 + np.arange(n_angles), 7 + n_angles + np.arange(n_angles)], 1))
        schur = best(lambda: schur_solve(damped, g, blocks))
        diff = np.max(np.abs(schur_solve(damped, g, blocks) - np.linalg.solve(damped, g))) / np.max(
            np.abs(np.linalg.solve(damped, g)))
        eig = best(lambda: np.linalg.eigh(m), repeat=1 if p > 2500 else 5)
        print(f"| {n_angles} | {p} | {chol * 1e3:.3f} | {schur * 1e3:.3f} | {chol / schur:.1f} | {diff:.1e} | "
              f"{eig * 1e3:.0f} |")


if __name__ == "__main__":
    main()
