"""Modes, the trigger service and the odometry prior of the localizer node, over real DDS.

One node process on the small street map; this process plays the robot: it publishes the day
queries' images with odometry on /tf (the synthetic trajectory's true motion, in an odometry frame
that is not the map's), calls ~/trigger_localization, sends /initialpose, and switches the node's
parameters (applied by ~/reload_map) between phases.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from scenesqueezer_ros.testing import (
    create_probe_node,
    destroy_probe_node,
    isolate_ros_environment,
    start_node,
    stop_node,
)

DOMAIN_ID = 64
NODE = "/scenesqueezer_localizer"
CAMERA_FRAME = "camera_optical"


def odom_from_world():
    from scenesqueezer_core.types import Pose

    return Pose.from_matrix(np.array([[0.0, -1.0, 0.0, 3.0], [1.0, 0.0, 0.0, -2.0],
                                      [0.0, 0.0, 1.0, 0.5], [0.0, 0.0, 0.0, 1.0]]))


def within(estimate, truth, metres=0.25, degrees=2.0) -> bool:
    cos = (np.trace(estimate.R @ truth.R.T) - 1) / 2
    return (np.linalg.norm(estimate.center - truth.center) < metres
            and np.degrees(np.arccos(np.clip(cos, -1, 1))) < degrees)


class Robot:
    """The probe node: camera, odometry TF, services and the node's results."""

    def __init__(self, node, queries, log_path):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseWithCovarianceStamped
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image
        from tf2_msgs.msg import TFMessage

        from scenesqueezer.msg import LocalizationResult
        from scenesqueezer_core.dataset import read_image
        from scenesqueezer_core.types import Pose
        from scenesqueezer_ros.conversions import make_transform_stamped
        from scenesqueezer_ros.image_conversion import rgb_to_image_msg

        self.node, self.queries, self.log_path = node, queries, log_path
        self.executor = rclpy.executors.SingleThreadedExecutor(context=node.context)
        self.executor.add_node(node)
        self.results: dict[int, object] = {}
        self.diagnostics: list = []
        node.create_subscription(LocalizationResult, f"{NODE}/result",
                                 lambda m: self.results.__setitem__(m.header.stamp.sec, m), 50)
        node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = node.create_publisher(Image, "/cam/image", reliable)
        self.info_pub = node.create_publisher(CameraInfo, "/cam/camera_info", reliable)
        self.tf_pub = node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        static = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.tf_static_pub = node.create_publisher(TFMessage, "/tf_static", static)
        self.initial_pose_pub = node.create_publisher(PoseWithCovarianceStamped, "/initialpose", 10)
        # the camera sits on the base (identity extrinsics): base pose = camera pose
        self.tf_static_pub.publish(TFMessage(transforms=[make_transform_stamped(Pose.identity(), "base_link",
                                                                                CAMERA_FRAME, node.get_clock().now().to_msg())]))
        self.images = [rgb_to_image_msg(read_image(f.image_path), "rgb8") for f in queries]
        self._make_transform = make_transform_stamped
        self._tf_message = TFMessage
        self.stamp = 1000

    def spin_until(self, condition, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not condition():
            self.executor.spin_once(timeout_sec=0.05)
        return condition()

    def log(self) -> str:
        return self.log_path.read_text()

    def send(self, index: int, odometry: bool = True) -> int:
        """Publish query ``index`` (and the odometry of its camera); its stamp in seconds."""
        from scenesqueezer_ros.conversions import camera_to_camera_info

        self.stamp += 1
        frame = self.queries[index]
        stamp = self.node.get_clock().now().to_msg()
        stamp.sec, stamp.nanosec = self.stamp, 0
        if odometry:
            odom_from_base = odom_from_world() @ frame.cam_from_world.inverse()
            self.tf_pub.publish(self._tf_message(transforms=[self._make_transform(odom_from_base, "odom", "base_link", stamp)]))
        info = camera_to_camera_info(frame.camera)
        image = self.images[index]
        image.header.stamp = info.header.stamp = stamp
        image.header.frame_id = info.header.frame_id = CAMERA_FRAME
        self.info_pub.publish(info)
        self.spin_until(lambda: False, 0.15)  # TF and CameraInfo before the image
        self.image_pub.publish(image)
        return self.stamp

    def localize(self, index: int):
        """Send query ``index`` and wait for its result."""
        stamp = self.send(index)
        assert self.spin_until(lambda: stamp in self.results, 120.0), self.log()
        return self.results[stamp]

    def call(self, service_type, name, request, send_frame: int | None = None, timeout=120.0):
        client = self.node.create_client(service_type, name)
        try:
            assert client.wait_for_service(timeout_sec=30.0), f"no service {name}"
            future = client.call_async(request)
            if send_frame is not None:
                self.spin_until(lambda: False, 0.5)  # the request reaches the node first
                self.send(send_frame)
            assert self.spin_until(future.done, timeout), self.log()
            return future.result()
        finally:
            self.node.destroy_client(client)

    def configure(self, **values):
        """Set node parameters and reload the map, which applies them."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter
        from std_srvs.srv import Trigger

        request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        response = self.call(SetParameters, f"{NODE}/set_parameters", request)
        assert all(r.successful for r in response.results), [r.reason for r in response.results]
        assert self.call(Trigger, f"{NODE}/reload_map", Trigger.Request()).success

    def diagnostic_values(self, until=lambda values: True) -> dict[str, str]:
        """The newest diagnostics values once they satisfy ``until`` (10 s at most). Messages published
        before the last result may still wait in the subscription's queue, so the first one received
        is not necessarily fresh; the counters only grow, so waiting for the expected value is exact."""
        def latest() -> dict[str, str]:
            return {kv.key: kv.value for kv in self.diagnostics[-1].status[0].values} if self.diagnostics else {}

        self.spin_until(lambda: bool(latest()) and until(latest()), 10.0)
        assert self.diagnostics, "no diagnostics received"
        return latest()

    def send_initial_pose(self, cam_from_world) -> None:
        from geometry_msgs.msg import PoseWithCovarianceStamped

        from scenesqueezer_ros.conversions import cam_from_world_to_pose_msg

        msg = PoseWithCovarianceStamped()
        msg.header.frame_id = "map"
        msg.pose.pose = cam_from_world_to_pose_msg(cam_from_world)  # base = camera here
        self.initial_pose_pub.publish(msg)
        self.spin_until(lambda: False, 0.5)


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
        yield Robot(node, queries, root / "node.log")
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
