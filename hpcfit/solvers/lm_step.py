"""Rank 0's step maths for Levenberg–Marquardt on the normal equations: pure numpy, no JAX, no MPI.

Everything works on the reduced p×p system in normalized space: A = JᵀWJ, g = JᵀWr.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .pseudo_inverse import equilibrated_pseudo_inverse


class Step(NamedTuple):
    step: np.ndarray    # projected step s = trial − u
    trial: np.ndarray   # the trial point, inside the box
    predicted: float    # predicted cost reduction −(gᵀs + ½ sᵀAs)
    solver: str         # "cholesky", "schur" or "eigen"


class ArrowBlocks(NamedTuple):
    """Where A's arrow structure is (per-group parameters, :mod:`hpcfit.groups`): ``shared`` (s,)
    indices every point uses, ``own`` (G, k) the indices of each group's own parameters. Between
    two groups' own parameters A is 0, so A's own×own part is block diagonal."""

    shared: np.ndarray
    own: np.ndarray


#: Own (per-group) parameters above which the damped system is solved by the Schur complement
#: over the groups' blocks: O(G·k³ + G·s²·k + s³) instead of the dense O(p³) (p = 2000: ~1 s dense).
SCHUR_ABOVE = 2000


def arrow_blocks(layout) -> ArrowBlocks | None:
    """The blocks of a :class:`~hpcfit.groups.GroupLayout` (None: no groups)."""
    if layout is None or not getattr(layout, "per_group", 0):
        return None
    groups = np.arange(layout.n_groups)[:, None]
    own = np.asarray(layout.own_index(groups, np.arange(layout.per_group)[None, :]), dtype=np.int64)
    return ArrowBlocks(np.arange(layout.n_shared), own)


def _held_as_identity(m: np.ndarray, free: np.ndarray) -> np.ndarray:
    """``m`` (changed in place) with the rows and columns of the parameters not ``free`` replaced by
    identity ones: their solution is 0, and the arrow blocks keep their shape."""
    m[~free, :] = 0.0
    m[:, ~free] = 0.0
    m[~free, ~free] = 1.0
    return m


def schur_solve(m: np.ndarray, rhs: np.ndarray, blocks: ArrowBlocks) -> np.ndarray | None:
    """Solve m·x = rhs for an arrow-structured SPD ``m`` by the Schur complement over the groups'
    own blocks D_g: (S − Σ B_g D_g⁻¹ B_gᵀ) x_s = r_s − Σ B_g D_g⁻¹ r_g, then x_g = D_g⁻¹ (r_g − B_gᵀ x_s).
    None when a block or the complement is not numerically positive definite (the caller then
    solves densely)."""
    shared, own = blocks
    d = m[own[:, :, None], own[:, None, :]]                       # (G, k, k)
    b = m[shared[:, None, None], own[None, :, :]].transpose(1, 0, 2)  # (G, s, k)
    try:
        chol = np.linalg.cholesky(d)
    except np.linalg.LinAlgError:
        return None
    r_own = rhs[own]                                              # (G, k)
    # D⁻¹ Bᵀ (G, k, s) and D⁻¹ r (G, k), by the block Cholesky factors
    d_inv_bt = np.linalg.solve(chol.transpose(0, 2, 1), np.linalg.solve(chol, b.transpose(0, 2, 1)))
    d_inv_r = np.linalg.solve(chol.transpose(0, 2, 1), np.linalg.solve(chol, r_own[:, :, None]))[:, :, 0]
    complement = m[np.ix_(shared, shared)] - np.einsum("gsk,gkt->st", b, d_inv_bt)
    reduced = rhs[shared] - np.einsum("gsk,gk->s", b, d_inv_r)
    try:
        c = np.linalg.cholesky(complement)
    except np.linalg.LinAlgError:
        return None
    x = np.empty_like(rhs)
    x[shared] = np.linalg.solve(c.T, np.linalg.solve(c, reduced))
    x[own] = d_inv_r - np.einsum("gks,s->gk", d_inv_bt, x[shared])
    return x if np.all(np.isfinite(x)) else None


def more_scaling(d2_previous: np.ndarray | None, jtj: np.ndarray) -> np.ndarray:
    """Moré's Jacobi scaling D² = max over iterations of diag(JᵀJ) (Moré 1978, eq. 6.3).

    Columns with no sensitivity at all get scale 1 so that the damped matrix stays definite.
    """
    diag = np.diag(jtj).copy()
    diag[diag <= 0.0] = 1.0
    return diag if d2_previous is None else np.maximum(d2_previous, diag)


def active_bounds(u: np.ndarray, g: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Parameters held at a bound: on it, with the descent direction −g pointing outside."""
    return ((u <= lower) & (g > 0.0)) | ((u >= upper) & (g < 0.0))


