"""The localizer node as a subprocess over real DDS: diagnostics, services, parameters, big frames,
and the custom message over real pub/sub."""

import time

import numpy as np
import pytest

from scenesqueezer_ros.testing import (
    REPO_ROOT,
    create_probe_node,
    destroy_probe_node,
    isolate_ros_environment,
    start_node,
    stop_node,
)

DOMAIN_ID = 61


@pytest.fixture(scope="module")
def ros(tmp_path_factory):
    isolate_ros_environment(DOMAIN_ID, tmp_path_factory.mktemp("ros_log"))
    node = create_probe_node("test_ros_node_probe")
    yield node
    destroy_probe_node(node)


def spin(node, condition, timeout):
    import rclpy

    deadline = time.monotonic() + timeout
    executor = rclpy.executors.SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        while time.monotonic() < deadline and not condition():
            executor.spin_once(timeout_sec=0.05)
    finally:
        executor.remove_node(node)
    return condition()


def call(node, service_type, name, request, timeout=30.0):
    import rclpy

    client = node.create_client(service_type, name)
    try:
        if not client.wait_for_service(timeout_sec=timeout):
            return None
        future = client.call_async(request)
        executor = rclpy.executors.SingleThreadedExecutor(context=node.context)
        executor.add_node(node)
        executor.spin_until_future_complete(future, timeout_sec=timeout)
        executor.remove_node(node)
        return future.result()
    finally:
        node.destroy_client(client)


def test_custom_message_round_trip(ros):
    from scenesqueezer.msg import LocalizationResult

    received = []
    sub = ros.create_subscription(LocalizationResult, "/roundtrip", received.append, 10)
    pub = ros.create_publisher(LocalizationResult, "/roundtrip", 10)
    msg = LocalizationResult()
    msg.header.frame_id = "map"
    msg.success = True
    msg.failure_reason = ""
    msg.pose.pose.position.x = 1.5
    msg.pose.covariance = [float(i) for i in range(36)]
    msg.num_inliers, msg.num_correspondences, msg.inlier_ratio = 120, 300, 0.4
    msg.retrieved_cluster_ids = [5, 2, 9]
    msg.latency.total = 0.25
    assert spin(ros, lambda: pub.publish(msg) or bool(received), 10.0)
    got = received[0]
    assert got.pose.pose.position.x == 1.5 and list(got.retrieved_cluster_ids) == [5, 2, 9]
    assert got.latency.total == 0.25 and got.num_inliers == 120
    np.testing.assert_array_equal(got.pose.covariance, np.arange(36.0))
    ros.destroy_subscription(sub)
    ros.destroy_publisher(pub)


@pytest.fixture(scope="module")
def node_without_map(ros, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("node")
    params = tmp / "params.yaml"
    params.write_text((REPO_ROOT / "config" / "localizer.yaml").read_text()
                      .replace("top_k: 15", "top_k: 7")
                      .replace('image_topic: "image_raw"', 'image_topic: "/cam/image"'))
    process = start_node(["--params-file", str(params), "-p", f"map_path:={tmp / 'missing.ssmap'}",
                          "-p", "camera_info_topic:=/cam/camera_info", "-p", "min_inliers:=40"],
                         tmp / "node.log")
    yield process, tmp
    stop_node(process)


def test_parameter_overrides_from_yaml_and_ros_args(ros, node_without_map):
    from rcl_interfaces.srv import GetParameters

    names = ["top_k", "image_topic", "min_inliers", "ransac_threshold_px", "camera_info_topic"]
    response = call(ros, GetParameters, "/scenesqueezer_localizer/get_parameters",
                    GetParameters.Request(names=names))
    assert response is not None, (node_without_map[1] / "node.log").read_text()
    values = dict(zip(names, response.values))
    assert values["top_k"].integer_value == 7  # YAML
    assert values["image_topic"].string_value == "/cam/image"  # YAML
    assert values["min_inliers"].integer_value == 40  # --ros-args
    assert values["camera_info_topic"].string_value == "/cam/camera_info"  # --ros-args
    assert values["ransac_threshold_px"].double_value == 12.0  # default


def test_missing_map_reports_error_and_handles_big_reliable_frames(ros, node_without_map):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from scenesqueezer.msg import LocalizationResult
    from sensor_msgs.msg import CameraInfo, Image
    from std_srvs.srv import Trigger

    from scenesqueezer_core.types import Camera
    from scenesqueezer_ros.conversions import camera_to_camera_info
    from scenesqueezer_ros.image_conversion import rgb_to_image_msg

    process, tmp = node_without_map
    diagnostics, results = [], []
    ros.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    ros.create_subscription(LocalizationResult, "/scenesqueezer_localizer/result", results.append, 50)
    assert spin(ros, lambda: bool(diagnostics), 20.0), (tmp / "node.log").read_text()
    status = diagnostics[-1].status[0]
    assert status.level == DiagnosticStatus.ERROR
    assert "missing.ssmap" in status.message and "does not exist" in status.message

    # 1024x768 rgb8 = 2.4 MB frames, reliable QoS on both ends (the node's default).
    reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    image_pub = ros.create_publisher(Image, "/cam/image", reliable)
    info_pub = ros.create_publisher(CameraInfo, "/cam/camera_info", reliable)
    rgb = np.random.default_rng(0).integers(0, 256, (768, 1024, 3), dtype=np.uint8)
    image = rgb_to_image_msg(rgb, "rgb8")
    assert len(image.data) > 2_000_000
    info = camera_to_camera_info(Camera.pinhole(800, 800, 512, 384, 1024, 768))
    assert spin(ros, lambda: image_pub.get_subscription_count() > 0, 10.0)
    sent = 0
    for index in range(6):
        image.header.stamp.sec = 100 + index
        image.header.frame_id = info.header.frame_id = "camera_optical"
        info_pub.publish(info)
        time.sleep(0.05)
        image_pub.publish(image)
        sent += 1
        spin(ros, lambda: False, 0.3)
    assert spin(ros, lambda: len(results) >= 3, 20.0), (tmp / "node.log").read_text()
    stamps = {r.header.stamp.sec for r in results}
    assert stamps <= set(range(100, 106)) and len(stamps) >= 3
    assert all(not r.success and "does not exist" in r.failure_reason for r in results)

    # Counts in diagnostics: received frames are processed or dropped, never lost silently.
    diagnostics.clear()
    assert spin(ros, lambda: bool(diagnostics), 5.0)
    values = {kv.key: kv.value for kv in diagnostics[-1].status[0].values}
    assert int(values["frames_received"]) >= 3
    assert int(values["frames_processed"]) + int(values["frames_dropped"]) == int(values["frames_received"])

    # On-demand localization re-runs the last frame and reports the failure.
    response = call(ros, Trigger, "/scenesqueezer_localizer/localize_now", Trigger.Request())
    assert response is not None and not response.success and "does not exist" in response.message
    # Reload with the map still missing fails with the reason; the node stays up.
    response = call(ros, Trigger, "/scenesqueezer_localizer/reload_map", Trigger.Request())
    assert response is not None and not response.success and "does not exist" in response.message
    assert process.poll() is None


def test_invalid_parameter_value_stops_with_clear_error(ros, tmp_path):
    process = start_node(["-p", "image_transport:=theora"], tmp_path / "bad.log")
    try:
        assert process.wait(60) == 2
    finally:
        stop_node(process)
    log = (tmp_path / "bad.log").read_text()
    assert "image_transport" in log and "raw, compressed" in log
