"""Sequential Minimal Optimization for the per-cluster point-selection QP.

Problem (main paper Eq. 3, DESIGN.md)::

    minimize   f(a) = a^T K a - tau * d^T a
    subject to sum(a) = 1,   0 <= a_i <= C = 1 / (nu * m)

``m`` points, ``d`` (m,) distinctiveness scores, ``K`` (m, m) a positive semi-definite proximity
kernel. Points with ``a_i > 0`` are kept; since ``sum(a) = 1`` and ``a_i <= C`` at least ``nu * m``
of them are.

What this solver keeps from Algorithm 1 of the supplement (with DESIGN.md's corrections):

- feasible initialization: the ``floor(nu m)`` highest-scoring points get ``C``, the next one gets
  the remainder ``1 - floor(nu m) C`` (so ``ceil(nu m)`` points are non-zero and the sum is exactly 1);
- each step optimizes one pair ``(i, j)`` in closed form along ``a_i + a_j = const`` and clips to
  ``[max(0, Delta - C), min(C, Delta)]`` (both bounds, so that neither ``a_i`` nor ``a_j`` leaves
  ``[0, C]``); with unit kernel diagonal the unclipped optimum is DESIGN.md's
  ``a_i' = T / (4 (1 - K_ij)) + Delta / 2``; for a general diagonal it is
  ``(T + 2 Delta (K_jj - K_ij)) / (2 eta)``, ``eta = K_ii + K_jj - 2 K_ij``;
- ``K a`` is never recomputed: it is kept through the gradient ``g = 2 K a - tau d`` with two rank-1
  updates per step (the kernel rows of ``i`` and ``j``).

What it changes: the pair is not drawn at random. It is the libsvm working set (Fan, Chen & Lin,
JMLR 2005, "WSS 2"): ``i`` is the point that may still grow (``a_i < C``) with the smallest gradient,
``j`` is, among the points that may shrink (``a_j > 0``) and have a larger gradient, the one whose
pair step decreases ``f`` the most (second-order gain ``(g_j - g_i)^2 / eta_ij``). The KKT conditions
of this QP say that at the optimum every growable point has a gradient no smaller than every
shrinkable one, so ``max_{a_j > 0} g_j - min_{a_i < C} g_i`` is exactly the optimality gap the
solver stops on (``tol``). A random pair mostly picks two points whose exchange changes nothing
(most points sit at 0 and stay there), which is why Algorithm 1 as printed needs its fixed 20000
iterations; the maximal-violating pair always moves mass where the KKT conditions are most violated,
still two variables per step (so it is still SMO, with SMO's O(m) memory), and converges in far
fewer steps (`bench/bench_smo.py` measures both).

The kernel can be given densely (``K``, (m, m)) or implicitly as an RBF kernel on point features
(``features`` (m, D), ``gamma``): ``K_ij = exp(-gamma ||f_i - f_j||^2)``, with rows computed on demand
and the rows of the (small) support cached -- a dense 50k x 50k kernel would need 20 GB.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from ..errors import ConfigError

__all__ = ["SMOResult", "solve_qp_smo", "initial_alpha", "qp_objective"]

# Curvature floor for a pair whose two points are identical under the kernel (K_ij = K_ii = K_jj):
# the objective is then linear along the pair, and the step goes to the bound (libsvm uses 1e-12 too).
_MIN_CURVATURE = 1e-12


@dataclass(frozen=True)
class SMOResult:
    """Solution of the selection QP."""

    alpha: np.ndarray  # (m,) float64, sum 1, each in [0, 1/(nu m)]
    objective: float  # f(alpha) = alpha^T K alpha - tau d^T alpha
    iterations: int  # pair updates performed
    converged: bool  # KKT gap <= tol reached before max_iter
    kkt_gap: float  # max_{a_j>0} g_j - min_{a_i<C} g_i at the end (0 when none is left)

    @property
    def kept(self) -> np.ndarray:
        """(k,) int64 indices of points with alpha > 0, ascending."""
        return np.flatnonzero(self.alpha > 0)


class _DenseKernel:
    def __init__(self, K: np.ndarray):
        self.K = K
        self.diag = np.ascontiguousarray(np.diag(K), dtype=np.float64)

    def row(self, i: int) -> np.ndarray:
        return self.K[i]

    def block(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return self.K[np.ix_(rows, cols)]


class _RBFKernel:
    """K_ij = exp(-gamma ||f_i - f_j||^2), rows on demand with an LRU cache of recent rows."""

    # from this many points on, kernel rows use float32 dot products (see _row)
    float32_min_points = 4096

    def __init__(self, features: np.ndarray, gamma: float, cache_bytes: int = 256 * 2**20,
                 float32_dots: bool | None = None):
        self.F = np.ascontiguousarray(features, dtype=np.float64)
        if float32_dots is None:
            float32_dots = len(self.F) >= self.float32_min_points
        self.gamma = float(gamma)
        self.F32 = self.F.astype(np.float32) if float32_dots else None
        self.sq_norms = np.einsum("ij,ij->i", self.F, self.F)
        self.diag = np.ones(len(self.F))
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_rows = max(4, cache_bytes // max(1, 8 * len(self.F)))

    def _row(self, i: int) -> np.ndarray:
        # ||f_i - f_l||^2 = |f_i|^2 + |f_l|^2 - 2 f_i.f_l, clamped: rounding can make it slightly negative.
        # On large problems the dot products run in float32 (a row per SMO step is the solver's main
        # cost; float32 halves it, 0.19 -> 0.10 ms at m = 10k); norms and exp stay float64, so a
        # kernel entry is off by about 1e-6 relative, far below the solver's tolerance. Small
        # problems keep exact float64 rows (identical to the dense kernel, step for step).
        if self.F32 is not None:
            row = (self.F32 @ self.F32[i]).astype(np.float64)
            row *= -2.0
            row += self.sq_norms
            row += self.sq_norms[i]
        else:  # the same expression as block(), so both give bit-identical entries
            row = (self.sq_norms[i] + self.sq_norms[None, :] - 2.0 * (self.F[[i]] @ self.F.T))[0]
        np.maximum(row, 0.0, out=row)
        row *= -self.gamma
        np.exp(row, out=row)
        row[i] = 1.0
        return row

    def row(self, i: int) -> np.ndarray:
        cached = self._cache.get(i)
        if cached is not None:
            self._cache.move_to_end(i)
            return cached
        r = self._row(i)
        self._cache[i] = r
        if len(self._cache) > self._cache_rows:
            self._cache.popitem(last=False)
        return r

    def block(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        Fr, Fc = self.F[rows], self.F[cols]
        sq = self.sq_norms[rows, None] + self.sq_norms[None, cols] - 2.0 * (Fr @ Fc.T)
        return np.exp(-self.gamma * np.maximum(sq, 0.0))

    def matvec_columns(self, cols: np.ndarray, weights: np.ndarray, chunk: int = 512) -> np.ndarray:
        """(m,) K[:, cols] @ weights, in chunks of columns so memory stays O(m * chunk)."""
        out = np.zeros(len(self.F))
        for s in range(0, len(cols), chunk):
            c = cols[s : s + chunk]
            out += self.block(np.arange(len(self.F)), c) @ weights[s : s + chunk]
        return out


def _validate(d, K, features, gamma, tau, nu) -> tuple[np.ndarray, _DenseKernel | _RBFKernel]:
    d = np.asarray(d, dtype=np.float64)
    if d.ndim != 1 or len(d) == 0:
        raise ValueError(f"d must be a non-empty (m,) vector of scores, got shape {d.shape}")
    if not np.all(np.isfinite(d)):
        raise ValueError("d contains NaN or inf; compute scores for every point before selection")
    m = len(d)
    if (K is None) == (features is None):
        raise ConfigError("give exactly one of K (dense (m, m) kernel) or features (m, D) with gamma")
    if not (np.isfinite(tau) and tau >= 0):
        raise ConfigError(f"tau must be a finite number >= 0, got {tau}")
    if not (0 < nu <= 1):
        raise ConfigError(f"nu (the fraction of points to keep) must be in (0, 1], got {nu}")
    if K is not None:
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (m, m):
            raise ValueError(f"K must be ({m}, {m}) to match d, got {K.shape}")
        return d, _DenseKernel(K)
    features = np.asarray(features)
    if features.ndim != 2 or len(features) != m:
        raise ValueError(f"features must be ({m}, D) to match d, got {features.shape}")
    if gamma is None or not (np.isfinite(gamma) and gamma > 0):
        raise ConfigError(f"gamma must be a finite number > 0 with features, got {gamma}")
    return d, _RBFKernel(features, gamma)


def initial_alpha(d: np.ndarray, nu: float) -> np.ndarray:
    """(m,) feasible start: the floor(nu m) best scores at C = 1/(nu m), the next one the remainder.

    Ties in ``d`` are broken by index (stable sort) so the start is deterministic.
    """
    m = len(d)
    C = 1.0 / (nu * m)
    order = np.argsort(-np.asarray(d, dtype=np.float64), kind="stable")
    # nu * m may be an integer that floating point puts a hair below: 1e-9 absorbs that.
    n_full = min(m, int(math.floor(nu * m + 1e-9)))
    alpha = np.zeros(m)
    alpha[order[:n_full]] = C
    remainder = 1.0 - C * n_full
    if n_full < m and remainder > 1e-12 * C:
        alpha[order[n_full]] = remainder
    elif n_full > 0:
        alpha[order[n_full - 1]] += remainder  # absorb rounding so the sum is 1 to the last bit
    return alpha


def qp_objective(alpha: np.ndarray, d: np.ndarray, tau: float, K: np.ndarray | None = None,
                 features: np.ndarray | None = None, gamma: float | None = None) -> float:
    """f(alpha) = alpha^T K alpha - tau d^T alpha, evaluated on alpha's support only."""
    support = np.flatnonzero(alpha)
    kern = _DenseKernel(np.asarray(K, dtype=np.float64)) if K is not None else _RBFKernel(features, gamma)
    a = alpha[support]
    return float(a @ kern.block(support, support) @ a - tau * (d[support] @ a))


