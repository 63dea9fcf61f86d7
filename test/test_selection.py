"""Hand-crafted scores, kernel features, QP selection and the random / KC / KCP baselines."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from scenesqueezer_core.selection import (descriptor_distinctiveness, handcrafted_scores, kernel_features,
                                            select_kcover, select_kcover_prioritized, select_points_qp,
                                            select_random, solve_qp_smo)
from scenesqueezer_core.errors import ConfigError


def coverage(vis, selected):
    return np.asarray(vis[:, selected].sum(axis=1)).ravel()


# ----------------------------------------------------------------------------- scores and kernel

def test_scores_rank_the_obviously_better_point_first():
    rng = np.random.default_rng(0)
    descriptors = rng.normal(size=(50, 32))
    descriptors[1] = descriptors[0] + 1e-3  # points 0 and 1 look alike
    track = np.full(50, 3.0)
    error = np.full(50, 1.0)
    track[7], error[7] = 20.0, 0.1  # seen often, precisely triangulated
    d = handcrafted_scores(track, error, descriptors)
    assert d.shape == (50,) and d.min() >= 0 and d.max() <= 1
    assert np.argmax(d) == 7
    assert d[0] < np.median(d) and d[1] < np.median(d)  # confusable descriptors score low


def test_distinctiveness_subsampled_is_close_to_exact():
    rng = np.random.default_rng(1)
    u = rng.normal(size=(3000, 16))
    exact = descriptor_distinctiveness(u, max_reference=10_000)
    approx = descriptor_distinctiveness(u, max_reference=1500)
    assert (approx >= exact - 1e-6).all()  # a subset can only find farther neighbours
    assert np.corrcoef(exact, approx)[0, 1] > 0.5


def test_kernel_features_reproduce_the_documented_kernel():
    rng = np.random.default_rng(2)
    xyz, desc = rng.normal(size=(20, 3)), rng.normal(size=(20, 8))
    feats, gamma = kernel_features(xyz, desc, position_scale=2.0, descriptor_weight=0.5)
    u = desc / np.linalg.norm(desc, axis=1, keepdims=True)
    expected = np.exp(-((xyz[:, None] - xyz[None]) ** 2).sum(-1) / 4.0 - 0.25 * ((u[:, None] - u[None]) ** 2).sum(-1))
    got = np.exp(-gamma * ((feats[:, None] - feats[None]) ** 2).sum(-1))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    auto, _ = kernel_features(xyz)  # automatic scale, positions only
    assert auto.shape == (20, 3)


def test_qp_selection_respects_ratio_and_spreads_points():
    rng = np.random.default_rng(3)
    # a dense blob of high-score points and a sparse spread of slightly lower-score points
    blob = rng.normal(scale=0.05, size=(200, 3))
    spread = rng.uniform(-10, 10, size=(200, 3))
    xyz = np.concatenate([blob, spread])
    d = np.concatenate([np.full(200, 0.9), np.full(200, 0.8)])
    feats, gamma = kernel_features(xyz, position_scale=1.0)
    nu = 0.05
    kept = select_points_qp(d, feats, gamma, tau=0.1 / (nu * 400), nu=nu)
    assert len(kept) >= nu * 400
    assert (kept >= 200).sum() > (kept < 200).sum()  # redundancy in the blob pushes selection out
    top_only = select_points_qp(d, feats, gamma, tau=100.0, nu=nu)  # scores dominate
    assert (top_only < 200).all()


# ----------------------------------------------------------------------------- baselines

@given(st.integers(0, 500), st.integers(0, 600), st.integers(0, 100))
@settings(max_examples=30, deadline=None)
def test_random_respects_budget(num_points, budget, seed):
    sel = select_random(num_points, budget, seed)
    assert len(sel) == min(budget, num_points) and len(np.unique(sel)) == len(sel)
    assert (sel >= 0).all() and (sel < max(num_points, 1)).all()


def test_kcover_hand_made_case():
    # 4 frames; point 0 sees all, points 1-4 see one frame each, point 5 sees frames 0-1.
    vis = sp.csr_matrix(np.array([
        [1, 1, 0, 0, 0, 1],
        [1, 0, 1, 0, 0, 1],
        [1, 0, 0, 1, 0, 0],
        [1, 0, 0, 0, 1, 0],
    ], dtype=float))
    np.testing.assert_array_equal(select_kcover(vis, 1, k=1), [0])
    # k = 2: after point 0, the best extra cover is point 5 (two frames), then frames 2 and 3 singles
    np.testing.assert_array_equal(select_kcover(vis, 2, k=2), [0, 5])
    np.testing.assert_array_equal(select_kcover(vis, 4, k=2), [0, 3, 4, 5])
    assert (coverage(vis, select_kcover(vis, 4, k=2)) >= 2).all()


def test_kcover_fills_budget_beyond_full_cover_and_handles_unobserved_points():
    vis = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 1, 1, 0]], dtype=float))  # point 3: no frame
    sel = select_kcover(vis, 4, k=1)
    np.testing.assert_array_equal(sel, [0, 1, 2, 3])
    assert len(select_kcover(vis, 10, k=1)) == 4
    assert len(select_kcover(vis, 0, k=1)) == 0


@given(st.integers(3, 15), st.integers(5, 80), st.integers(1, 4), st.integers(0, 10_000))
@settings(max_examples=30, deadline=None)
def test_kcover_is_greedy_optimal_step_by_step(num_frames, num_points, k, seed):
    rng = np.random.default_rng(seed)
    dense = rng.random((num_frames, num_points)) < 0.3
    vis = sp.csr_matrix(dense.astype(float))
    budget = int(rng.integers(0, num_points + 1))
    sel = select_kcover(vis, budget, k)
    assert len(sel) == budget and len(np.unique(sel)) == budget
    # Replay a plain (non-lazy) greedy: the lazy heap must reach the same total cover at the cap k.
    cov = np.zeros(num_frames)
    chosen = np.zeros(num_points, bool)
    for _ in range(budget):
        gains = ((cov < k)[:, None] & dense).sum(0).astype(float)
        gains[chosen] = -1
        if gains.max() <= 0:
            break
        p = int(np.argmax(gains))
        chosen[p] = True
        cov += dense[:, p]
    plain_cover = np.minimum(cov, k).sum()
    lazy_cover = np.minimum(coverage(vis, sel), k).sum()
    assert lazy_cover == plain_cover


def test_kcp_prefers_high_priority_points_at_equal_cover():
    # Points 0 and 1 cover the same two frames; point 1 has the higher priority.
    vis = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=float))
    np.testing.assert_array_equal(select_kcover(vis, 1, k=1), [0])  # plain KC: lowest index
    np.testing.assert_array_equal(select_kcover_prioritized(vis, 1, 1, np.array([0.2, 0.9, 0.5])), [1])
    # a low-priority point must cover clearly more to win: 2 * 0.2 < 1 * 0.5
    np.testing.assert_array_equal(select_kcover_prioritized(vis, 1, 1, np.array([0.2, 0.2, 0.5])), [2])
    with pytest.raises(ConfigError):
        select_kcover_prioritized(vis, 1, 1, np.array([0.0, 1.0, 1.0]))


def test_baselines_scale_to_large_maps():
    rng = np.random.default_rng(4)
    num_frames, num_points = 500, 100_000
    rows = rng.integers(0, num_frames, size=400_000)
    cols = rng.integers(0, num_points, size=400_000)
    vis = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(num_frames, num_points))
    sel = select_kcover(vis, 1500, k=3)
    assert len(sel) == 1500 and (coverage(vis, sel) >= 3).all()
    sel = select_kcover_prioritized(vis, 1500, 3, rng.uniform(0.1, 1.0, num_points))
    assert len(sel) == 1500


def test_qp_and_baselines_share_one_budget():
    rng = np.random.default_rng(5)
    m = 300
    xyz = rng.uniform(-5, 5, size=(m, 3))
    d = rng.random(m)
    feats, gamma = kernel_features(xyz)
    result = solve_qp_smo(d, features=feats, gamma=gamma, tau=0.1, nu=0.05)
    budget = len(result.kept)
    vis = sp.csr_matrix((rng.random((30, m)) < 0.1).astype(float))
    assert len(select_random(m, budget)) == budget
    assert len(select_kcover(vis, budget, 2)) == budget
