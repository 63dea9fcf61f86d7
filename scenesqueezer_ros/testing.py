"""Helpers for tests that talk to the node over real DDS (used by test/test_ros_*.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from scenesqueezer_core.dataset import read_image
from scenesqueezer_core.types import Pose

from .conversions import cam_from_world_to_pose_msg, camera_to_camera_info, make_transform_stamped
from .image_conversion import rgb_to_image_msg

REPO_ROOT = Path(__file__).resolve().parent.parent


def isolate_ros_environment(domain_id: int, log_dir: Path) -> None:
    """Keep this process's DDS traffic and logs apart from other tests (call before rclpy.init)."""
    os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_LOG_DIR"] = str(log_dir)
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")


def create_probe_node(name: str):
    """An rclpy node in its own context (tests and benchmarks talk to the localizer through it)."""
    import rclpy

    context = rclpy.context.Context()
    rclpy.init(context=context)
    return rclpy.create_node(name, context=context)


def destroy_probe_node(node) -> None:
    """Undo create_probe_node: the node, then its context."""
    import rclpy

    context = node.context
    node.destroy_node()
    rclpy.shutdown(context=context)


def start_node(ros_args: list[str], log_path: Path, extra_env: dict | None = None) -> subprocess.Popen:
    """The localizer node as a subprocess with this process's ROS environment."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "1")
    env.update(extra_env or {})
    log = open(log_path, "wb")  # noqa: SIM115 - closed by stop_node via the Popen
    return subprocess.Popen(
        [sys.executable, "-m", "scenesqueezer_ros.localizer_node", "--ros-args", *ros_args],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO_ROOT))


def stop_node(process: subprocess.Popen, timeout: float = 10.0) -> None:
    # SIGINT, not SIGTERM: pycolmap's glog handler dumps a stack trace on SIGTERM.
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def spin_until(node, condition: Callable[[], bool], timeout: float) -> bool:
    """Spin ``node`` (in its own context) until ``condition()`` holds; False after ``timeout`` seconds."""
    import rclpy

    executor = rclpy.executors.SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            executor.spin_once(timeout_sec=0.05)
        return True
    finally:
        executor.remove_node(node)
        executor.shutdown()  # before the context goes: a collected executor would touch it


class RobotProbe:
    """Plays a robot against a localizer node over DDS (tests and bench/bench_prior_dds.py).

    Publishes each query frame's CameraInfo and image on ``/cam/*`` (stamps 1001, 1002, ... s) and,
    with odometry, the base's pose in an odometry frame on /tf; the camera sits on the base
    (identity extrinsics, latched on /tf_static). Collects the node's results by stamp second, and
    its diagnostics; calls its services.
    """

    NODE = "/scenesqueezer_localizer"
    CAMERA_FRAME = "camera_optical"

    def __init__(self, node, queries, log_path: Path, odom_from_world=None) -> None:
        """``queries``: dataset frames; ``odom_from_world``: a Pose placing the odometry frame in the map
        (default: identity), used when ``send`` derives odometry from the frame's true pose."""
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseWithCovarianceStamped
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image
        from tf2_msgs.msg import TFMessage

        from scenesqueezer.msg import LocalizationResult

        self.node, self.queries, self.log_path = node, queries, log_path
        self.odom_from_world = odom_from_world if odom_from_world is not None else Pose.identity()
        self.executor = rclpy.executors.SingleThreadedExecutor(context=node.context)
        self.executor.add_node(node)
        self.results: dict[int, object] = {}
        self.diagnostics: list = []
        node.create_subscription(LocalizationResult, f"{self.NODE}/result",
                                 lambda m: self.results.__setitem__(m.header.stamp.sec, m), 50)
        node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = node.create_publisher(Image, "/cam/image", reliable)
        self.info_pub = node.create_publisher(CameraInfo, "/cam/camera_info", reliable)
        self.tf_pub = node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        static = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.tf_static_pub = node.create_publisher(TFMessage, "/tf_static", static)
        self.initial_pose_pub = node.create_publisher(PoseWithCovarianceStamped, "/initialpose", 10)
        self.tf_static_pub.publish(TFMessage(transforms=[make_transform_stamped(
            Pose.identity(), "base_link", self.CAMERA_FRAME, node.get_clock().now().to_msg())]))
        self.images = [rgb_to_image_msg(read_image(f.image_path), "rgb8") for f in queries]
        self._tf_message = TFMessage  # imported with rclpy, when a probe is made
        self.stamp = 1000

    def spin_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not condition():
            self.executor.spin_once(timeout_sec=0.05)
        return condition()

    def log(self) -> str:
        return self.log_path.read_text()

    def send(self, index: int, odometry: bool = True, odom_from_base=None) -> int:
        """Publish query ``index`` and, with ``odometry``, the base's pose on /tf (``odom_from_base``,
        default: exact, from the frame's true pose); returns its stamp in seconds."""
        self.stamp += 1
        frame = self.queries[index]
        stamp = self.node.get_clock().now().to_msg()
        stamp.sec, stamp.nanosec = self.stamp, 0
        if odometry:
            if odom_from_base is None:
                odom_from_base = self.odom_from_world @ frame.cam_from_world.inverse()
            self.tf_pub.publish(self._tf_message(transforms=[make_transform_stamped(odom_from_base, "odom", "base_link",
                                                                                   stamp)]))
        info = camera_to_camera_info(frame.camera)
        image = self.images[index]
        image.header.stamp = info.header.stamp = stamp
        image.header.frame_id = info.header.frame_id = self.CAMERA_FRAME
        self.info_pub.publish(info)
        self.spin_until(lambda: False, 0.15)  # TF and CameraInfo before the image
        self.image_pub.publish(image)
        return self.stamp

    def localize(self, index: int, odometry: bool = True, odom_from_base=None, timeout: float = 120.0):
        """Send query ``index`` and wait for its result."""
        stamp = self.send(index, odometry, odom_from_base)
        assert self.spin_until(lambda: stamp in self.results, timeout), self.log()
        return self.results[stamp]

    def call(self, service_type, name: str, request, send_frame: int | None = None, timeout: float = 120.0):
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

    def configure(self, **values) -> None:
        """Set node parameters and reload the map, which applies them."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter
        from std_srvs.srv import Trigger

        request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        response = self.call(SetParameters, f"{self.NODE}/set_parameters", request)
        assert all(r.successful for r in response.results), [r.reason for r in response.results]
        assert self.call(Trigger, f"{self.NODE}/reload_map", Trigger.Request()).success

    def diagnostic_values(self, until: Callable[[dict[str, str]], bool] = lambda values: True) -> dict[str, str]:
        """The newest diagnostics values once they satisfy ``until`` (10 s at most). Messages published
        before the last result may still wait in the subscription's queue, so the first one received
        is not necessarily fresh; the counters only grow, so waiting for the expected value is exact."""
        def latest() -> dict[str, str]:
            return {kv.key: kv.value for kv in self.diagnostics[-1].status[0].values} if self.diagnostics else {}

        self.spin_until(lambda: bool(latest()) and until(latest()), 10.0)
        assert self.diagnostics, "no diagnostics received"
        return latest()

    def send_initial_pose(self, cam_from_world) -> None:
        """/initialpose for the base (= the camera here), as RViz's 2D Pose Estimate sends it."""
        from geometry_msgs.msg import PoseWithCovarianceStamped

        msg = PoseWithCovarianceStamped()
        msg.header.frame_id = "map"
        msg.pose.pose = cam_from_world_to_pose_msg(cam_from_world)
        self.initial_pose_pub.publish(msg)
        self.spin_until(lambda: False, 0.5)
