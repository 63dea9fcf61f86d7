"""ROS 2 localizer node: a thin adapter between camera topics and the core ``Localizer``.

Threads: the executor runs callbacks that only store the newest frame in a one-slot mailbox
(a frame still waiting when a newer one arrives is dropped and counted); one worker thread takes
the newest frame, localizes it and publishes. Services run in their own callback group on a
second executor thread, so a map reload never stalls the image callbacks.

Lifecycle (a managed node, as nav2 brings nodes up): configure reads the parameters, creates the
publishers and services and loads the map; activate subscribes to the camera topics and starts the
worker; deactivate and cleanup undo them; shutdown undoes whatever is up. With the parameter
`autostart` (default true, like nav2_lifecycle_manager's) the node configures and activates itself
at start-up, so that `ros2 launch` brings it up in one step; false leaves it unconfigured for a
lifecycle manager (lifecycle_msgs services ~/change_state, ~/get_state).

Run:  scenesqueezer_localizer_node --ros-args --params-file config/localizer.yaml -p map_path:=map.ssq
  or  python -m scenesqueezer_ros.localizer_node --ros-args ...
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_srvs.srv import Trigger

from scenesqueezer.msg import LocalizationResult as LocalizationResultMsg
from scenesqueezer_core.errors import ConfigError, ImageError, SceneSqueezerError
from scenesqueezer_core.localization import FailureCode, LocalizationResult, Localizer

from .conversions import (
    cam_from_world_to_pose_msg,
    camera_info_to_camera,
    covariance_to_ros,
    make_transform_stamped,
    points_to_cloud,
)
from .image_conversion import compressed_msg_to_rgb, image_msg_to_rgb
from .parameters import PARAMETER_SPECS, LocalizerParameters, declare_parameters, read_parameters
from .tf_support import TransformBroadcaster, TransformLookup

NODE_NAME = "scenesqueezer_localizer"
# diagnostics message until the first CameraInfo (scenesqueezer replay waits for it to change)
WAITING_FOR_CAMERA_INFO = "waiting for CameraInfo"
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


@dataclass
class FrameJob:
    """One frame to localize; ``done`` is set when a service waits for its result."""

    image_msg: Image | CompressedImage
    camera_info: CameraInfo | None
    done: threading.Event | None = None
    result: object | None = None


class FrameMailbox:
    """One slot: put() replaces a waiting job (counting it as dropped); take() waits for one."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._job: FrameJob | None = None
        self._closed = False
        self.dropped = 0

    def put(self, job: FrameJob) -> None:
        with self._condition:
            if self._job is not None:
                self.dropped += 1
                if self._job.done is not None:  # a service waits on it: keep its promise
                    self._job.result = None
                    self._job.done.set()
            self._job = job
            self._condition.notify()

    def take(self, timeout: float) -> FrameJob | None:
        with self._condition:
            if self._job is None and not self._closed:
                self._condition.wait(timeout)
            job, self._job = self._job, None
            return job

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()


@dataclass
class Counters:
    received: int = 0
    processed: int = 0
    localized: int = 0
    failed: int = 0
    errors: int = 0
    last_total_latency_s: float = 0.0
    last_failure_reason: str = ""
    last_success_time: float = 0.0


