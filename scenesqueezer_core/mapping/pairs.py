"""Choose image pairs to match from known poses (neighbours in position with overlapping views)."""

from __future__ import annotations

import numpy as np

from ..types import Pose


def pairs_from_poses(poses: list[Pose], num_neighbors: int = 10, max_view_angle_deg: float = 70.0) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j: for each frame its ``num_neighbors`` nearest cameras whose optical axes
    differ by less than ``max_view_angle_deg``. O(F^2) distances, fine up to ~10k frames."""
    centers = np.stack([p.center for p in poses])  # (F, 3)
    axes = np.stack([p.R[2] for p in poses])  # (F, 3)
    num = len(poses)
    cos_limit = np.cos(np.radians(max_view_angle_deg))
    pairs: set[tuple[int, int]] = set()
    for i in range(num):
        dist = np.linalg.norm(centers - centers[i], axis=1)
        ok = (axes @ axes[i] > cos_limit)
        ok[i] = False
        candidates = np.flatnonzero(ok)
        if len(candidates) == 0:
            continue
        nearest = candidates[np.argsort(dist[candidates], kind="stable")[:num_neighbors]]
        pairs.update((min(i, int(j)), max(i, int(j))) for j in nearest)
    return sorted(pairs)
