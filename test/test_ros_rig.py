"""A 3-camera rig through the localizer node over real DDS: one node process with cameras
"front,left,right" on the small street map; this process plays the robot from a bag that
`export-bag --rig` wrote, publishing each camera's image and CameraInfo on image_<i> /
camera_info_<i> and the cameras' mounting on /tf_static (rig_base -> <name>_optical, from
rig.json), and receives one pose of rig_base per rig frame."""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def rig_node(small_street_rig_scene, small_street_map, tmp_path_factory):
    root = tmp_path_factory.mktemp("ros_rig")
    isolate_ros_environment(DOMAIN_ID, root / "ros_log")
    process = start_node(["-p", f"map_path:={small_street_map}", "-p", "device:=cpu", "-p", "cameras:=front,left,right",
                          "-p", "base_frame:=rig_base", "-p", "odom_frame:=odom", "-p", "publish_point_cloud:=false"],
                         root / "node.log")
    node = create_probe_node("rig_probe")
    try:
        yield node, root / "node.log"
    finally:
        destroy_probe_node(node)
        stop_node(process)


def read_raw(bag) -> dict[str, list[bytes]]:
    """Each topic's serialized messages, in bag order."""
    from rosbags.rosbag2 import Reader

    raw: dict[str, list[bytes]] = {}
    with Reader(bag) as reader:
        for connection, _, data in reader.messages():
            raw.setdefault(connection.topic, []).append(bytes(data))
    return raw


def test_node_publishes_one_base_pose_from_three_cameras(rig_node, small_street_rig_scene, tmp_path):
    """The rig's night frame that the front camera alone does not localize (test_rig.py), played from
    `export-bag --rig` as recorded: each camera's CameraInfo and image and the mountings on
    /tf_static, their serialized bytes as they are in the bag."""
    from geometry_msgs.msg import PoseStamped
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image
    from tf2_msgs.msg import TFMessage

    from scenesqueezer.msg import LocalizationResult
    from scenesqueezer_core.bag import export_bag
    from scenesqueezer_core.bag import messages as m
    from scenesqueezer_core.localization.prior import pose_difference
    from scenesqueezer_ros.conversions import pose_msg_to_cam_from_world

    node, log = rig_node
    raw = read_raw(export_bag(small_street_rig_scene, tmp_path / "rig_bag", split="query_night_rig", rig=True))
    frame = 1  # the second rig frame
    truth_msg = m.typestore().deserialize_cdr(raw["/ground_truth/camera_pose"][frame], m.POSE_STAMPED_TYPE).pose
    map_from_base = m.msg_to_pose(truth_msg.position, truth_msg.orientation)

    results, poses = [], []
    node.create_subscription(LocalizationResult, f"{NODE}/result", results.append, 10)
    node.create_subscription(PoseStamped, f"{NODE}/pose", poses.append, 10)
    reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    image_pubs = [node.create_publisher(Image, f"/image_{i}", reliable) for i in range(3)]
    info_pubs = [node.create_publisher(CameraInfo, f"/camera_info_{i}", reliable) for i in range(3)]
    static = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_publisher(TFMessage, "/tf_static", static).publish(raw["/tf_static"][0])
    assert spin_until(node, lambda: all(p.get_subscription_count() > 0 for p in image_pubs), 120.0), log.read_text()

    for i, info_pub in enumerate(info_pubs):
        info_pub.publish(raw[f"/camera_info_{i}"][frame])
    spin_until(node, lambda: False, 0.5)  # CameraInfo and TF before the images
    for i in range(2):
        image_pubs[i].publish(raw[f"/image_{i}"][frame])
    assert not spin_until(node, lambda: bool(results), 2.0), "localized an incomplete rig frame"
    image_pubs[2].publish(raw["/image_2"][frame])
    assert spin_until(node, lambda: bool(results) and bool(poses), 180.0), log.read_text()

    result = results[0]
    assert len(results) == 1 and result.success, result.failure_reason
    assert result.camera_frame_id == "rig_base" and result.header.frame_id == "map"
    truth = map_from_base.inverse()  # base_from_world
    distance, angle = pose_difference(pose_msg_to_cam_from_world(result.pose.pose), truth)
    assert distance < 0.25 and angle < 2.0, (distance, angle)
    assert pose_difference(pose_msg_to_cam_from_world(poses[0].pose), truth)[0] < 0.25


def test_odometry_prior_tracks_the_rig_base(rig_node, small_street_rig_scene, tmp_path):
    """With odom -> rig_base on /tf (odometry that has not drifted: the ground truth), the first rig
    frame is found by the global search and seeds the prior; the next frames are found near the
    prediction (search PRIOR)."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image
    from tf2_msgs.msg import TFMessage

    from scenesqueezer.msg import LocalizationResult
    from scenesqueezer_core.bag import export_bag
    from scenesqueezer_core.bag import messages as m
    from scenesqueezer_core.bag.export import DEFAULT_START_NS
    from scenesqueezer_ros.conversions import make_transform_stamped

    node, log = rig_node
    # stamps after the night bag's (the node skips a frame whose stamp goes backwards)
    raw = read_raw(export_bag(small_street_rig_scene, tmp_path / "rig_day", split="query_day_rig", rig=True,
                              start_ns=DEFAULT_START_NS + 60 * 10**9))
    store = m.typestore()
    results = []
    node.create_subscription(LocalizationResult, f"{NODE}/result", results.append, 10)
    reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    image_pubs = [node.create_publisher(Image, f"/image_{i}", reliable) for i in range(3)]
    info_pubs = [node.create_publisher(CameraInfo, f"/camera_info_{i}", reliable) for i in range(3)]
    tf_pub = node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    assert spin_until(node, lambda: all(p.get_subscription_count() > 0 for p in image_pubs), 120.0), log.read_text()
    frames = min(3, len(raw["/image_0"]))
    for frame in range(frames):
        truth = store.deserialize_cdr(raw["/ground_truth/camera_pose"][frame], m.POSE_STAMPED_TYPE)
        odom_from_base = m.msg_to_pose(truth.pose.position, truth.pose.orientation)
        tf_pub.publish(TFMessage(transforms=[make_transform_stamped(odom_from_base, "odom", "rig_base",
                                                                    _stamp(truth.header.stamp))]))
        for i, info_pub in enumerate(info_pubs):
            info_pub.publish(raw[f"/camera_info_{i}"][frame])
        spin_until(node, lambda: False, 0.3)  # odometry and CameraInfo before the images
        for i, image_pub in enumerate(image_pubs):
            image_pub.publish(raw[f"/image_{i}"][frame])
        assert spin_until(node, lambda: len(results) > frame, 180.0), log.read_text()
    assert all(r.success for r in results), [r.failure_reason for r in results]
    assert results[0].search == LocalizationResult.SEARCH_GLOBAL
    assert all(r.search == LocalizationResult.SEARCH_PRIOR for r in results[1:]), [r.search for r in results]


def _stamp(bag_stamp):
    from builtin_interfaces.msg import Time

    return Time(sec=int(bag_stamp.sec), nanosec=int(bag_stamp.nanosec))