def solve_qp_smo(
    d: np.ndarray,
    K: np.ndarray | None = None,
    features: np.ndarray | None = None,
    gamma: float | None = None,
    *,
    tau: float,
    nu: float,
    max_iter: int = 20000,
    tol: float = 1e-6,
    seed: int = 0,
) -> SMOResult:
    """Solve ``min a^T K a - tau d^T a, sum a = 1, 0 <= a <= 1/(nu m)`` by SMO.

    Args:
        d: (m,) point scores (larger = more worth keeping).
        K: (m, m) PSD kernel, or None when ``features``/``gamma`` define an RBF kernel.
        features: (m, D) point features of the implicit kernel ``exp(-gamma ||f_i - f_j||^2)``.
        gamma: RBF bandwidth, > 0 (only with ``features``).
        tau: weight of the score term, >= 0.
        nu: compression ratio in (0, 1]; at least ``nu * m`` points end up with ``a_i > 0``.
        max_iter: pair updates allowed.
        tol: stop when the KKT gap ``max_{a_j>0} g_j - min_{a_i<C} g_i`` (``g = 2 K a - tau d``) is
            <= tol; it bounds how much any feasible pair step could still lower ``f`` per unit mass.
        seed: unused by the deterministic working-set selection; kept so callers can pass one
            seed to every selection method.

    Returns:
        SMOResult with ``alpha`` (m,), ``objective``, ``iterations``, ``converged``, ``kkt_gap``.
    """
    del seed  # the working-set selection is deterministic
    d, kern = _validate(d, K, features, gamma, tau, nu)
    # Each step is a handful of (m,)-sized products: BLAS threads cost more in wake-ups than they
    # save (10x slower at m = 10k on a busy 2-core machine), and clusters run in a process pool.
    with threadpool_limits(limits=1, user_api="blas"):
        return _solve(d, kern, tau, nu, max_iter, tol)


