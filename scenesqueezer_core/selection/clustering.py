"""Co-visible frame clustering (seed section B, main paper Sec. 3.1).

Co-visibility distance between frames ``i`` and ``j`` with point sets ``P_i``, ``P_j``::

    dist(i, j) = 1 - |P_i & P_j| / min(|P_i|, |P_j|)        (0: one frame sees a subset of the other,
                                                              1: no shared point)

i.e. one minus the overlap (Szymkiewicz-Simpson) coefficient. We take the smaller set as denominator
so that a frame close to a far-seeing frame is not pushed away just because it sees fewer points.
The seed's "maximum inter-cluster distance 10" is in units it does not define; ours lives in [0, 1]
and the default threshold 0.9 means: with average linkage, two groups merge while their frame pairs
share on average at least 10 % of the smaller frame's points. Frames are grouped with scipy
``linkage(method="average")`` on the condensed distance vector and cut with
``fcluster(criterion="distance")``. A cluster with fewer than ``min_cluster_frames`` frames grows by
adding the outside frames that observe most of the cluster's points, ring after ring (so a frame may
end up in several clusters); clusters that end up with identical frame sets are merged.

Inside a cluster (seed sections A/B): the anchor frame is the frame observing the most points (it is
also the representative frame whose global descriptor and pose the compressed map stores); the
verification frames are the other frames that share points with the anchor; up to ``num_held_out``
of those are held out instead (never anchor or verification) as training queries, at most half of
them so that verification frames remain.

Optional reference pre-sampling (seed section B, for dense video-like captures): frames are grouped
by camera-centre distance (complete linkage, cut at ``min_distance`` metres), each group split by
viewing direction (complete linkage on the angle, cut at ``min_angle_deg``), and from each group
the frame nearest the group's centroid is kept. Only those frames are clustered; the growth step
then draws from all frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist

from ..errors import ConfigError

__all__ = ["Cluster", "cluster_frames", "covisibility_distances", "presample_reference_frames",
           "split_cluster_roles"]


@dataclass(frozen=True)
class Cluster:
    """One co-visible cluster; all ids index the rows (frames) / columns (points) of the visibility matrix."""

    frame_ids: np.ndarray  # (n,) int64 ascending, every frame of the cluster
    representative: int  # frame observing the most points (its global descriptor + pose are stored)
    anchor: int  # same frame: the anchor of seed section A
    verification: np.ndarray  # (v,) int64 frames sharing points with the anchor, not held out
    held_out: np.ndarray  # (h,) int64 frames kept aside as training queries (h <= num_held_out)
    point_ids: np.ndarray  # (p,) int64 ascending, points observed by any frame of the cluster


def _binary_csr(visibility) -> sp.csr_matrix:
    if not sp.issparse(visibility):
        raise ValueError("visibility must be a scipy.sparse matrix (num_frames, num_points), "
                         f"got {type(visibility).__name__}; build it with scipy.sparse.csr_matrix")
    vis = sp.csr_matrix(visibility, dtype=np.float64, copy=True)
    vis.data[:] = 1.0
    vis.sum_duplicates()
    vis.data[:] = 1.0
    vis.eliminate_zeros()
    return vis


def covisibility_distances(visibility) -> np.ndarray:
    """Condensed (F (F - 1) / 2,) vector of ``1 - |P_i & P_j| / min(|P_i|, |P_j|)`` for i < j.

    The shared counts come from the sparse product ``V V^T``; only pairs that share points are
    touched, so the cost is that of the product plus the O(F^2) output scipy's linkage needs.
    """
    vis = _binary_csr(visibility)
    F = vis.shape[0]
    counts = np.asarray(vis.sum(axis=1)).ravel()
    shared = sp.triu(vis @ vis.T, k=1).tocoo()
    dist = np.ones(F * (F - 1) // 2)
    i, j = shared.row.astype(np.int64), shared.col.astype(np.int64)
    denom = np.maximum(np.minimum(counts[i], counts[j]), 1.0)
    # Index of (i, j), i < j, in scipy's condensed order.
    dist[F * i - i * (i + 1) // 2 + (j - i - 1)] = 1.0 - shared.data / denom
    return np.clip(dist, 0.0, 1.0)


def presample_reference_frames(centers: np.ndarray, view_dirs: np.ndarray, min_distance: float = 6.0,
                               min_angle_deg: float = 45.0) -> np.ndarray:
    """(s,) int64 ascending frame ids kept by the position-then-angle pre-sampling of seed section B."""
    centers = np.asarray(centers, dtype=np.float64)
    dirs = np.asarray(view_dirs, dtype=np.float64)
    dirs = dirs / np.maximum(np.linalg.norm(dirs, axis=1, keepdims=True), 1e-12)
    F = len(centers)
    if F <= 1:
        return np.arange(F, dtype=np.int64)
    pos_labels = fcluster(linkage(pdist(centers), method="complete"), t=min_distance, criterion="distance")
    keep = []
    for label in np.unique(pos_labels):
        members = np.flatnonzero(pos_labels == label)
        if len(members) > 1:
            cos = np.clip(1.0 - pdist(dirs[members], metric="cosine"), -1.0, 1.0)
            ang = np.degrees(np.arccos(cos))
            sub_labels = fcluster(linkage(ang, method="complete"), t=min_angle_deg, criterion="distance")
        else:
            sub_labels = np.ones(1, dtype=int)
        for sub in np.unique(sub_labels):
            group = members[sub_labels == sub]
            centroid = centers[group].mean(axis=0)
            keep.append(int(group[np.argmin(np.linalg.norm(centers[group] - centroid, axis=1))]))
    return np.array(sorted(keep), dtype=np.int64)


def split_cluster_roles(vis: sp.csr_matrix, frame_ids: np.ndarray, num_held_out: int = 5
                        ) -> tuple[int, np.ndarray, np.ndarray]:
    """(anchor, verification (v,), held_out (h,)) of one cluster, as described in the module docstring.

    Held-out frames are spread over the co-visible frames ordered by how many anchor points they
    see (every other one from the second), so training queries range from easy to hard.
    """
    frame_ids = np.asarray(frame_ids, dtype=np.int64)
    sub = vis[frame_ids]
    counts = np.asarray(sub.sum(axis=1)).ravel()
    anchor_pos = int(np.argmax(counts))  # first maximum = smallest frame id on ties
    anchor = int(frame_ids[anchor_pos])
    shared = np.asarray((sub @ sub[anchor_pos].T).todense()).ravel()
    shared[anchor_pos] = 0
    covisible = np.flatnonzero(shared > 0)
    covisible = covisible[np.lexsort((frame_ids[covisible], -shared[covisible]))]
    n_hold = min(num_held_out, len(covisible) // 2)
    held_pos = covisible[1::2][:n_hold]
    verif_pos = np.setdiff1d(covisible, held_pos)
    return anchor, np.sort(frame_ids[verif_pos]), np.sort(frame_ids[held_pos])


def _grow(vis: sp.csr_matrix, vis_csc: sp.csc_matrix, members: np.ndarray, min_frames: int) -> np.ndarray:
    """Add the outside frames that observe most of the cluster's points until it has min_frames.

    Repeated ring by ring: when the frames sharing points with the cluster are not enough, the next
    round looks at frames co-visible with the grown cluster. Stops early when nothing is co-visible.
    """
    while len(members) < min_frames:
        points = np.flatnonzero(np.asarray(vis[members].sum(axis=0)).ravel() > 0)
        seen = np.asarray(vis_csc[:, points].sum(axis=1)).ravel()  # (F,) cluster points each frame sees
        seen[members] = -1
        outside = np.flatnonzero(seen > 0)
        if len(outside) == 0:
            break
        outside = outside[np.lexsort((outside, -seen[outside]))][: min_frames - len(members)]
        members = np.sort(np.concatenate([members, outside]))
    return members


def cluster_frames(
    visibility,
    centers: np.ndarray,
    view_dirs: np.ndarray,
    *,
    distance_threshold: float = 0.9,
    min_cluster_frames: int = 20,
    num_held_out: int = 5,
    presample: bool = False,
    presample_distance: float = 6.0,
    presample_angle_deg: float = 45.0,
) -> list[Cluster]:
    """Cluster frames by co-visibility.

    Args:
        visibility: (F, P) scipy sparse, non-zero where frame f observes point p.
        centers: (F, 3) camera centres in world coordinates (used by pre-sampling only).
        view_dirs: (F, 3) viewing directions (optical axes) in world coordinates (pre-sampling only).
        distance_threshold: fcluster cut on the average-linkage co-visibility distance, in (0, 1].
        min_cluster_frames: clusters smaller than this grow with co-visible outside frames.
        num_held_out: at most this many held-out (training query) frames per cluster.
        presample: cluster only frames >= presample_distance / presample_angle_deg apart first.

    Returns:
        Clusters ordered by their smallest frame id. A scene with fewer than ``min_cluster_frames``
        co-visible frames gives a single cluster holding all of them.
    """
    vis = _binary_csr(visibility)
    F = vis.shape[0]
    centers = np.asarray(centers, dtype=np.float64)
    view_dirs = np.asarray(view_dirs, dtype=np.float64)
    if centers.shape != (F, 3) or view_dirs.shape != (F, 3):
        raise ValueError(f"centers and view_dirs must be ({F}, 3) to match visibility's {F} frames, "
                         f"got {centers.shape} and {view_dirs.shape}")
    if not (0 < distance_threshold <= 1):
        raise ConfigError(f"distance_threshold must be in (0, 1] (co-visibility distance), got {distance_threshold}")
    if min_cluster_frames < 1 or num_held_out < 0:
        raise ConfigError(f"min_cluster_frames must be >= 1 and num_held_out >= 0, got "
                          f"{min_cluster_frames} and {num_held_out}")
    if F == 0:
        return []
    observing = np.flatnonzero(np.diff(vis.indptr) > 0)
    if len(observing) == 0:
        raise ValueError("no frame observes any point: triangulate the map before clustering")
    candidates = observing
    if presample:
        kept = presample_reference_frames(centers[observing], view_dirs[observing],
                                          presample_distance, presample_angle_deg)
        candidates = observing[kept]
    if len(candidates) == 1:
        groups = [candidates]
    else:
        labels = fcluster(linkage(covisibility_distances(vis[candidates]), method="average"),
                          t=distance_threshold, criterion="distance")
        groups = [candidates[labels == lab] for lab in np.unique(labels)]

    vis_csc = vis.tocsc()
    seen_sets: set[bytes] = set()
    clusters = []
    for members in sorted((_grow(vis, vis_csc, g, min_cluster_frames) for g in groups),
                          key=lambda g: (g[0], len(g))):
        key = members.tobytes()
        if key in seen_sets:
            continue
        seen_sets.add(key)
        anchor, verification, held_out = split_cluster_roles(vis, members, num_held_out)
        points = np.flatnonzero(np.asarray(vis[members].sum(axis=0)).ravel() > 0).astype(np.int64)
        clusters.append(Cluster(frame_ids=members.astype(np.int64), representative=anchor, anchor=anchor,
                                verification=verification, held_out=held_out, point_ids=points))
    return clusters
