"""Two processes over real DDS: the node localizes a small synthetic scene's day queries, checked
against ground truth through the published PoseStamped."""

import time

import numpy as np
import pytest

from scenesqueezer_ros.testing import (create_probe_node, destroy_probe_node, isolate_ros_environment, start_node,
                                       stop_node)

DOMAIN_ID = 62


@pytest.fixture(scope="module")
def scene_and_map(small_street_scene, small_street_map, tmp_path_factory):
    return small_street_scene, small_street_map, tmp_path_factory.mktemp("e2e")


def test_node_localizes_day_queries(scene_and_map):
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from scenesqueezer.msg import LocalizationResult
    from scenesqueezer_core.dataset import load_dataset, read_image
    from scenesqueezer_ros.conversions import camera_to_camera_info, pose_msg_to_cam_from_world
    from scenesqueezer_ros.image_conversion import rgb_to_image_msg

    scene, map_path, root = scene_and_map
    isolate_ros_environment(DOMAIN_ID, root / "ros_log")
    dataset = load_dataset(scene)
    queries = dataset.split("query_day")
    assert len(queries) >= 3

    process = start_node(["-p", f"map_path:={map_path}", "-p", "device:=cpu",
                          "-p", "image_topic:=/cam/image", "-p", "camera_info_topic:=/cam/camera_info"],
                         root / "node.log")
    node = create_probe_node("e2e_probe")
    executor = rclpy.executors.SingleThreadedExecutor(context=node.context)
    executor.add_node(node)

    def spin_until(condition, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not condition():
            executor.spin_once(timeout_sec=0.05)
        return condition()

    try:
        poses, results, clouds = {}, {}, []
        node.create_subscription(PoseStamped, "/scenesqueezer_localizer/pose",
                                 lambda m: poses.__setitem__(m.header.stamp.sec, m), 50)
        node.create_subscription(LocalizationResult, "/scenesqueezer_localizer/result",
                                 lambda m: results.__setitem__(m.header.stamp.sec, m), 50)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(PointCloud2, "/scenesqueezer_localizer/map_points", clouds.append, latched)
        reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        image_pub = node.create_publisher(Image, "/cam/image", reliable)
        info_pub = node.create_publisher(CameraInfo, "/cam/camera_info", reliable)
        assert spin_until(lambda: bool(clouds), 120.0), (root / "node.log").read_text()
        assert clouds[0].width > 100 and clouds[0].header.frame_id == "map"

        for index, frame in enumerate(queries):
            stamp_sec = 1000 + index
            info = camera_to_camera_info(frame.camera)
            image = rgb_to_image_msg(read_image(frame.image_path), "bgr8")
            image.header.stamp.sec = info.header.stamp.sec = stamp_sec
            image.header.frame_id = info.header.frame_id = "camera_optical"
            info_pub.publish(info)
            spin_until(lambda: False, 0.1)
            image_pub.publish(image)
            # One frame at a time: the test measures accuracy, not drop behaviour.
            assert spin_until(lambda: stamp_sec in results, 120.0), (root / "node.log").read_text()

        good = 0
        for index, frame in enumerate(queries):
            stamp_sec = 1000 + index
            result = results[stamp_sec]
            if not result.success:
                assert stamp_sec not in poses  # a failure publishes no pose
                continue
            assert spin_until(lambda: stamp_sec in poses, 10.0), f"no pose for successful frame {index}"
            msg = poses[stamp_sec]
            assert msg.header.frame_id == "map"
            estimate = pose_msg_to_cam_from_world(msg.pose)
            truth = frame.cam_from_world
            dt = np.linalg.norm(estimate.center - truth.center)
            cos = (np.trace(estimate.R @ truth.R.T) - 1) / 2
            dr = np.degrees(np.arccos(np.clip(cos, -1, 1)))
            good += dt < 0.25 and dr < 2.0
            assert np.any(result.pose.covariance)
            # the pose safety measurements travel with the result, within the node's limits
            assert 0 < result.median_reprojection_error_px <= 4.0 and 0 <= result.occluded_inlier_share <= 0.15
        print(f"localized {good}/{len(queries)} day queries within 0.25 m, 2 deg")
        assert good / len(queries) >= 0.9, (good, len(queries), [r.failure_reason for r in results.values()])
    finally:
        destroy_probe_node(node)
        stop_node(process)
