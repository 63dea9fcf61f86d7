"""Reference SMO: Algorithm 1 of the SceneSqueezer supplement, as printed, with DESIGN.md's corrections.

This is the yardstick for ``scenesqueezer_core.selection.smo.solve_qp_smo`` (bench/bench_smo.py):
a plain Python loop, one pair per iteration, exactly as the supplement describes it --

- ``initialize(d, nu)``: the top ``ceil(nu m)`` scores get ``C = 1/(nu m)`` (the last one the remainder,
  so the start is feasible: sum exactly 1);
- ``select_pair``: ``i`` uniformly among the points with ``a_i > 0``, ``j`` uniformly among the others;
- line 10 with its bracket restored, ``a_i' = T / (4 (1 - K_ij)) + Delta / 2`` (general diagonal:
  ``(T + 2 Delta (K_jj - K_ij)) / (2 eta)``), clipped to ``[max(0, Delta - C), min(C, Delta)]``;
- ``max_iter`` iterations (20000 in the supplement), no other stopping rule.

It recomputes nothing it should not: ``theta = 2 sum_{l != i, j} a_l K_il`` comes from a vector
``c = K a`` kept up to date by two rank-1 updates per step, and kernel rows are computed on demand
(numpy, same RBF rows as the product solver), so the comparison measures the pair selection and the
loop, not a strawman. The objective is tracked incrementally so that the benchmark can read off when
the reference first reaches a given objective value.
"""

from __future__ import annotations

import math
import time

import numpy as np


def rbf_row(F: np.ndarray, sq_norms: np.ndarray, gamma: float, i: int) -> np.ndarray:
    """(m,) row i of exp(-gamma ||f_i - f_l||^2)."""
    sq = sq_norms[i] + sq_norms - 2.0 * (F @ F[i])
    row = np.exp(-gamma * np.maximum(sq, 0.0))
    row[i] = 1.0
    return row


def smo_reference(d: np.ndarray, features: np.ndarray, gamma: float, tau: float, nu: float,
                  max_iter: int = 20000, seed: int = 0, target: float | None = None):
    """Run Algorithm 1 (corrected). Returns (alpha (m,), objective, iterations, seconds_to_target).

    ``seconds_to_target``: wall time at which the tracked objective first fell to ``<= target``
    (None when no target was given or it was never reached).
    """
    t0 = time.perf_counter()
    d = np.asarray(d, dtype=np.float64)
    F = np.ascontiguousarray(features, dtype=np.float64)
    sq_norms = np.einsum("ij,ij->i", F, F)
    m = len(d)
    C = 1.0 / (nu * m)
    rng = np.random.default_rng(seed)

    # initialize(d, nu)
    order = np.argsort(-d, kind="stable")
    n_full = min(m, int(math.floor(nu * m + 1e-9)))
    alpha = np.zeros(m)
    alpha[order[:n_full]] = C
    rem = 1.0 - C * n_full
    if n_full < m and rem > 1e-12 * C:
        alpha[order[n_full]] = rem
    elif n_full > 0:
        alpha[order[n_full - 1]] += rem
    c = np.zeros(m)
    for j in np.flatnonzero(alpha):
        c += alpha[j] * rbf_row(F, sq_norms, gamma, int(j))
    objective = float(alpha @ c - tau * d @ alpha)
    support = set(np.flatnonzero(alpha).tolist())

    reached = None
    if target is not None and objective <= target:
        reached = time.perf_counter() - t0
    itr = 0
    while itr < max_iter:
        # select_pair: at least one of the two has a non-zero entry
        i = int(rng.choice(list(support)))
        j = int(rng.integers(m - 1))
        j += j >= i
        K_i = rbf_row(F, sq_norms, gamma, i)
        K_j = rbf_row(F, sq_norms, gamma, j)
        K_ij = K_i[j]
        a_i, a_j = alpha[i], alpha[j]
        delta = a_i + a_j
        theta_1 = 2.0 * (c[i] - a_i * K_i[i] - a_j * K_ij)
        theta_2 = 2.0 * (c[j] - a_j * K_j[j] - a_i * K_ij)
        T = tau * (d[i] - d[j]) - theta_1 + theta_2
        eta = max(K_i[i] + K_j[j] - 2.0 * K_ij, 1e-12)
        a_i_new = (T + 2.0 * delta * (K_j[j] - K_ij)) / (2.0 * eta)
        a_i_new = min(max(a_i_new, max(0.0, delta - C)), min(C, delta))
        a_j_new = delta - a_i_new
        di, dj = a_i_new - a_i, a_j_new - a_j
        # f change of the pair move, from the old c (exact for a quadratic)
        objective += (2.0 * (di * c[i] + dj * c[j]) + di * di * K_i[i] + dj * dj * K_j[j]
                      + 2.0 * di * dj * K_ij - tau * (d[i] * di + d[j] * dj))
        c += di * K_i + dj * K_j
        alpha[i], alpha[j] = a_i_new, a_j_new
        for idx, val in ((i, a_i_new), (j, a_j_new)):
            if val > 0:
                support.add(idx)
            else:
                support.discard(idx)
        itr += 1
        if reached is None and target is not None and objective <= target:
            reached = time.perf_counter() - t0
    return alpha, objective, itr, reached
