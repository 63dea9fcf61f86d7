"""Hand-crafted point scores ``d`` and kernel ``K`` for the selection QP (QP + R.Sift-style baseline).

Mera-Trujillo, Smith & Fragoso (3DV 2020, "Efficient scene compression for visual-based
localization") select points with the same QP as SceneSqueezer but with hand-made inputs: a point is
worth keeping when it is seen often, measured precisely and hard to confuse with other points, and
two points are redundant when they are close in 3D (and look alike). Our reading of it:

- ``d`` (m,) in [0, 1]: a weighted mean of three per-point terms, each turned into its percentile
  rank inside the cluster (scale-free, so the same weights work for SIFT, ALIKED or XFeat
  descriptors, for metres or arbitrary SfM units, and for any image resolution):
  track length (more observations = more likely to be seen by a query), mean reprojection error
  (lower = better triangulated), and descriptor distinctiveness (distance from the point's
  descriptor to the nearest other point's descriptor in the cluster: a near-duplicate descriptor
  is what makes a query's ratio test fail or a 2D-3D match go wrong).
- ``K``: an RBF kernel on 3D position, optionally also on descriptors,
  ``K_ij = exp(-||x_i - x_j||^2 / s^2 - w^2 ||u_i - u_j||^2)`` (``u`` L2-normalised descriptors),
  expressed as features ``[x / s, w u]`` with ``gamma = 1`` so the SMO solver evaluates rows on demand.

Note on ``tau``: the kernel term's gradient is about ``2 / (nu m)`` per redundant neighbour in the
kept set, the score term's ``tau * d``; with many points per cluster a small ``tau`` (0.1, the paper's
lower bound) already lets scores dominate, a ``tau`` near ``1 / (nu m)`` weighs spread and scores alike.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
from scipy.stats import rankdata

from ..errors import ConfigError
from .smo import solve_qp_smo

__all__ = ["handcrafted_scores", "score_terms", "descriptor_distinctiveness", "kernel_features", "select_points_qp"]


def _percentile_rank(x: np.ndarray) -> np.ndarray:
    """(m,) ranks mapped to [0, 1] (ties share their mean rank; a single point gets 1)."""
    if len(x) == 1:
        return np.ones(1)
    return (rankdata(x, method="average") - 1.0) / (len(x) - 1.0)


def _normalize_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def descriptor_distinctiveness(descriptors: np.ndarray, max_reference: int = 4096, seed: int = 0,
                               chunk: int = 4096) -> np.ndarray:
    """(m,) distance from each L2-normalised descriptor to its nearest other descriptor.

    Exact when ``m <= max_reference``; above, the nearest neighbour is searched among a random
    subset of ``max_reference`` points (the full m x m search costs m^2 D: 320 GFLOP at 50k x 128).
    """
    u = _normalize_rows(descriptors)
    m = len(u)
    if m == 1:
        return np.full(1, 2.0, dtype=np.float64)  # nothing to confuse it with: maximal distance
    ref = np.arange(m) if m <= max_reference else np.sort(
        np.random.default_rng(seed).choice(m, max_reference, replace=False))
    ref_u = u[ref]
    best = np.empty(m, dtype=np.float32)
    for s in range(0, m, chunk):
        sim = u[s : s + chunk] @ ref_u.T  # (chunk, R) cosine similarity
        idx = np.arange(s, min(s + chunk, m))
        pos = np.minimum(np.searchsorted(ref, idx), len(ref) - 1)
        own = ref[pos] == idx
        sim[np.flatnonzero(own), pos[own]] = -np.inf  # a point is not its own neighbour
        best[s : s + chunk] = sim.max(axis=1)
    return np.sqrt(np.maximum(2.0 - 2.0 * best.astype(np.float64), 0.0))


def score_terms(
    track_lengths: np.ndarray,
    mean_reproj_error: np.ndarray,
    descriptors: np.ndarray,
    *,
    max_reference: int = 4096,
    seed: int = 0,
) -> np.ndarray:
    """(3, m) percentile ranks in [0, 1] within the point set of (track length, -reprojection error,
    descriptor distinctiveness): the terms of ``handcrafted_scores`` (also inputs of the learned model).

    Args:
        track_lengths: (m,) number of frames observing each point.
        mean_reproj_error: (m,) mean reprojection error in pixels.
        descriptors: (m, D) one descriptor per point (e.g. the mean of its observations).
        max_reference: see ``descriptor_distinctiveness``.
    """
    track_lengths = np.asarray(track_lengths, dtype=np.float64)
    mean_reproj_error = np.asarray(mean_reproj_error, dtype=np.float64)
    descriptors = np.asarray(descriptors)
    m = len(track_lengths)
    if track_lengths.shape != (m,) or mean_reproj_error.shape != (m,) or descriptors.ndim != 2 \
            or len(descriptors) != m or m == 0:
        raise ValueError("track_lengths (m,), mean_reproj_error (m,) and descriptors (m, D) must describe "
                         f"the same m > 0 points; got {track_lengths.shape}, {mean_reproj_error.shape}, "
                         f"{descriptors.shape}")
    if not (np.all(np.isfinite(track_lengths)) and np.all(np.isfinite(mean_reproj_error))):
        raise ValueError("track_lengths / mean_reproj_error contain NaN or inf; fix the map's point statistics")
    return np.stack([
        _percentile_rank(track_lengths),
        _percentile_rank(-mean_reproj_error),
        _percentile_rank(descriptor_distinctiveness(descriptors, max_reference, seed)),
    ])


def handcrafted_scores(
    track_lengths: np.ndarray,
    mean_reproj_error: np.ndarray,
    descriptors: np.ndarray,
    *,
    weights: tuple[float, float, float] = (0.4, 0.2, 0.4),
    max_reference: int = 4096,
    seed: int = 0,
) -> np.ndarray:
    """(m,) scores in [0, 1]: weighted mean of percentile ranks of (track length, -reprojection error,
    descriptor distinctiveness) within the given point set (one cluster); see ``score_terms``.

    Args:
        weights: (track, reprojection, distinctiveness) weights, >= 0, not all 0.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (3,) or np.any(w < 0) or w.sum() <= 0:
        raise ConfigError(f"weights must be three numbers >= 0 with a positive sum, got {weights}")
    terms = score_terms(track_lengths, mean_reproj_error, descriptors, max_reference=max_reference, seed=seed)
    return np.clip((w / w.sum()) @ terms, 0.0, 1.0)


