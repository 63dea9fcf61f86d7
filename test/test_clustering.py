"""Co-visible frame clustering: distances, linkage cut, growth, roles, pre-sampling."""

import time

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import squareform

from scenesqueezer_core.selection.clustering import (cluster_frames, covisibility_distances,
                                                       presample_reference_frames)
from scenesqueezer_core.errors import ConfigError


def strip_scene(num_frames, points_per_frame=50, step=10, seed=0):
    """Frames along a line; frame f sees points [f*step, f*step + points_per_frame), consecutive frames overlap."""
    rows, cols = [], []
    for f in range(num_frames):
        cols.extend(range(f * step, f * step + points_per_frame))
        rows.extend([f] * points_per_frame)
    num_points = (num_frames - 1) * step + points_per_frame
    vis = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(num_frames, num_points))
    centers = np.stack([np.arange(num_frames, dtype=float), np.zeros(num_frames), np.zeros(num_frames)], 1)
    dirs = np.tile([0.0, 0.0, 1.0], (num_frames, 1))
    return vis, centers, dirs


@given(st.integers(2, 12), st.integers(1, 30), st.integers(0, 10_000))
@settings(max_examples=40, deadline=None)
def test_covisibility_distance_matches_definition(num_frames, num_points, seed):
    rng = np.random.default_rng(seed)
    dense = rng.random((num_frames, num_points)) < 0.3
    dist = squareform(covisibility_distances(sp.csr_matrix(dense.astype(float))))
    for i in range(num_frames):
        for j in range(i + 1, num_frames):
            smaller = min(dense[i].sum(), dense[j].sum())
            expected = 1.0 if smaller == 0 else 1.0 - (dense[i] & dense[j]).sum() / smaller
            assert dist[i, j] == pytest.approx(expected)


def test_two_disjoint_scenes_give_two_clusters_with_roles():
    vis_a, centers, dirs = strip_scene(25)
    vis = sp.block_diag([vis_a, vis_a]).tocsr()  # two unrelated places, no shared points
    centers = np.concatenate([centers, centers + 100.0])
    dirs = np.concatenate([dirs, dirs])
    clusters = cluster_frames(vis, centers, dirs, distance_threshold=0.99, min_cluster_frames=5)
    assert len(clusters) == 2
    np.testing.assert_array_equal(clusters[0].frame_ids, np.arange(25))
    np.testing.assert_array_equal(clusters[1].frame_ids, np.arange(25, 50))
    for c in clusters:
        assert c.anchor == c.representative and c.anchor in c.frame_ids
        roles = np.concatenate([[c.anchor], c.verification, c.held_out])
        assert len(set(roles.tolist())) == len(roles)  # anchor / verification / held-out are disjoint
        assert 0 < len(c.held_out) <= 5 and len(c.verification) >= len(c.held_out)
        np.testing.assert_array_equal(c.point_ids, np.flatnonzero(np.asarray(vis[c.frame_ids].sum(0)).ravel()))
        # every verification and held-out frame shares points with the anchor
        shared = (vis[c.anchor].multiply(vis[np.concatenate([c.verification, c.held_out])])).sum(axis=1)
        assert (np.asarray(shared).ravel() > 0).all()


def test_threshold_controls_cluster_count_and_small_clusters_grow():
    vis, centers, dirs = strip_scene(60, points_per_frame=30, step=10)
    coarse = cluster_frames(vis, centers, dirs, distance_threshold=0.99, min_cluster_frames=1)
    fine = cluster_frames(vis, centers, dirs, distance_threshold=0.5, min_cluster_frames=1)
    assert len(fine) > len(coarse)
    grown = cluster_frames(vis, centers, dirs, distance_threshold=0.5, min_cluster_frames=12)
    assert all(len(c.frame_ids) >= 12 for c in grown)
    # growth takes the most co-visible neighbours: a grown cluster stays a contiguous stretch of the strip
    for c in grown:
        assert c.frame_ids[-1] - c.frame_ids[0] == len(c.frame_ids) - 1
    # after growth some frames belong to several clusters
    assert sum(len(c.frame_ids) for c in grown) > 60


def test_small_scene_is_one_cluster_with_all_frames():
    vis, centers, dirs = strip_scene(9, points_per_frame=60, step=5)  # all frames see frame 0's points
    clusters = cluster_frames(vis, centers, dirs, distance_threshold=0.3)
    assert len(clusters) == 1
    c = clusters[0]
    np.testing.assert_array_equal(c.frame_ids, np.arange(9))
    assert c.anchor == 0 and len(c.held_out) == 4 and len(c.verification) == 4


def test_anchor_is_frame_observing_most_points():
    vis, centers, dirs = strip_scene(6)
    vis = sp.vstack([vis, sp.csr_matrix(np.ones((1, vis.shape[1])))]).tocsr()  # a frame seeing everything
    centers = np.concatenate([centers, [[3.0, 0, 0]]])
    dirs = np.concatenate([dirs, [[0, 0, 1.0]]])
    (c,) = cluster_frames(vis, centers, dirs, min_cluster_frames=20)
    assert c.anchor == 6 and c.representative == 6


def test_large_scene_runs_fast():
    vis, centers, dirs = strip_scene(1500, points_per_frame=200, step=20)
    start = time.perf_counter()
    clusters = cluster_frames(vis, centers, dirs, distance_threshold=0.9, min_cluster_frames=20)
    elapsed = time.perf_counter() - start
    assert elapsed < 20.0
    covered = np.unique(np.concatenate([c.frame_ids for c in clusters]))
    assert len(covered) == 1500 and all(len(c.frame_ids) >= 20 for c in clusters)


def test_presampling_keeps_frames_far_apart():
    rng = np.random.default_rng(0)
    # 5 places 20 m apart, 12 frames around each looking one of two ways (90 deg apart)
    base = np.repeat(np.arange(5) * 20.0, 12)
    centers = np.stack([base + rng.uniform(-1, 1, 60), rng.uniform(-1, 1, 60), np.zeros(60)], 1)
    dirs = np.where((np.arange(60) % 2 == 0)[:, None], [1.0, 0, 0], [0, 1.0, 0])
    kept = presample_reference_frames(centers, dirs, min_distance=6.0, min_angle_deg=45.0)
    assert len(kept) == 10
    pairs = {(int(round(centers[k, 0] / 20)), int(k % 2)) for k in kept}
    assert len(pairs) == 10  # one frame per (place, direction)


def test_presampled_clustering_grows_from_all_frames():
    vis, centers, dirs = strip_scene(40, points_per_frame=50, step=5)
    centers = centers * 0.5  # 40 frames over 20 m: presampling keeps ~4 of them
    clusters = cluster_frames(vis, centers, dirs, presample=True, min_cluster_frames=10)
    assert all(len(c.frame_ids) >= 10 for c in clusters)


def test_bad_inputs():
    vis, centers, dirs = strip_scene(5)
    with pytest.raises(ConfigError):
        cluster_frames(vis, centers, dirs, distance_threshold=0.0)
    with pytest.raises(ValueError, match="scipy.sparse"):
        cluster_frames(vis.toarray(), centers, dirs)
    with pytest.raises(ValueError, match="centers"):
        cluster_frames(vis, centers[:3], dirs)
    with pytest.raises(ValueError, match="triangulate"):
        cluster_frames(sp.csr_matrix((5, 10)), centers, dirs)
