"""The odometry prior in the core (scenesqueezer_core/localization/prior.py), on the real small street
map: the prediction from odometry, the narrowed search, and refusing / confirming a disagreeing pose."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scenesqueezer_core.dataset import load_dataset, read_image
from scenesqueezer_core.localization import FailureCode, Localizer, OdometryTracker, PosePrior, SearchKind
from scenesqueezer_core.localization.prior import pose_difference
from scenesqueezer_core.types import Pose

# An arbitrary odometry frame: odom_from_world, so that odometry never equals the map's coordinates.
ODOM_FROM_WORLD = Pose.from_matrix(np.array([[0.0, -1.0, 0.0, 3.0], [1.0, 0.0, 0.0, -2.0],
                                             [0.0, 0.0, 1.0, 0.5], [0.0, 0.0, 0.0, 1.0]]))


def odom_from_camera(cam_from_world: Pose) -> Pose:
    return ODOM_FROM_WORLD @ cam_from_world.inverse()


def shifted(cam_from_world: Pose, metres: float) -> Pose:
    """The same view with the camera moved ``metres`` along world x (the street)."""
    world_from_cam = cam_from_world.inverse()
    return Pose(world_from_cam.R, world_from_cam.t + np.array([metres, 0.0, 0.0])).inverse()


@pytest.fixture(scope="module")
def street(small_street_scene, small_street_map):
    dataset = load_dataset(small_street_scene)
    localizer = Localizer.from_file(small_street_map, device="cpu")
    return dataset, localizer


def test_prediction_composes_the_last_pose_with_the_odometry_since(street):
    dataset, localizer = street
    first, second = dataset.split("query_day")[:2]
    tracker = OdometryTracker(localizer.conf)
    assert tracker.prior(odom_from_camera(second.cam_from_world)) is None  # nothing accepted yet
    tracker.seed(first.cam_from_world, odom_from_camera(first.cam_from_world))
    prior = tracker.prior(odom_from_camera(second.cam_from_world))
    distance, angle = pose_difference(prior.cam_from_world, second.cam_from_world)
    assert distance < 1e-9 and angle < 1e-4  # arccos near 1 resolves no finer
    assert prior.tolerance_m == pytest.approx(localizer.conf["prior_tolerance_m"])  # no travel counted yet
    assert tracker.prior(None) is None  # no odometry for this frame: no prior


def test_narrowing_keeps_the_candidates_near_the_prediction(street):
    dataset, localizer = street
    truth = dataset.split("query_day")[0].cam_from_world
    geometry = localizer.candidate_geometry
    near = geometry.near(truth, 5.0, 60.0)
    mapping = dataset.split("mapping")
    centers = np.stack([f.cam_from_world.center for f in mapping])
    assert 0 < len(near) < len(mapping)
    assert np.all(np.linalg.norm(centers[near] - truth.center, axis=1) <= 5.0)
    axes = np.stack([f.cam_from_world.R[2] for f in mapping])
    assert np.all(axes[near] @ truth.R[2] >= math.cos(math.radians(60.0)) - 1e-9)
    assert len(geometry.near(shifted(truth, 100.0), 5.0, 60.0)) == 0


def test_a_prior_at_the_truth_localizes_from_the_narrowed_search_with_fewer_candidates(street):
    dataset, localizer = street
    frame = dataset.split("query_day")[1]
    image = read_image(frame.image_path)
    prior = PosePrior(frame.cam_from_world, 1.0, 5.0)
    with_prior = localizer.localize(image, frame.camera, prior=prior)
    without = localizer.localize(image, frame.camera)
    assert with_prior.success and with_prior.search == SearchKind.PRIOR
    assert without.success and without.search == SearchKind.GLOBAL
    assert with_prior.num_candidates_matched <= localizer.conf["prior_top_k"]
    assert pose_difference(with_prior.cam_from_world, frame.cam_from_world)[0] < 0.25


def test_a_far_prior_falls_back_to_the_global_search_which_must_confirm_twice(street):
    """A prior 10 m off: the first correct global pose is refused, the next one (agreeing with it
    through odometry) is accepted: the kidnapped robot recovers in two frames."""
    dataset, localizer = street
    queries = dataset.split("query_day")
    tracker = OdometryTracker(localizer.conf)
    tracker.seed(shifted(queries[0].cam_from_world, 10.0), odom_from_camera(queries[0].cam_from_world))
    outcomes = []
    for frame in queries[1:4]:
        result = tracker.localize(localizer, read_image(frame.image_path), frame.camera,
                                  odom_from_camera(frame.cam_from_world))
        outcomes.append(result)
    refused, confirmed, tracked = outcomes
    assert refused.failure_code == FailureCode.DISAGREES_WITH_PRIOR and refused.cam_from_world is None
    assert "odometry prediction" in refused.failure_reason and "/initialpose" in refused.failure_reason
    assert refused.search == SearchKind.GLOBAL
    assert confirmed.success and confirmed.search == SearchKind.GLOBAL
    assert pose_difference(confirmed.cam_from_world, queries[2].cam_from_world)[0] < 0.25
    assert tracked.success and tracked.search == SearchKind.PRIOR  # tracking again from the recovered pose
    assert tracker.consecutive_agreeing == 2


def test_agreement_is_within_the_tolerance_in_metres_and_degrees():
    """The decision alone, on poses."""
    prior = PosePrior(Pose.identity(), 1.0, 5.0)
    assert prior.agrees(shifted(Pose.identity(), 0.9))
    assert not prior.agrees(shifted(Pose.identity(), 1.1))
    turned = Pose.from_matrix(np.array([[math.cos(0.1), -math.sin(0.1), 0, 0], [math.sin(0.1), math.cos(0.1), 0, 0],
                                        [0, 0, 1, 0], [0, 0, 0, 1.0]]))  # 5.7 degrees
    assert not prior.agrees(turned)