def kernel_features(
    xyz: np.ndarray,
    descriptors: np.ndarray | None = None,
    position_scale: float | None = None,
    descriptor_weight: float = 0.0,
    neighbours: int = 8,
) -> tuple[np.ndarray, float]:
    """Features (m, F) and gamma such that ``exp(-gamma ||f_i - f_j||^2)`` is the proximity kernel.

    ``K_ij = exp(-||x_i - x_j||^2 / s^2 - w^2 ||u_i - u_j||^2)`` with ``s = position_scale`` and
    ``w = descriptor_weight``; F = 3 when ``w == 0`` (or no descriptors), else 3 + D.
    ``position_scale=None`` picks the median distance from a point to its ``neighbours``-th nearest
    neighbour in 3D, so that a point's local neighbourhood counts as redundant whatever the units.
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or len(xyz) == 0:
        raise ValueError(f"xyz must be (m, 3) with m > 0, got {xyz.shape}")
    if not np.all(np.isfinite(xyz)):
        raise ValueError("xyz contains NaN or inf; drop points that failed triangulation first")
    if descriptor_weight < 0:
        raise ConfigError(f"descriptor_weight must be >= 0, got {descriptor_weight}")
    if position_scale is None:
        if len(xyz) > 1:
            k = min(neighbours, len(xyz) - 1)
            dist, _ = cKDTree(xyz).query(xyz, k=k + 1)
            position_scale = float(np.median(dist[:, k]))
        if not position_scale or position_scale <= 0:  # one point, or all on top of each other
            position_scale = 1.0
    elif not (np.isfinite(position_scale) and position_scale > 0):
        raise ConfigError(f"position_scale must be > 0 (in map units), got {position_scale}")
    parts = [xyz / position_scale]
    if descriptor_weight > 0 and descriptors is not None:
        descriptors = np.asarray(descriptors)
        if descriptors.ndim != 2 or len(descriptors) != len(xyz):
            raise ValueError(f"descriptors must be ({len(xyz)}, D), got {descriptors.shape}")
        parts.append(descriptor_weight * _normalize_rows(descriptors).astype(np.float64))
    return np.concatenate(parts, axis=1), 1.0


def select_points_qp(
    d: np.ndarray,
    kernel_features: np.ndarray,
    gamma: float,
    tau: float,
    nu: float,
    *,
    max_iter: int = 20000,
    tol: float = 1e-6,
) -> np.ndarray:
    """(k,) int64 ascending indices of the points the QP keeps (``alpha > 0``; ``k >= nu * m``)."""
    result = solve_qp_smo(d, features=kernel_features, gamma=gamma, tau=tau, nu=nu,
                          max_iter=max_iter, tol=tol)
    return result.kept
