"""Each localizer stage and each pose check on a small in-memory map (no images, no files).

The map: 400 points on a wall 10 m in front of four frames side by side; each frame's features are
its points' exact projections with random unit descriptors, so true correspondences are known.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from scenesqueezer_core.errors import ConfigError
from scenesqueezer_core.features import Features, MutualNearestNeighbor
from scenesqueezer_core.localization import (
    DEFAULT_LOCALIZER_CONF,
    LOCALIZER_OPTIONS,
    NODE_OPTIONS,
    POSE_CHECKS,
    FailureCode,
    SearchKind,
    checks_disabled_conf,
    localizer_conf,
    read_conf_file,
)
from scenesqueezer_core.localization.checks import (
    CheckContext,
    HypothesisMargin,
    MinInlierRatio,
    MinInliers,
    NearMapFrames,
    Occlusion,
    ReprojectionError,
    ValidPose,
    near_frame_view,
)
from scenesqueezer_core.localization.conf import stage_conf
from scenesqueezer_core.localization.matching import CandidateMatching
from scenesqueezer_core.localization.pose import CandidatePose, PoseEstimate, PoseEstimation
from scenesqueezer_core.localization.retrieval import make_retrieval
from scenesqueezer_core.maps.database import frames_residual_px
from scenesqueezer_core.retrieval import fit_vlad
from scenesqueezer_core.types import Camera, Pose
REPO_ROOT = Path(__file__).resolve().parents[1]

CAMERA = Camera.pinhole(500.0, 500.0, 320.0, 240.0, 640, 480)


@dataclass
class TinyMap:
    """A LocalizationDatabase held in memory."""

    feature_setup: str
    vlad: object
    global_descriptors: np.ndarray  # (C, G)
    points_xyz: np.ndarray  # (P, 3)
    points_color: np.ndarray  # (P, 3)
    points_multiview: np.ndarray  # (P,)
    candidate_ids: np.ndarray  # (C,)
    poses: list[Pose]
    features: list[Features]
    point_ids: list[np.ndarray]
    file_bytes: int = 0
    points_share_descriptors: bool = True  # one descriptor per point, as in a compressed map
    decodes_on_demand: bool = False

    def candidate_features(self, index: int) -> tuple[Features, np.ndarray]:
        return self.features[index], self.point_ids[index]

    def candidate_point_ids(self, index: int) -> np.ndarray:
        return self.point_ids[index]

    @property
    def own_residual_px(self) -> float:
        return frames_residual_px(self)

    def candidate_pose(self, index: int) -> Pose:
        return self.poses[index]

    def candidate_camera(self, index: int) -> Camera:
        return CAMERA

    def candidate_centers(self, index: int) -> np.ndarray:
        return self.poses[index].center[None]


def frame_pose(x: float, z: float = 0.0) -> Pose:
    """A camera at (x, 0, z) looking along +z (cam_from_world)."""
    return Pose(np.eye(3), -np.array([x, 0.0, z]))


@pytest.fixture(scope="module")
def tiny_map() -> TinyMap:
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(-8, 11, 400), rng.uniform(-3.5, 3.5, 400), rng.uniform(9.5, 10.5, 400)])
    descriptors = rng.normal(size=(400, 32)).astype(np.float32)
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    poses, features, ids = [], [], []
    for x in (0.0, 1.0, 2.0, 3.0):
        pose = frame_pose(x)
        cam = pose.transform(points)
        pixels = CAMERA.project(cam)
        seen = np.flatnonzero((pixels[:, 0] > 0) & (pixels[:, 0] < 640) & (pixels[:, 1] > 0) & (pixels[:, 1] < 480))
        poses.append(pose)
        features.append(Features(pixels[seen].astype(np.float32), np.ones(len(seen), np.float32),
                                 descriptors[seen], (640, 480)))
        ids.append(seen.astype(np.int64))
    vlad = fit_vlad([f.descriptors for f in features], num_clusters=4)
    global_desc = np.stack([vlad.describe(f.descriptors) for f in features])
    return TinyMap("xfeat", vlad, global_desc, points, np.zeros((400, 3), np.uint8), np.ones(400, bool),
                   np.arange(4, dtype=np.int64) + 100, poses, features, ids)


def query_of(tiny_map: TinyMap, pose: Pose, noise_px: float = 0.0) -> tuple[Features, np.ndarray]:
    """The features a camera at ``pose`` sees: (Features, (N,) true point ids)."""
    rng = np.random.default_rng(1)
    pixels = CAMERA.project(pose.transform(tiny_map.points_xyz))
    seen = np.flatnonzero((pixels[:, 0] > 0) & (pixels[:, 0] < 640) & (pixels[:, 1] > 0) & (pixels[:, 1] < 480))
    keypoints = pixels[seen] + rng.normal(scale=noise_px, size=(len(seen), 2)) if noise_px else pixels[seen]
    descriptors = np.concatenate([f.descriptors for f in tiny_map.features])
    point_ids = np.concatenate(tiny_map.point_ids)
    by_point = {int(p): descriptors[i] for i, p in enumerate(point_ids)}
    return Features(keypoints.astype(np.float32), np.ones(len(seen), np.float32),
                    np.stack([by_point[int(p)] for p in seen]), (640, 480)), seen


# --- conf ---------------------------------------------------------------------------------------


def test_every_option_has_one_default_and_a_description():
    names = [o.name for o in LOCALIZER_OPTIONS + NODE_OPTIONS]
    assert len(names) == len(set(names))
    for option in LOCALIZER_OPTIONS + NODE_OPTIONS:
        assert len(option.description) > 20, option.name
        option.check(option.default)  # every default is valid
    assert set(DEFAULT_LOCALIZER_CONF) == {o.name for o in LOCALIZER_OPTIONS}
    assert {c.option.name for c in POSE_CHECKS if c.option} <= set(DEFAULT_LOCALIZER_CONF)


def test_conf_rejects_unknown_keys_and_out_of_range_values():
    with pytest.raises(ConfigError, match="max_occluded_inlier"):
        localizer_conf({"max_occluded_inlier": 0.5})
    with pytest.raises(ConfigError, match=r"top_k.*\[1, 1000\]"):
        localizer_conf({"top_k": 0})
    with pytest.raises(ConfigError, match="whole number"):
        localizer_conf({"min_inliers": 12.5})
    assert localizer_conf({"ransac_threshold_px": 8})["ransac_threshold_px"] == 8.0


def test_conf_file_reads_the_node_parameter_file_and_flat_files(tmp_path):
    assert read_conf_file(REPO_ROOT / "config" / "localizer.yaml") == DEFAULT_LOCALIZER_CONF
    flat = tmp_path / "site.yaml"
    flat.write_text("min_inliers: 25\nimage_topic: /cam/image\n")
    assert read_conf_file(flat) == {**DEFAULT_LOCALIZER_CONF, "min_inliers": 25}
    typo = tmp_path / "typo.yaml"
    typo.write_text("/**:\n  ros__parameters:\n    min_inlier: 25\n")
    with pytest.raises(ConfigError, match="unknown option.*min_inlier"):
        read_conf_file(typo)
    with pytest.raises(ConfigError, match="does not exist"):
        read_conf_file(tmp_path / "missing.yaml")


def test_stage_confs_partition_the_conf():
    conf = localizer_conf()
    parts = [stage_conf(conf, stage) for stage in ("image", "retrieval", "matching", "pose", "checks", "prior")]
    assert sum(len(p) for p in parts) == len(conf)
    assert "top_k" in parts[1] and "min_inliers" in parts[4]


def test_failure_codes_match_the_message_constants():
    text = (REPO_ROOT / "msg" / "LocalizationResult.msg").read_text()
    constants = {m[0]: int(m[1]) for m in re.findall(r"^uint8 FAILURE_(\w+)=(\d+)", text, flags=re.M)}
    assert constants == {code.name: code.value for code in FailureCode}
    assert str(FailureCode.OCCLUDED_INLIERS) == "occluded_inliers"


def test_search_kinds_match_the_message_constants():
    text = (REPO_ROOT / "msg" / "LocalizationResult.msg").read_text()
    constants = {m[0]: int(m[1]) for m in re.findall(r"^uint8 SEARCH_(\w+)=(\d+)", text, flags=re.M)}
    assert constants == {kind.name: kind.value for kind in SearchKind}


# --- stages -------------------------------------------------------------------------------------


def test_retrieval_ranks_the_frame_the_query_sees_first(tiny_map):
    retrieval = make_retrieval(tiny_map, stage_conf(localizer_conf({"top_k": 2}), "retrieval"))
    for index in range(4):
        retrieved = retrieval(tiny_map.features[index])
        assert retrieved.indices[0] == index
        assert retrieved.candidate_ids[0] == 100 + index
        assert len(retrieved.indices) == 2 and retrieved.similarities[0] >= retrieved.similarities[1]


@pytest.mark.parametrize(("top_k", "share", "expected"), [(15, 1.0, 4), (3, 1.0, 3), (15, 0.5, 2), (15, 0.3, 2),
                                                          (15, 0.01, 1), (1, 0.5, 1)])
def test_retrieval_top_k_is_capped_by_a_share_of_the_map(tiny_map, top_k, share, expected):
    """4 candidates: top_k_share 0.5 keeps 2, 0.3 rounds up to 2, never fewer than 1; the best stays first."""
    retrieval = make_retrieval(tiny_map, stage_conf(localizer_conf({"top_k": top_k, "top_k_share": share}), "retrieval"))
    full = make_retrieval(tiny_map, stage_conf(localizer_conf({"top_k": 4}), "retrieval"))
    for index in range(4):
        retrieved = retrieval(tiny_map.features[index])
        assert len(retrieved.indices) == expected
        np.testing.assert_array_equal(retrieved.indices, full(tiny_map.features[index]).indices[:expected])


def test_retrieval_drops_candidates_beyond_the_similarity_gap(tiny_map):
    full = make_retrieval(tiny_map, stage_conf(localizer_conf({"top_k": 4}), "retrieval"))
    query = tiny_map.features[1]
    similarities = full(query).similarities
    assert similarities[0] - similarities[-1] > 0.1  # the frame the query sees stands out
    for gap in (0.0, similarities[0] - similarities[2], 2.0):
        cut = make_retrieval(tiny_map, stage_conf(localizer_conf({"top_k": 4, "max_similarity_gap": float(gap)}),
                                                  "retrieval"))(query)
        kept = int(np.sum(similarities >= similarities[0] - gap))
        np.testing.assert_array_equal(cut.indices, full(query).indices[:kept])
        assert np.all(cut.similarities >= similarities[0] - gap)
    assert len(cut.indices) == 4  # 2.0 (the default) keeps every candidate


def test_matching_in_chunks_gives_every_candidate_in_retrieval_order(tiny_map):
    """The chunked, batched stage yields the same correspondences as matching each candidate alone."""
    matcher = MutualNearestNeighbor({"min_similarity": 0.82}, "cpu")
    matching = CandidateMatching(tiny_map, stage_conf(localizer_conf(), "matching"), matcher, "cpu")
    assert matching.points_share_descriptors  # one descriptor per point in the tiny map
    query, _ = query_of(tiny_map, frame_pose(1.5))
    order = np.array([2, 0, 3, 1])
    found = list(matching.matches(query, order))
    assert [c.index for c in found] == [2, 0, 3, 1]
    for cand in found:
        features, point_ids = tiny_map.candidate_features(cand.index)
        alone = matcher.match(query, features)
        np.testing.assert_array_equal(cand.query_indices, alone.indices[:, 0])
        np.testing.assert_array_equal(cand.point_ids, point_ids[alone.indices[:, 1]])


def test_matching_gives_true_correspondences(tiny_map):
    matching = CandidateMatching(tiny_map, stage_conf(localizer_conf(), "matching"),
                                 MutualNearestNeighbor({"min_similarity": 0.82}, "cpu"), "cpu")
    query, true_ids = query_of(tiny_map, frame_pose(1.5))
    found = list(matching.matches(query, np.array([1, 2])))
    assert [c.index for c in found] == [1, 2]
    for cand in found:
        assert len(cand.query_indices) > 50
        np.testing.assert_array_equal(true_ids[cand.query_indices], cand.point_ids)
    assert matching.seconds > 0


def test_pose_estimation_recovers_the_pose_and_merges_agreeing_candidates(tiny_map):
    conf = stage_conf(localizer_conf(), "pose")
    truth = frame_pose(1.5)
    query, true_ids = query_of(tiny_map, truth, noise_px=0.5)
    matching = CandidateMatching(tiny_map, stage_conf(localizer_conf(), "matching"),
                                 MutualNearestNeighbor({"min_similarity": 0.82}, "cpu"), "cpu")
    stage = PoseEstimation(tiny_map, conf, early_exit_inliers=0)
    registered = stage.register_candidates(query.keypoints, CAMERA, matching.matches(query, np.arange(4)))
    assert len(registered) == 4
    estimate = stage.estimate(query.keypoints, CAMERA, registered)
    assert estimate.agreeing == [0, 1, 2, 3]
    assert np.linalg.norm(estimate.pose.center - truth.center) < 0.05
    assert np.median(estimate.residuals_px) < 1.0
    # early exit: stops after the first candidate once enough inliers are found
    early = PoseEstimation(tiny_map, conf, early_exit_inliers=10)
    assert len(early.register_candidates(query.keypoints, CAMERA, matching.matches(query, np.arange(4)))) == 1


# --- checks -------------------------------------------------------------------------------------


def estimate_at(tiny_map: TinyMap, pose: Pose, num_inliers: int = 100, residual_px: float = 1.0,
                conflicting: int = 0) -> tuple[PoseEstimate, CheckContext]:
    """A hand-made estimate: ``num_inliers`` inliers among 200 correspondences, supported by frame 1."""
    ids = tiny_map.point_ids[1][:200]
    pairs = np.stack([np.arange(len(ids)), ids], axis=1)
    registered = [CandidatePose(1, pose, pairs[:num_inliers])]
    if conflicting:
        registered.append(CandidatePose(2, frame_pose(50.0), pairs[:conflicting]))
    estimate = PoseEstimate(CAMERA, np.zeros((len(ids), 2)), registered, [0], correspondences=pairs, pose=pose,
                            inlier_mask=np.arange(len(ids)) < num_inliers, residuals_px=np.full(num_inliers, residual_px))
    context = CheckContext(tiny_map, np.arange(4), tiny_map.candidate_point_ids)
    return estimate, context


def run(check_type, conf_overrides, estimate, context):
    return check_type(stage_conf(localizer_conf(conf_overrides), "checks"))(estimate, context)


def test_each_check_passes_a_good_estimate(tiny_map):
    estimate, context = estimate_at(tiny_map, frame_pose(1.0))
    for check_type in POSE_CHECKS:
        outcome = run(check_type, {}, estimate, context)
        assert outcome.passed, outcome
        assert outcome.name == check_type.name


def test_hypothesis_margin(tiny_map):
    estimate, context = estimate_at(tiny_map, frame_pose(1.0), num_inliers=100, conflicting=80)
    outcome = run(HypothesisMargin, {}, estimate, context)
    assert outcome.statistic == pytest.approx(100 / 80) and not outcome.passed
    assert run(HypothesisMargin, {"min_hypothesis_margin": 1.2}, estimate, context).passed
    assert run(HypothesisMargin, {"min_hypothesis_margin": 0.0}, estimate, context).passed  # off


def test_min_inliers_and_ratio(tiny_map):
    estimate, context = estimate_at(tiny_map, frame_pose(1.0), num_inliers=30)
    assert run(MinInliers, {}, estimate, context).statistic == 30
    assert not run(MinInliers, {}, estimate, context).passed
    assert run(MinInliers, {"min_inliers": 30}, estimate, context).passed
    ratio = run(MinInlierRatio, {}, estimate, context)
    assert ratio.statistic == pytest.approx(30 / 200) and not ratio.passed


def test_valid_pose_refuses_a_camera_facing_away(tiny_map):
    turned = Pose(np.diag([-1.0, 1.0, -1.0]), np.zeros(3))  # looks along -z, away from the wall
    estimate, context = estimate_at(tiny_map, turned)
    outcome = run(ValidPose, {}, estimate, context)
    assert outcome.statistic == 0.0 and not outcome.passed


def test_near_map_frames_refuses_a_pose_far_from_its_supporting_frame(tiny_map):
    estimate, context = estimate_at(tiny_map, frame_pose(40.0))
    outcome = run(NearMapFrames, {}, estimate, context)
    assert outcome.statistic > 3 and not outcome.passed
    assert run(NearMapFrames, {"max_distance_to_candidate": 0.0}, estimate, context).passed  # off


def test_reprojection_error(tiny_map):
    estimate, context = estimate_at(tiny_map, frame_pose(1.0), residual_px=6.0)
    outcome = run(ReprojectionError, {}, estimate, context)
    assert outcome.statistic == 6.0 and outcome.limit == 4.0 and not outcome.passed
    assert run(ReprojectionError, {"max_median_reprojection_error_px": 8.0}, estimate, context).passed


def test_reprojection_limit_grows_with_the_maps_own_residual(tiny_map):
    # frames whose keypoints lie ~2.4 px (median) from their points' projections: a noisy map
    rng = np.random.default_rng(3)
    noisy = [Features(f.keypoints + rng.normal(scale=2.0, size=f.keypoints.shape).astype(np.float32), f.scores,
                      f.descriptors, f.image_size) for f in tiny_map.features]
    noisy_map = TinyMap(**{**tiny_map.__dict__, "features": noisy})
    estimate, _ = estimate_at(noisy_map, frame_pose(1.0), residual_px=6.0)
    context = CheckContext(noisy_map, np.arange(4), noisy_map.candidate_point_ids)
    outcome = run(ReprojectionError, {}, estimate, context)
    assert 6.0 < outcome.limit < 8.5 and outcome.passed  # 3 x the map's median residual
    assert run(ReprojectionError, {"max_median_reprojection_error_px": 0.0}, estimate, context).passed  # off


def wall_at(z: float, step: float) -> np.ndarray:
    """(N, 3) a dense grid of points on the plane at depth ``z``."""
    x, y = np.meshgrid(np.arange(-12, 14, step), np.arange(-6, 6, step))
    return np.column_stack([x.ravel(), y.ravel(), np.full(x.size, z)])


def with_occluders(tiny_map: TinyMap, occluders: np.ndarray) -> tuple[TinyMap, CheckContext]:
    points = np.concatenate([tiny_map.points_xyz, occluders])
    bigger = TinyMap(**{**tiny_map.__dict__, "points_xyz": points, "points_multiview": np.ones(len(points), bool)})
    return bigger, CheckContext(bigger, np.arange(1), lambda i: np.arange(len(points)))


def test_occlusion_refuses_inliers_hidden_at_the_pose_but_seen_from_their_frame(tiny_map):
    estimate, context = estimate_at(tiny_map, frame_pose(1.0))
    assert run(Occlusion, {}, estimate, context).statistic == 0.0
    # a camera 6 m behind the supporting frame looks at the inliers through a dense multi-view wall
    # 3 m behind that frame, which the frame itself (in front of the wall) never looked through
    occluded_map, context = with_occluders(tiny_map, wall_at(-3.0, 0.05))
    estimate, _ = estimate_at(occluded_map, frame_pose(1.0, z=-6.0))
    outcome = run(Occlusion, {}, estimate, context)
    assert outcome.statistic > 0.9 and not outcome.passed
    assert run(Occlusion, {"max_occluded_inliers": 1.0}, estimate, context).passed  # off


def test_occlusion_discounts_what_the_supporting_frame_sees_through(tiny_map):
    # a wall between both the pose and the supporting frame and the inliers: the frame saw the inliers
    # anyway, so the sparse points do not stand for an opaque surface there
    occluded_map, context = with_occluders(tiny_map, wall_at(5.0, 0.1))
    estimate, _ = estimate_at(occluded_map, frame_pose(1.2))
    assert run(Occlusion, {}, estimate, context).statistic == 0.0


def test_checks_disabled_conf_passes_a_poor_estimate(tiny_map):
    estimate, context = estimate_at(tiny_map, frame_pose(40.0), num_inliers=8, residual_px=9.0, conflicting=8)
    off = checks_disabled_conf()
    for check_type in POSE_CHECKS:
        if check_type is ValidPose:
            continue
        assert run(check_type, off, estimate, context).passed, check_type.name


def test_near_frame_view_keeps_the_orientation_and_moves_to_the_nearest_cluster_frame():
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(3)
    for _ in range(20):
        pose = Pose(Rotation.random(random_state=rng).as_matrix(), rng.normal(size=3))
        centers = rng.normal(scale=5.0, size=(6, 3))
        view = near_frame_view(pose, centers)
        nearest = centers[np.argmin(np.linalg.norm(centers - pose.center, axis=1))]
        np.testing.assert_allclose(view.R, pose.R)
        np.testing.assert_allclose(view.center, nearest, atol=1e-9)
