"""A 3-camera rig through the localizer node over real DDS: one node process with cameras
"front,left,right" on the small street map; this process plays the robot, publishing each
camera's image and CameraInfo on image_<i> / camera_info_<i> and the cameras' mounting on
/tf_static (base_link is a body frame, x forward, z up, the cameras 1.2 m above it), and receives
one pose of base_link per rig frame."""

from __future__ import annotations

import numpy as np
import pytest

from scenesqueezer_ros.testing import (
    create_probe_node,
    destroy_probe_node,
    isolate_ros_environment,
    spin_until,
    start_node,
    stop_node,
)

DOMAIN_ID = 65
NODE = "/scenesqueezer_localizer"


def base_from_front():
    """base_link (x forward, y left, z up) from the front camera's optical frame (z forward, y down)."""
    from scenesqueezer_core.types import Pose

    return Pose(np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]), np.array([0.3, 0.0, 1.2]))


@pytest.fixture(scope="module")
def rig_node(small_street_rig_scene, small_street_map, tmp_path_factory):
    root = tmp_path_factory.mktemp("ros_rig")
    isolate_ros_environment(DOMAIN_ID, root / "ros_log")
    process = start_node(["-p", f"map_path:={small_street_map}", "-p", "device:=cpu", "-p", "cameras:=front,left,right",
                          "-p", "base_frame:=base_link", "-p", "publish_point_cloud:=false"], root / "node.log")
    node = create_probe_node("rig_probe")
    try:
        yield node, root / "node.log"
    finally:
        destroy_probe_node(node)
        stop_node(process)


def test_node_publishes_one_base_pose_from_three_cameras(rig_node, small_street_rig_scene):
    from geometry_msgs.msg import PoseStamped
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image
    from tf2_msgs.msg import TFMessage

    from scenesqueezer.msg import LocalizationResult
    from scenesqueezer_core.dataset import load_dataset, load_rig, read_image
    from scenesqueezer_core.localization.prior import pose_difference
    from scenesqueezer_ros.conversions import camera_to_camera_info, make_transform_stamped, pose_msg_to_cam_from_world
    from scenesqueezer_ros.image_conversion import rgb_to_image_msg

    node, log = rig_node
    rig, frames = load_rig(load_dataset(small_street_rig_scene))
    row = frames["query_night_rig"][1]  # the front camera alone does not localize it (test_rig.py)
    results, poses = [], []
    node.create_subscription(LocalizationResult, f"{NODE}/result", results.append, 10)
    node.create_subscription(PoseStamped, f"{NODE}/pose", poses.append, 10)
    reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    image_pubs = [node.create_publisher(Image, f"/image_{i}", reliable) for i in range(3)]
    info_pubs = [node.create_publisher(CameraInfo, f"/camera_info_{i}", reliable) for i in range(3)]
    static = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    stamp = node.get_clock().now().to_msg()
    mounting = [make_transform_stamped(base_from_front() @ camera.base_from_camera, "base_link",
                                       f"{camera.name}_optical", stamp) for camera in rig.cameras]
    node.create_publisher(TFMessage, "/tf_static", static).publish(TFMessage(transforms=mounting))
    assert spin_until(node, lambda: all(p.get_subscription_count() > 0 for p in image_pubs), 120.0), log.read_text()

    stamp.sec, stamp.nanosec = 1000, 0
    images = []
    for camera, frame, info_pub in zip(rig.cameras, row, info_pubs):
        info = camera_to_camera_info(frame.camera)
        image = rgb_to_image_msg(read_image(frame.image_path), "rgb8")
        image.header.stamp = info.header.stamp = stamp
        image.header.frame_id = info.header.frame_id = f"{camera.name}_optical"
        info_pub.publish(info)
        images.append(image)
    spin_until(node, lambda: False, 0.5)  # CameraInfo and TF before the images
    for image, image_pub in zip(images[:2], image_pubs):
        image_pub.publish(image)
    assert not spin_until(node, lambda: bool(results), 2.0), "localized an incomplete rig frame"
    image_pubs[2].publish(images[2])
    assert spin_until(node, lambda: bool(results) and bool(poses), 180.0), log.read_text()

    result = results[0]
    assert len(results) == 1 and result.success, result.failure_reason
    assert result.camera_frame_id == "base_link" and result.header.frame_id == "map"
    truth = base_from_front() @ row[0].cam_from_world  # base_from_world
    distance, angle = pose_difference(pose_msg_to_cam_from_world(result.pose.pose), truth)
    assert distance < 0.25 and angle < 2.0, (distance, angle)
    assert pose_difference(pose_msg_to_cam_from_world(poses[0].pose), truth)[0] < 0.25