class LocalizerNode(LifecycleNode):
    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._localizer = None
        self._localizer_lock = threading.Lock()
        self._map_error = "no map loaded yet"
        self._reload_error = ""  # last failed reload while an older map stays in use
        self._last_stamp_ns: int | None = None
        self._camera_info: CameraInfo | None = None
        self._camera_cache: tuple[tuple, object] | None = None
        self._last_job: FrameJob | None = None
        self._mailbox = FrameMailbox()
        self._counters = Counters()
        self._counters_lock = threading.Lock()
        self._diag_window = (time.monotonic(), 0, 0, 0)
        self._tf_broadcaster = None
        self._tf_lookup = None
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        # what configure / activate created, destroyed again by cleanup / deactivate
        self._configured_entities: set = set()
        self._active_entities: set = set()
        # Declared here, not in configure, so that `ros2 param` works in every state; an invalid
        # override raises ConfigError (the process exits 2 naming it). After the state above: rclpy
        # destroys a node whose __init__ raised, and destroy_node reads that state.
        self.params: LocalizerParameters = declare_parameters(self)

        if self.params.autostart:
            for name, transition in (("configure", self.trigger_configure), ("activate", self.trigger_activate)):
                if transition() != TransitionCallbackReturn.SUCCESS:
                    raise SceneSqueezerError(f"the node could not {name} itself (autostart); see the error "
                                             "logged above")

    # --- lifecycle ----------------------------------------------------------------------------

    def _entities(self) -> set:
        return {*self.publishers, *self.subscriptions, *self.services, *self.timers, *self.clients}

    def _destroy(self, entities: set) -> None:
        from rclpy.client import Client
        from rclpy.publisher import Publisher
        from rclpy.service import Service
        from rclpy.subscription import Subscription
        from rclpy.timer import Timer

        destroyers = ((Publisher, self.destroy_publisher), (Subscription, self.destroy_subscription),
                      (Service, self.destroy_service), (Timer, self.destroy_timer), (Client, self.destroy_client))
        for entity in entities:
            for kind, destroy in destroyers:
                if isinstance(entity, kind):
                    destroy(entity)
                    break
        entities.clear()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.params = read_parameters(self)
        except ConfigError as error:
            self.get_logger().error(f"cannot configure: {error}")
            return TransitionCallbackReturn.FAILURE
        before = self._entities()
        self._pose_pub = self.create_publisher(PoseStamped, "~/pose", 10)
        self._pose_cov_pub = self.create_publisher(PoseWithCovarianceStamped, "~/pose_with_covariance", 10)
        self._result_pub = self.create_publisher(LocalizationResultMsg, "~/result", 10)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._cloud_pub = self.create_publisher(PointCloud2, "~/map_points", LATCHED_QOS)
        if self.params.publish_tf:
            self._tf_broadcaster = TransformBroadcaster(self)
            if self.params.tf_mode == "map_to_odom":
                self._tf_lookup = TransformLookup(self)
        service_group = MutuallyExclusiveCallbackGroup()
        self.create_service(Trigger, "~/reload_map", self._on_reload_map, callback_group=service_group)
        self.create_service(Trigger, "~/localize_now", self._on_localize_now, callback_group=service_group)
        self.create_timer(1.0, self._publish_diagnostics)
        self._configured_entities = self._entities() - before
        # A map that fails to load does not fail the transition: the node stays up, reports the
        # error on /diagnostics and loads the map on ~/reload_map (the documented recovery path).
        self._load_map()
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        before = self._entities()
        qos = self._image_qos()
        if self.params.image_transport == "compressed":
            topic = self.params.image_topic.rstrip("/") + "/compressed"
            self.create_subscription(CompressedImage, topic, self._on_image, qos)
        else:
            self.create_subscription(Image, self.params.image_topic, self._on_image, qos)
        self.create_subscription(CameraInfo, self.params.camera_info_topic, self._on_camera_info, qos)
        self._active_entities = self._entities() - before
        self._mailbox = FrameMailbox()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="scenesqueezer-localizer", daemon=True)
        self._worker.start()
        # The latched cloud goes out once the node is active (clients take it as "ready": the
        # camera subscriptions above exist by then).
        with self._localizer_lock:
            localizer = self._localizer
        if localizer is not None:
            self._publish_cloud(localizer)
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._destroy(self._active_entities)
        self._stop_worker()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._destroy(self._configured_entities)
        self._tf_broadcaster = self._tf_lookup = None
        with self._localizer_lock:
            self._localizer = None
        self._map_error, self._reload_error = "no map loaded yet", ""
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if state.label == "active":
            self.on_deactivate(state)
        if state.label in ("active", "inactive"):
            self.on_cleanup(state)
        return super().on_shutdown(state)

    def _stop_worker(self) -> None:
        self._stop.set()
        self._mailbox.close()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
            self._worker = None

    # --- callbacks: never block ---------------------------------------------------------------

    def _image_qos(self) -> QoSProfile:
        if self.params.image_qos == "sensor_data":
            return qos_profile_sensor_data
        # Depth 1: only the newest frame matters, and a deep reliable queue of multi-MB frames
        # would only add latency.
        return QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)

    def _on_image(self, msg) -> None:
        with self._counters_lock:
            self._counters.received += 1
        self._mailbox.put(FrameJob(msg, self._camera_info))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    # --- map ----------------------------------------------------------------------------------

    def _load_map(self) -> tuple[bool, str]:
        """Load map_path with the current parameters; keeps the old map when loading fails."""
        self.params = read_parameters(self)
        path = self.params.map_path
        if not path:
            message = ("parameter map_path is empty; set it (ros2 param set <node> map_path /path/map) "
                       "and call ~/reload_map")
            if self._localizer is None:
                self._map_error = message
            else:
                self._reload_error = message
            self.get_logger().error(message)
            return False, message
        try:
            localizer = self._load_localizer(path)
        except (SceneSqueezerError, OSError, ImportError, ValueError) as error:
            message = f"could not load map {path!r}: {error}"
            if self._localizer is None:
                self._map_error = message
            else:
                message += "; still localizing with the previously loaded map"
                self._reload_error = message
            self.get_logger().error(message)
            return False, message
        with self._localizer_lock:
            self._localizer = localizer
            self._map_error = ""
            self._reload_error = ""
        if self._worker is not None:  # active; on_activate publishes it otherwise
            self._publish_cloud(localizer)
        message = f"loaded map {path} ({len(localizer.map_points)} points)"
        self.get_logger().info(message)
        return True, message

    def _publish_cloud(self, localizer) -> None:
        if self.params.publish_point_cloud:
            self._cloud_pub.publish(points_to_cloud(localizer.map_points, localizer.map_colors,
                                                    self.params.map_frame, self.get_clock().now().to_msg()))

    def _load_localizer(self, path: str):
        """Load the map from a private snapshot of ``path``.

        Map arrays are memory-mapped: if the user's file were overwritten in place (``cp new.ssmap
        map.ssmap``) while in use, the node would read the new bytes under the old checksums, or
        die of SIGBUS on pages past a shorter file's end. The snapshot is unlinked at once; the
        mapping keeps its inode alive until the map is replaced.
        """
        conf, device = self.params.localizer_conf(), self.params.device
        source = Path(path)
        if not source.is_file():  # the core names the problem (missing, a directory)
            return Localizer.from_file(source, conf=conf, device=device)
        fd, name = tempfile.mkstemp(prefix=f"scenesqueezer-{source.stem}-", suffix=source.suffix)
        snapshot = Path(name)
        try:
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                shutil.copyfileobj(src, out)
            return Localizer.from_file(snapshot, conf=conf, device=device)
        except SceneSqueezerError as error:
            raise type(error)(str(error).replace(str(snapshot), str(source))) from error
        finally:
            snapshot.unlink(missing_ok=True)

    def _on_reload_map(self, request, response):
        response.success, response.message = self._load_map()
        return response

    def _on_localize_now(self, request, response):
        job = self._last_job
        if self._worker is None:
            response.success, response.message = False, "the node is not active; activate it first"
            return response
        if job is None:
            response.success, response.message = False, "no frame received yet"
            return response
        waiting = FrameJob(job.image_msg, job.camera_info, threading.Event())
        self._mailbox.put(waiting)
        if not waiting.done.wait(120.0):
            response.success, response.message = False, "localization did not finish within 120 s"
        elif waiting.result is None:
            response.success, response.message = False, "superseded by a newer frame before it ran"
        else:
            result = waiting.result
            response.success = bool(result.success)
            response.message = (f"localized with {result.num_inliers} inliers" if result.success
                                else result.failure_reason)
        return response

    # --- worker -------------------------------------------------------------------------------

    def _work(self) -> None:
        next_allowed = 0.0
        while not self._stop.is_set():
            if self.params.max_rate_hz > 0:
                wait = next_allowed - time.monotonic()
                if wait > 0:
                    self._stop.wait(wait)  # frames arriving meanwhile replace each other
            job = self._mailbox.take(timeout=0.2)
            if job is None:
                continue
            if self.params.max_rate_hz > 0:
                next_allowed = time.monotonic() + 1.0 / self.params.max_rate_hz
            try:
                result = self._process(job)
            except Exception as error:  # noqa: BLE001 - the worker must outlive any bad frame
                self.get_logger().error(f"localization crashed on a frame: {error!r}")
                with self._counters_lock:
                    self._counters.errors += 1
                result = self._publish_internal_error(job, error)
            if job.done is not None:
                job.result = result
                job.done.set()

    def _process(self, job: FrameJob):
        self._last_job = FrameJob(job.image_msg, job.camera_info)
        header = job.image_msg.header
        camera_frame = self.params.camera_frame or header.frame_id
        with self._localizer_lock:
            localizer = self._localizer
        result = None
        backwards = self._stamp_went_backwards(header) if job.done is None else ""
        if backwards:
            result = LocalizationResult(False).fail(FailureCode.STAMP_BACKWARDS, backwards)
        elif localizer is None:
            result = LocalizationResult(False).fail(FailureCode.NO_MAP, self._map_error or "no map loaded")
        elif job.camera_info is None:
            result = LocalizationResult(False).fail(
                FailureCode.NO_CAMERA_INFO, f"no CameraInfo received on {self.params.camera_info_topic!r} yet")
        if result is None:
            try:
                camera = self._camera_for(job.camera_info)
                if isinstance(job.image_msg, CompressedImage):
                    rgb = compressed_msg_to_rgb(job.image_msg)
                else:
                    rgb = image_msg_to_rgb(job.image_msg)
                if (rgb.shape[1], rgb.shape[0]) != (camera.width, camera.height):
                    raise ImageError(
                        f"image is {rgb.shape[1]}x{rgb.shape[0]} but CameraInfo says "
                        f"{camera.width}x{camera.height}; publish the CameraInfo of this image stream")
                result = localizer.localize(rgb, camera)
            except ImageError as error:
                result = LocalizationResult(False).fail(FailureCode.BAD_IMAGE, str(error))
            except SceneSqueezerError as error:
                result = LocalizationResult(False).fail(FailureCode.BAD_INPUT, str(error))
        self._publish(result, header, camera_frame)
        return result

    def _publish_internal_error(self, job: FrameJob, error: Exception):
        """A failure result for a frame whose processing raised: subscribers still hear of it."""
        result = LocalizationResult(False).fail(FailureCode.INTERNAL_ERROR, f"internal error, frame skipped: {error!r}")
        try:
            header = job.image_msg.header
            self._publish(result, header, self.params.camera_frame or header.frame_id)
        except Exception as publish_error:  # noqa: BLE001 - nothing more can be done for this frame
            self.get_logger().error(f"could not publish the failure result: {publish_error!r}")
        return result

    def _stamp_went_backwards(self, header) -> str:
        """A reason to skip the frame when its stamp is older than the previous frame's, else "".

        The reference follows every frame, so after a clock reset (a bag loop) only the first
        frame is skipped; TF and pose consumers would reject out-of-order data anyway.
        """
        stamp_ns = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
        previous, self._last_stamp_ns = self._last_stamp_ns, stamp_ns
        if previous is not None and stamp_ns < previous:
            return (f"image stamp went backwards by {(previous - stamp_ns) / 1e9:.3f} s (out-of-order "
                    "delivery or a clock reset); frame skipped")
        return ""

    def _camera_for(self, info: CameraInfo):
        key = (info.width, info.height, tuple(info.k), tuple(info.d), info.distortion_model,
               info.binning_x, info.binning_y, info.roi.x_offset, info.roi.y_offset,
               info.roi.width, info.roi.height)
        if self._camera_cache is None or self._camera_cache[0] != key:
            self._camera_cache = (key, camera_info_to_camera(info))
        return self._camera_cache[1]

    # --- outputs ------------------------------------------------------------------------------

    def _publish(self, result, header, camera_frame: str) -> None:
        params = self.params
        msg = LocalizationResultMsg()
        msg.header.stamp = header.stamp
        msg.header.frame_id = params.map_frame
        msg.success = bool(result.success)
        msg.failure_code = int(result.failure_code)
        msg.failure_reason = result.failure_reason or ""
        msg.camera_frame_id = camera_frame
        msg.num_inliers = int(result.num_inliers)
        msg.num_correspondences = int(result.num_correspondences)
        msg.inlier_ratio = float(result.inlier_ratio)
        msg.median_reprojection_error_px = float(result.median_reprojection_error_px)
        msg.occluded_inlier_share = float(result.occluded_inlier_share)
        msg.retrieved_cluster_ids = [int(i) for i in result.candidate_ids]
        timings = result.timings or {}
        for stage in ("extract", "retrieve", "match", "pnp", "total"):
            setattr(msg.latency, stage, float(timings.get(stage, 0.0)))
        valid = bool(result.success) and result.cam_from_world is not None
        if valid:
            msg.pose.pose = cam_from_world_to_pose_msg(result.cam_from_world)
            if result.covariance is not None:
                msg.pose.covariance = covariance_to_ros(result.cam_from_world, result.covariance).tolist()
        with self._counters_lock:
            counters = self._counters
            counters.processed += 1
            counters.last_total_latency_s = msg.latency.total
            if valid:
                counters.localized += 1
                counters.last_success_time = time.monotonic()
            else:
                counters.failed += 1
                counters.last_failure_reason = msg.failure_reason
        # The result goes out last: a subscriber that sees it knows the pose (if any) was sent.
        if valid:
            pose = PoseStamped()
            pose.header = msg.header
            pose.pose = msg.pose.pose
            self._pose_pub.publish(pose)
            pose_cov = PoseWithCovarianceStamped()
            pose_cov.header = msg.header
            pose_cov.pose = msg.pose
            self._pose_cov_pub.publish(pose_cov)
            if self._tf_broadcaster is not None and camera_frame:
                self._publish_tf(result.cam_from_world.inverse(), header.stamp, camera_frame)
        self._result_pub.publish(msg)

    def _publish_tf(self, map_from_camera, stamp, camera_frame: str) -> None:
        params = self.params
        if params.tf_mode == "map_to_odom":
            if not params.odom_frame:
                self.get_logger().warning("tf_mode map_to_odom needs odom_frame; not publishing TF",
                                          throttle_duration_sec=10.0)
                return
            odom_from_camera = self._tf_lookup.lookup(params.odom_frame, camera_frame, stamp)
            if odom_from_camera is None:
                self.get_logger().warning(
                    f"no TF from {params.odom_frame} to {camera_frame}; not publishing map->odom",
                    throttle_duration_sec=10.0)
                return
            transform = make_transform_stamped(map_from_camera @ odom_from_camera.inverse(),
                                               params.map_frame, params.odom_frame, stamp)
        else:
            transform = make_transform_stamped(map_from_camera, params.map_frame, camera_frame, stamp)
        self._tf_broadcaster.send(transform)

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        with self._counters_lock:
            c = self._counters
            t0, received0, processed0, localized0 = self._diag_window
            elapsed = max(now - t0, 1e-6)
            rates = ((c.received - received0) / elapsed, (c.processed - processed0) / elapsed,
                     (c.localized - localized0) / elapsed)
            self._diag_window = (now, c.received, c.processed, c.localized)
            snapshot = Counters(**{k: getattr(c, k) for k in Counters.__dataclass_fields__})
        status = DiagnosticStatus(name=f"{self.get_name()}: localization", hardware_id=self.params.map_path)
        if self._localizer is None:
            status.level, status.message = DiagnosticStatus.ERROR, f"no map: {self._map_error}"
        elif self._reload_error:
            status.level, status.message = DiagnosticStatus.ERROR, f"map reload failed: {self._reload_error}"
        elif self._camera_info is None:
            status.level, status.message = DiagnosticStatus.WARN, WAITING_FOR_CAMERA_INFO
        elif snapshot.processed == 0:
            status.level, status.message = DiagnosticStatus.OK, "map loaded, waiting for images"
        elif snapshot.failed and (snapshot.last_success_time == 0.0 or now - snapshot.last_success_time > 10.0):
            status.level = DiagnosticStatus.WARN
            status.message = f"not localizing: {snapshot.last_failure_reason}"
        else:
            status.level, status.message = DiagnosticStatus.OK, "localizing"
        values = {
            "map_path": self.params.map_path,
            "frames_received": snapshot.received,
            "frames_processed": snapshot.processed,
            "frames_dropped": self._mailbox.dropped,
            "localized": snapshot.localized,
            "failed": snapshot.failed,
            "errors": snapshot.errors,
            "receive_rate_hz": f"{rates[0]:.2f}",
            "process_rate_hz": f"{rates[1]:.2f}",
            "localize_rate_hz": f"{rates[2]:.2f}",
            "last_latency_s": f"{snapshot.last_total_latency_s:.3f}",
            "last_failure_reason": snapshot.last_failure_reason,
        }
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(array)

    def destroy_node(self) -> None:
        self._stop_worker()
        super().destroy_node()


def usage() -> str:
    """`scenesqueezer_localizer_node --help`: how to run it and every parameter with its default."""
    lines = [__doc__.strip(), "", "Parameters (-p name:=value, or --params-file config/localizer.yaml):"]
    for spec in PARAMETER_SPECS:
        default = ('"' + spec.default + '"') if isinstance(spec.default, str) else str(spec.default).lower()
        lines.append(f"  {spec.name} (default: {default}): {spec.description}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv if argv is None else argv
    ros_args_at = argv.index("--ros-args") if "--ros-args" in argv else len(argv)
    if {"-h", "--help"} & set(argv[1:ros_args_at]):
        print(usage())
        return 0
    rclpy.init(args=argv)
    node = None
    try:
        node = LocalizerNode()
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except SceneSqueezerError as error:
        print(f"scenesqueezer_localizer_node: {error}", file=sys.stderr)
        return 2
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
