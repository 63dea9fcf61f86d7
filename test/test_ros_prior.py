"""Modes, the trigger service and the odometry prior of the localizer node, over real DDS.

One node process on the small street map; this process plays the robot: it publishes the day
queries' images with odometry on /tf (the synthetic trajectory's true motion, in an odometry frame
that is not the map's), calls ~/trigger_localization, sends /initialpose, and switches the node's
parameters (applied by ~/reload_map) between phases.
"""

from __future__ import annotations

import numpy as np
import pytest

from scenesqueezer_ros.testing import (
    RobotProbe,
    create_probe_node,
    destroy_probe_node,
    isolate_ros_environment,
    start_node,
    stop_node,
)

DOMAIN_ID = 64
NODE = RobotProbe.NODE


def odom_from_world():
    from scenesqueezer_core.types import Pose

    return Pose.from_matrix(np.array([[0.0, -1.0, 0.0, 3.0], [1.0, 0.0, 0.0, -2.0],
                                      [0.0, 0.0, 1.0, 0.5], [0.0, 0.0, 0.0, 1.0]]))


def within(estimate, truth, metres=0.25, degrees=2.0) -> bool:
    cos = (np.trace(estimate.R @ truth.R.T) - 1) / 2
    return (np.linalg.norm(estimate.center - truth.center) < metres
            and np.degrees(np.arccos(np.clip(cos, -1, 1))) < degrees)


@pytest.fixture(scope="module")
def robot(small_street_scene, small_street_map, tmp_path_factory):
    from scenesqueezer_core.dataset import load_dataset

    root = tmp_path_factory.mktemp("ros_prior")
    isolate_ros_environment(DOMAIN_ID, root / "ros_log")
    queries = load_dataset(small_street_scene).split("query_day")
    assert len(queries) >= 5
    # early_exit_inliers 0: every retrieved candidate is matched, so that the count shows the narrowing
    process = start_node(["-p", f"map_path:={small_street_map}", "-p", "device:=cpu", "-p", "image_topic:=/cam/image",
                          "-p", "camera_info_topic:=/cam/camera_info", "-p", "mode:=on_demand",
                          "-p", "odom_frame:=odom", "-p", "base_frame:=base_link", "-p", "early_exit_inliers:=0",
                          "-p", "localized_poses_to_stop:=2", "-p", "publish_point_cloud:=false"], root / "node.log")
    node = create_probe_node("prior_probe")
    try:
        yield RobotProbe(node, queries, root / "node.log", odom_from_world())
    finally:
        destroy_probe_node(node)
        stop_node(process)


def test_on_demand_localizes_only_the_frame_after_a_trigger(robot):
    from std_srvs.srv import Trigger

    from scenesqueezer.msg import LocalizationResult

    assert robot.spin_until(lambda: robot.image_pub.get_subscription_count() > 0, 120.0), robot.log()
    stamp = robot.send(0)
    assert not robot.spin_until(lambda: stamp in robot.results, 4.0)  # no trigger: not localized
    values = robot.diagnostic_values(lambda v: v["mode"] == "on_demand" and int(v["frames_skipped_idle"]) >= 1)
    assert values["mode"] == "on_demand" and int(values["frames_skipped_idle"]) >= 1
    response = robot.call(Trigger, f"{NODE}/trigger_localization", Trigger.Request(), send_frame=0)
    assert response.success and "localized (global search)" in response.message, response.message
    result = robot.results[robot.stamp]
    assert result.success and result.search == LocalizationResult.SEARCH_GLOBAL
    stamp = robot.send(1)
    assert not robot.spin_until(lambda: stamp in robot.results, 4.0)  # one trigger, one frame


def test_odometry_prior_narrows_the_search_without_losing_recall(robot):
    from scenesqueezer.msg import LocalizationResult
    from scenesqueezer_ros.conversions import pose_msg_to_cam_from_world

    runs = {}
    for prior in (False, True):
        robot.configure(mode="continuous", odometry_prior=prior)
        runs[prior] = [robot.localize(i) for i in range(len(robot.queries))]
    good = {prior: sum(r.success and within(pose_msg_to_cam_from_world(r.pose.pose), f.cam_from_world)
                       for r, f in zip(results, robot.queries)) for prior, results in runs.items()}
    assert good[True] >= good[False] >= len(robot.queries) - 1, good
    assert all(r.search == LocalizationResult.SEARCH_GLOBAL for r in runs[False])
    tracked = runs[True][1:]  # the first frame has no accepted pose to predict from
    assert sum(r.search == LocalizationResult.SEARCH_PRIOR for r in tracked) >= len(tracked) - 1
    for with_prior, without in zip(tracked, runs[False][1:]):
        if with_prior.search == LocalizationResult.SEARCH_PRIOR:
            assert with_prior.num_candidates_matched <= 5 < without.num_candidates_matched
    values = robot.diagnostic_values(lambda v: int(v["localized_prior_search"]) >= len(tracked) - 1
                                     and int(v["localized_global_search"]) >= 1)
    assert int(values["localized_prior_search"]) >= len(tracked) - 1
    assert int(values["localized_global_search"]) >= 1


def test_a_prior_10_m_away_falls_back_to_the_global_search_and_recovers(robot):
    from scenesqueezer.msg import LocalizationResult
    from scenesqueezer_core.types import Pose
    from scenesqueezer_ros.conversions import pose_msg_to_cam_from_world

    robot.configure(mode="continuous", odometry_prior=True)
    first = robot.queries[0].cam_from_world.inverse()
    robot.send(0)  # the odometry of the moment the pose is given
    robot.spin_until(lambda: robot.stamp in robot.results, 120.0)
    wrong = Pose(first.R, first.t + np.array([10.0, 0.0, 0.0])).inverse()
    robot.send_initial_pose(wrong)
    refused, recovered, tracked = (robot.localize(i) for i in (1, 2, 3))
    assert refused.failure_code == LocalizationResult.FAILURE_DISAGREES_WITH_PRIOR, refused.failure_reason
    assert refused.search == LocalizationResult.SEARCH_GLOBAL and not refused.success
    assert recovered.success and recovered.search == LocalizationResult.SEARCH_GLOBAL, recovered.failure_reason
    assert within(pose_msg_to_cam_from_world(recovered.pose.pose), robot.queries[2].cam_from_world)
    assert tracked.success and tracked.search == LocalizationResult.SEARCH_PRIOR
    assert int(robot.diagnostic_values(lambda v: int(v["refused_by_prior"]) >= 1)["refused_by_prior"]) >= 1


def test_until_localized_stops_after_n_agreeing_poses_until_triggered(robot):
    from std_srvs.srv import Trigger

    robot.configure(mode="until_localized", odometry_prior=True)  # localized_poses_to_stop: 2
    first, second = robot.localize(0), robot.localize(1)
    assert first.success and second.success
    stamp = robot.send(2)
    assert not robot.spin_until(lambda: stamp in robot.results, 4.0), "localized a third frame"
    values = robot.diagnostic_values(lambda v: v["localizing"] == "False" and int(v["frames_skipped_idle"]) >= 1)
    assert values["localizing"] == "False" and int(values["frames_skipped_idle"]) >= 1
    response = robot.call(Trigger, f"{NODE}/trigger_localization", Trigger.Request(), send_frame=3)
    assert response.success, response.message
    assert robot.results[robot.stamp].success