def solve_damped(jtj: np.ndarray, g: np.ndarray, d2: np.ndarray, damping: float,
                 free: np.ndarray, blocks: ArrowBlocks | None = None) -> tuple[np.ndarray, str]:
    """Solve (A + λD²) δ = −g on the free parameters (δ = 0 on the others).

    With more than :data:`SCHUR_ABOVE` per-group parameters (``blocks``), by the Schur complement
    over the groups' blocks (the parameters that are not free get an identity row, so the blocks
    keep their shape); else, or if that fails, Cholesky; if the damped matrix is not numerically
    positive definite, an eigen decomposition whose eigenvalues below a relative cutoff are dropped
    (minimum-norm step).
    """
    delta = np.zeros_like(g)
    idx = np.flatnonzero(free)
    if idx.size == 0:
        return delta, "cholesky"
    if blocks is not None and blocks.own.size > SCHUR_ABOVE:
        step = schur_solve(_held_as_identity(jtj + np.diag(damping * d2), free), np.where(free, -g, 0.0), blocks)
        if step is not None:
            return np.where(free, step, 0.0), "schur"
    m = jtj[np.ix_(idx, idx)].copy()
    m[np.diag_indices_from(m)] += damping * d2[idx]
    rhs = -g[idx]
    try:
        c = np.linalg.cholesky(m)
        delta[idx] = np.linalg.solve(c.T, np.linalg.solve(c, rhs))
        if np.all(np.isfinite(delta)):
            return delta, "cholesky"
    except np.linalg.LinAlgError:
        pass
    w, v = np.linalg.eigh(m)
    keep = w > np.finfo(float).eps * m.shape[0] * max(w.max(initial=0.0), 0.0)
    delta[idx] = v[:, keep] @ ((v[:, keep].T @ rhs) / w[keep])
    return delta, "eigen"


def propose_step(u, jtj, g, d2, damping, lower, upper, blocks: ArrowBlocks | None = None) -> Step:
    """A damped Gauss–Newton step from u, projected onto the box [lower, upper] (``blocks``: A's
    arrow structure, for the Schur complement)."""
    free = ~active_bounds(u, g, lower, upper)
    delta, solver = solve_damped(jtj, g, d2, damping, free, blocks)
    # A parameter on a bound whose step points outside is held there and the rest re-solved;
    # otherwise clipping alone can turn a descent step into an ascent step.
    for _ in range(u.size):
        blocked = free & (((u <= lower) & (delta < 0.0)) | ((u >= upper) & (delta > 0.0)))
        if not blocked.any():
            break
        free &= ~blocked
        delta, solver = solve_damped(jtj, g, d2, damping, free, blocks)
    trial = np.clip(u + delta, lower, upper)
    s = trial - u
    predicted = -(g @ s + 0.5 * s @ jtj @ s)
    return Step(s, trial, float(predicted), solver)


def update_damping(damping: float, growth: float, ratio: float, accepted: bool) -> tuple[float, float]:
    """Nielsen's damping update (Madsen, Nielsen & Tingleff 2004, §3.2): smooth decrease on
    success, doubling growth factor on repeated failure. Returns (damping, growth)."""
    if accepted:
        return damping * max(1.0 / 3.0, 1.0 - (2.0 * ratio - 1.0) ** 3), 2.0
    return damping * growth, growth * 2.0


def projected_gradient(u, g, lower, upper) -> np.ndarray:
    """The gradient with the components that push against an active bound removed."""
    return np.where(active_bounds(u, g, lower, upper), 0.0, g)


def gradient_cosine(g_projected: np.ndarray, jtj: np.ndarray, cost: float) -> float:
    """max_i |gᵢ| / (‖Jᵢ‖·‖r‖): MINPACK's scale- and n-invariant gradient test quantity."""
    col_norms = np.sqrt(np.maximum(np.diag(jtj), 0.0))
    r_norm = np.sqrt(max(2.0 * cost, 0.0))
    nonzero = g_projected != 0.0
    if not nonzero.any():
        return 0.0
    denom = col_norms[nonzero] * r_norm
    if np.any(denom <= 0.0):
        return float("inf")
    return float(np.max(np.abs(g_projected[nonzero]) / denom))


def step_small(step_norm: float, u_norm: float, xtol: float) -> bool:
    """scipy's xtol test: ‖s‖ < xtol·(xtol + ‖u‖)."""
    return step_norm < xtol * (xtol + u_norm)


def gauss_newton_decrease(u, jtj, g, lower, upper, blocks: ArrowBlocks | None = None) -> float:
    """The decrease ½ gᵀA⁺g that an undamped Gauss–Newton step from u predicts, on the parameters not
    held at a bound (A⁺: eigenvalues below the solver's relative cutoff dropped). A damped step's
    small decrease does not show that the cost has converged: along a flat valley the damping
    suppresses the very direction that still lowers it; this quantity does. With more than
    :data:`SCHUR_ABOVE` per-group parameters and a definite A, by the Schur complement (the dense
    eigen decomposition costs ~30 s at p = 6000)."""
    free = ~active_bounds(u, g, lower, upper)
    idx = np.flatnonzero(free)
    if idx.size == 0:
        return 0.0
    if blocks is not None and blocks.own.size > SCHUR_ABOVE:
        rhs = np.where(free, g, 0.0)
        x = schur_solve(_held_as_identity(jtj.copy(), free), rhs, blocks)
        if x is not None:
            return float(0.5 * rhs @ x)
    rcond = np.finfo(float).eps * idx.size        # solve_damped's cutoff, on the equilibrated matrix
    inverse = equilibrated_pseudo_inverse(jtj[np.ix_(idx, idx)], rcond).inverse
    return float(0.5 * g[idx] @ inverse @ g[idx])


def cost_converged(actual: float, cost: float, ratio: float, ftol: float) -> bool:
    """scipy's ftol test: the accepted decrease is below ftol·cost and the model was trusted."""
    return actual < ftol * cost and ratio > 0.25
