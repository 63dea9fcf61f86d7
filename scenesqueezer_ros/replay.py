"""Replay a query bag into the localizer node over DDS and evaluate what it publishes.

``replay_over_dds`` starts the node as a subprocess with the map (on its own ROS_DOMAIN_ID,
discovery limited to localhost) or connects to a running one, publishes the bag's CameraInfo and
image messages byte for byte (their original stamps, reliable QoS so that multi-MB frames arrive
whole), records every ``~/result`` and ``~/pose``, matches them to the bag's ground truth by stamp
and writes the same report as ``scenesqueezer replay --offline`` (``scenesqueezer_core.bag``).

Pacing: ``as_fast_as_node`` (what the CLI and replay_eval.launch.py do unless given a rate) sends
the next frame only once the node has answered the previous one, so every frame is evaluated;
``rate`` scales the bag's own timing like ``ros2 bag play --rate`` (frames the node is too busy for
are dropped by its one-slot mailbox and count as failures). Before the first frame the replay waits
until the node has its map, both publishers are matched and the node has the first CameraInfo.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scenesqueezer_core.bag import messages as bag_messages
from scenesqueezer_core.localization import DEFAULT_LOCALIZER_CONF, FailureCode, localizer_conf
from scenesqueezer_core.replay.offline import ReplayOutcome, query_scan, replay_info
from scenesqueezer_core.bag.read import iter_image_messages
from scenesqueezer_core.replay.report import QueryRecord, write_report
from scenesqueezer_core.errors import ConfigError, DatasetError, SceneSqueezerError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_NODE_NAME = "scenesqueezer_localizer"
# Pause between a frame's CameraInfo and its image: the two travel on different topics, and the node
# pairs each image with the latest CameraInfo it has received.
INFO_TO_IMAGE_DELAY_S = 0.05


class ReplayError(SceneSqueezerError):
    """The node could not be started or reached, or stopped answering during a replay."""


def default_domain_id() -> int:
    """A ROS_DOMAIN_ID for a private node: derived from the process id, inside the portable 1..101."""
    return 1 + os.getpid() % 101


def node_command(map_path: Path, node_name: str, image_topic: str, image_type: str, camera_info_topic: str,
                 conf: dict[str, Any], device: str) -> list[str]:
    """The localizer node's command line for a replay (the configuration the offline mode uses)."""
    transport = "raw"
    if image_type == bag_messages.COMPRESSED_IMAGE_TYPE:
        if not image_topic.endswith("/compressed"):
            raise ConfigError(f"compressed image topic {image_topic} does not end in /compressed; the node "
                              "subscribes <image_topic>/compressed")
        image_topic, transport = image_topic[: -len("/compressed")], "compressed"
    params = {"map_path": str(map_path), "device": device, "image_topic": image_topic,
              "camera_info_topic": camera_info_topic, "image_transport": transport, "image_qos": "reliable",
              "max_rate_hz": 0.0, "publish_point_cloud": False,
              # the node's defaults are the core's (one source), so only the changed options travel
              **{key: value for key, value in conf.items() if value != DEFAULT_LOCALIZER_CONF[key]}}
    args = [sys.executable, "-m", "scenesqueezer_ros.localizer_node", "--ros-args", "-r", f"__node:={node_name}"]
    for key, value in params.items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        args += ["-p", f"{key}:={text}"]
    return args