def _solve(d: np.ndarray, kern: _DenseKernel | _RBFKernel, tau: float, nu: float, max_iter: int,
           tol: float) -> SMOResult:
    m = len(d)
    C = 1.0 / (nu * m)
    alpha = initial_alpha(d, nu)
    support = np.flatnonzero(alpha)
    if isinstance(kern, _RBFKernel):
        Ka = kern.matvec_columns(support, alpha[support])
    else:
        Ka = kern.K[:, support] @ alpha[support]
    grad = 2.0 * Ka - tau * d
    diag = kern.diag

    # Masks kept in step with alpha: only entries i and j change per step, so updating them is O(1).
    at_upper = alpha >= C  # cannot grow
    positive = alpha > 0  # can shrink
    blocked_up = np.where(at_upper, np.inf, 0.0)  # + grad: "grad where a_i < C, inf elsewhere"

    iterations, gap, converged = 0, 0.0, False
    while True:
        i = int(np.argmin(grad + blocked_up))
        low = np.flatnonzero(positive)
        g_low = grad[low]
        gap = float(g_low.max() - grad[i]) if len(low) and np.isfinite(blocked_up[i]) else 0.0
        if gap <= tol:
            converged = True
            break
        if iterations >= max_iter:
            break
        K_i = kern.row(i)
        excess = g_low - grad[i]
        eta = np.maximum(diag[i] + diag[low] - 2.0 * K_i[low], _MIN_CURVATURE)
        gain = np.where(excess > 0, excess * excess / eta, -np.inf)
        pick = int(np.argmax(gain))
        j = int(low[pick])
        # Moving t from j to i changes f by -excess t + eta t^2: optimum excess / (2 eta), then clip so
        # a_i <= C and a_j >= 0 (equivalently a_i in [max(0, Delta - C), min(C, Delta)]).
        step_i, step_j = C - alpha[i], alpha[j]
        t = min(excess[pick] / (2.0 * eta[pick]), step_i, step_j)
        K_j = kern.row(j)
        if t == step_i:
            alpha[i] = C
        else:
            alpha[i] += t
        if t == step_j:
            alpha[j] = 0.0
        else:
            alpha[j] -= t
        grad += (2.0 * t) * (K_i - K_j)
        for idx in (i, j):
            at_upper[idx] = alpha[idx] >= C
            positive[idx] = alpha[idx] > 0
            blocked_up[idx] = np.inf if at_upper[idx] else 0.0
        iterations += 1

    support = np.flatnonzero(alpha)
    a = alpha[support]
    objective = float(a @ kern.block(support, support) @ a - tau * (d[support] @ a))
    return SMOResult(alpha=alpha, objective=objective, iterations=iterations, converged=converged,
                     kkt_gap=max(gap, 0.0))