def replay_over_dds(bag: str | os.PathLike, map_path: str | os.PathLike | None, output: str | os.PathLike,
                    rate: float | None = 1.0, as_fast_as_node: bool = False, connect: bool = False,
                    node_name: str = DEFAULT_NODE_NAME, conf: dict[str, Any] | None = None, device: str = "auto",
                    image_topic: str | None = None, camera_info_topic: str | None = None,
                    pose_topic: str | None = None, tf_frames: tuple[str, str] | None = None,
                    domain_id: int | None = None, startup_timeout_s: float = 180.0,
                    result_timeout_s: float = 120.0, progress: bool = True) -> ReplayOutcome:
    """Replay ``bag`` through the node and write the report to ``output``; returns metrics and records.

    ``connect``: use a node that is already running (same ROS_DOMAIN_ID as this process, named
    ``node_name``, subscribed to the bag's topics); otherwise a private node is started with
    ``map_path`` and stopped afterwards.
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    if not as_fast_as_node and not (rate and rate > 0):
        raise ConfigError(f"rate must be > 0 (got {rate}); or pass as_fast_as_node (--as-fast-as-node)")
    map_path = Path(map_path) if map_path is not None else None
    if not connect and (map_path is None or not map_path.is_file()):
        raise DatasetError(f"map file {map_path} does not exist; build one with `scenesqueezer build-map`")
    scan = query_scan(bag, image_topic, camera_info_topic, pose_topic, tf_frames)
    conf = localizer_conf(conf)

    process = None
    log_file = None
    if not connect:
        os.environ["ROS_DOMAIN_ID"] = str(domain_id if domain_id is not None else default_domain_id())
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="scenesqueezer_replay_ros_log_"))
        log_file = Path(tempfile.mkstemp(prefix="scenesqueezer_replay_node_", suffix=".log")[1])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        with open(log_file, "wb") as log:
            process = subprocess.Popen(
                node_command(map_path.resolve(), node_name, scan.topics.image, scan.topics.image_type,
                             scan.topics.camera_info, conf, device),
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO_ROOT))

    context = rclpy.context.Context()
    rclpy.init(context=context, args=[])
    session = None
    try:
        session = _ReplaySession(context, node_name, scan, process, log_file)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(session.node)
        session.executor = executor
        session.wait_until_ready(startup_timeout_s)
        session.play(bag, rate, as_fast_as_node, result_timeout_s, progress)
        records, extra = session.records()
    finally:
        if session is not None:
            session.node.destroy_node()
        rclpy.try_shutdown(context=context)
        if process is not None:
            _stop(process)

    map_bytes = map_path.stat().st_size if map_path is not None and map_path.is_file() else 0
    info = replay_info("dds", bag, map_path, scan, conf, rate=None if as_fast_as_node else rate,
                       as_fast_as_node=as_fast_as_node, node=node_name, connect=connect,
                       ros_domain_id=os.environ.get("ROS_DOMAIN_ID", "0"), **extra)
    if log_file is not None:
        log_file.unlink(missing_ok=True)
    metrics = write_report(records, output, map_bytes, info, title="SceneSqueezer replay over DDS")
    return ReplayOutcome(Path(output), metrics, records, info)


class _ReplaySession:
    def __init__(self, context, node_name: str, scan, process, log_file: Path | None) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseStamped
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        from scenesqueezer.msg import LocalizationResult

        self.scan = scan
        self.process = process
        self.log_file = log_file
        self.node_name = node_name
        self.executor = None
        self.node = rclpy_node(context)
        reliable = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
        image_class = CompressedImage if scan.topics.image_type == bag_messages.COMPRESSED_IMAGE_TYPE else Image
        self.image_pub = self.node.create_publisher(image_class, scan.topics.image, reliable)
        self.info_pub = self.node.create_publisher(CameraInfo, scan.topics.camera_info, reliable)
        self.results: dict[int, tuple[Any, float]] = {}
        self.poses: dict[int, Any] = {}
        self.sent: dict[int, float] = {}
        self.status = None
        self.status_count = 0
        base = "/" + node_name.strip("/")
        self.node.create_subscription(LocalizationResult, f"{base}/result", self._on_result, reliable)
        self.node.create_subscription(PoseStamped, f"{base}/pose", self._on_pose, reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, reliable)

    def _on_result(self, msg) -> None:
        self.results[bag_messages.stamp_to_ns(msg.header.stamp)] = (msg, time.monotonic())

    def _on_pose(self, msg) -> None:
        self.poses[bag_messages.stamp_to_ns(msg.header.stamp)] = msg

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name == f"{self.node_name}: localization":
                self.status = status
                self.status_count += 1

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.executor.spin_once(timeout_sec=min(left, 0.02))

    def spin_until(self, condition, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            self._check_process()
            self.executor.spin_once(timeout_sec=0.05)
        return True

    def _check_process(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise ReplayError(f"the localizer node exited with status {self.process.returncode}:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        if self.log_file is None or not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-25:])

    def wait_until_ready(self, timeout: float) -> None:
        """The node publishes diagnostics once it spins (after loading its map) and has subscribed our
        topics: both publishers must be matched before the first frame goes out."""
        from diagnostic_msgs.msg import DiagnosticStatus

        ready = self.spin_until(lambda: self.status is not None and self.image_pub.get_subscription_count() > 0
                                and self.info_pub.get_subscription_count() > 0, timeout)
        if not ready:
            where = (f"node log:\n{self._log_tail()}" if self.process is not None else
                     f"is `{self.node_name}` running on ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID', '0')} and "
                     f"subscribed to {self.scan.topics.image} and {self.scan.topics.camera_info}?")
            raise ReplayError(f"the localizer node did not become ready within {timeout:.0f} s; {where}")
        if self.status.level == DiagnosticStatus.ERROR:
            raise ReplayError(f"the localizer node has no usable map: {self.status.message}")

    def prime_camera_info(self, raw_info, timeout: float = 15.0) -> None:
        """Publish the first CameraInfo and wait until the node reports that it has one.

        Camera info and images travel on different topics: right after the subscriptions match, the
        first image can overtake its CameraInfo, and the node would fail it for want of one.
        """
        from .localizer_node import WAITING_FOR_CAMERA_INFO

        published = self.status_count
        self.info_pub.publish(raw_info)
        if not self.spin_until(lambda: self.status_count > published
                               and self.status.message != WAITING_FOR_CAMERA_INFO, timeout):
            raise ReplayError(f"the localizer node did not report a CameraInfo within {timeout:.0f} s of one "
                              f"published on {self.scan.topics.camera_info}: is it subscribed to that topic?")

    def play(self, bag, rate: float | None, as_fast_as_node: bool, result_timeout: float, progress: bool) -> None:
        from tqdm import tqdm

        start_wall = None
        first_stamp = None
        stream = iter_image_messages(bag, self.scan, with_camera_info=True)
        bar = tqdm(total=len(self.scan.frames), desc="replay (DDS)", unit="img", disable=not progress or None)
        try:
            for frame, _, raw_image, raw_info in stream:
                if not self.sent and raw_info is not None:
                    self.prime_camera_info(raw_info)
                if as_fast_as_node:
                    if raw_info is not None:
                        self.info_pub.publish(raw_info)
                        self.spin_for(INFO_TO_IMAGE_DELAY_S)
                    self.sent[frame.stamp_ns] = time.monotonic()
                    self.image_pub.publish(raw_image)
                    if not self.spin_until(lambda: frame.stamp_ns in self.results, result_timeout):
                        raise ReplayError(f"no result for frame {frame.name} within {result_timeout:.0f} s; "
                                          f"node log:\n{self._log_tail()}")
                else:
                    if start_wall is None:
                        start_wall, first_stamp = time.monotonic(), frame.stamp_ns
                    due = start_wall + (frame.stamp_ns - first_stamp) / 1e9 / rate
                    self.spin_for(due - time.monotonic())
                    self._check_process()
                    if raw_info is not None:
                        self.info_pub.publish(raw_info)
                    self.sent[frame.stamp_ns] = time.monotonic()
                    self.image_pub.publish(raw_image)
                bar.update(1)
        finally:
            bar.close()
        self._drain(result_timeout)

    def _drain(self, timeout: float) -> None:
        """Wait for the outstanding results: until all arrived, or none arrived for a while."""
        deadline = time.monotonic() + timeout
        last_count, last_change = len(self.results), time.monotonic()
        while time.monotonic() < deadline and not all(s in self.results for s in self.sent):
            self.spin_for(0.1)
            self._check_process()
            if len(self.results) != last_count:
                last_count, last_change = len(self.results), time.monotonic()
            totals = [msg.latency.total for msg, _ in self.results.values()]
            quiet = max(10.0, 3.0 * max(totals, default=0.0))
            if time.monotonic() - last_change > quiet:
                break  # the node dropped the rest (one-slot mailbox): they count as failures
        self.spin_for(0.3)  # the ~/pose messages published right after the last result

    def records(self) -> tuple[list[QueryRecord], dict[str, Any]]:
        from .conversions import pose_msg_to_cam_from_world

        records = []
        for frame in self.scan.synced:
            entry = self.results.get(frame.stamp_ns)
            if entry is None:
                records.append(QueryRecord(frame.name, frame.stamp_ns, frame.cam_from_world, None,
                                           failure_reason="no result from the node (frame dropped or lost)",
                                           failure_code=FailureCode.NO_RESULT))
                continue
            msg, received = entry
            latency = msg.latency
            timings = {k: float(getattr(latency, k)) for k in ("extract", "retrieve", "match", "pnp", "total")}
            estimate = pose_msg_to_cam_from_world(msg.pose.pose) if msg.success else None
            sent = self.sent.get(frame.stamp_ns)
            records.append(QueryRecord(frame.name, frame.stamp_ns, frame.cam_from_world, estimate, timings,
                                       msg.failure_reason, int(msg.num_inliers),
                                       end_to_end_s=None if sent is None else received - sent,
                                       failure_code=FailureCode(msg.failure_code)))
        extra = {"frames_sent": len(self.sent), "results_received": len(self.results),
                 "poses_received": len(self.poses),
                 "results_without_frame": sorted(set(self.results) - set(self.sent))[:10]}
        return records, extra


def rclpy_node(context):
    import rclpy

    return rclpy.create_node(f"scenesqueezer_replay_{os.getpid()}", context=context)


def _stop(process: subprocess.Popen, timeout: float = 10.0) -> None:
    from .testing import stop_node

    stop_node(process, timeout)
