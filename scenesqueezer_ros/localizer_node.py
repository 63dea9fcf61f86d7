"""ROS 2 localizer node: a thin adapter between camera topics and the core ``Localizer``.

Threads: the executor runs callbacks that only store the newest frame in a one-slot mailbox
(a frame still waiting when a newer one arrives is dropped and counted). Two worker threads form
a pipeline: the extraction thread takes the newest frame, decodes it and extracts its features
(the core's ``Localizer.extract``) into a second one-slot mailbox; the registration thread takes
the newest extracted frame, retrieves, matches, solves the pose (``localize_extracted``) and
publishes. So frame n+1 is extracted while frame n is registered, and at most one frame waits in
each mailbox (newest-frame-only and bounded, as before). Services run in their own callback group
on a further executor thread, so a map reload never stalls the image callbacks.

Modes (parameter ``mode``): ``continuous`` localizes every frame; ``on_demand`` only the next frame
after a ``~/trigger_localization`` call (std_srvs/Trigger, answered with that frame's result);
``until_localized`` every frame until ``localized_poses_to_stop`` consecutive poses agree, then
only after a trigger. Frames not localized are counted, not decoded.

Odometry prior (core: scenesqueezer_core/localization/prior.py): with ``odom_frame`` set, each
frame's camera pose in the odometry frame comes from TF (odom -> base -> camera); the core
predicts the pose from the last accepted one and searches near it first. ``/initialpose``
(geometry_msgs/PoseWithCovarianceStamped of ``base_frame`` in the map frame) seeds the prediction.

Multi-camera rig (parameter ``cameras``, e.g. "front,left,right"): the node subscribes
``image_<i>`` / ``camera_info_<i>`` per camera, groups one frame per camera whose stamps lie within
``rig_stamp_tolerance_s``, takes each camera's extrinsics from TF (``base_frame`` -> the image's
frame_id) and publishes one pose of ``base_frame`` (core: scenesqueezer_core/localization/rig.py).
With ``odom_frame`` set the odometry prior tracks the base (TF odom -> base_frame): each camera
searches near its predicted pose first, as a single camera does.

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
from dataclasses import dataclass, field, replace
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
from scenesqueezer_core.localization import FailureCode, LocalizationResult, Localizer, OdometryTracker, SearchKind
from scenesqueezer_core.localization.localizer import ExtractedImage
from scenesqueezer_core.localization.rig import RigLocalizer
from scenesqueezer_core.types import Rig, RigCamera

from .conversions import (
    cam_from_world_to_pose_msg,
    camera_info_to_camera,
    covariance_to_ros,
    make_transform_stamped,
    points_to_cloud,
    pose_msg_to_cam_from_world,
)
from .image_conversion import compressed_msg_to_rgb, image_msg_to_rgb
from .parameters import PARAMETER_SPECS, LocalizerParameters, declare_parameters, read_parameters
from .tf_support import TransformBroadcaster, TransformLookup

NODE_NAME = "scenesqueezer_localizer"
# diagnostics message until the first CameraInfo (scenesqueezer replay waits for it to change)
WAITING_FOR_CAMERA_INFO = "waiting for CameraInfo"
TRIGGER_TIMEOUT_S = 60.0  # ~/trigger_localization waits this long for the next frame
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


@dataclass
class FrameJob:
    """One frame to localize; ``done`` is set when a service waits for its result."""

    image_msg: Image | CompressedImage  # a rig's: its first camera's (the header the result carries)
    camera_info: CameraInfo | None
    done: threading.Event | None = None
    result: object | None = None
    rig_images: list | None = None  # rig: one image message per camera, in the order of ``cameras``
    rig_infos: list | None = None  # ... and the CameraInfo of each (None where none arrived yet)
    # set by the extraction stage for the registration stage
    triggers: list = field(default_factory=list)  # TriggerWaits answered with this frame's result
    localizer: Localizer | None = None  # the one that extracted it: a reload in between must not mix maps
    extracted: ExtractedImage | None = None
    failure: LocalizationResult | None = None  # refused before extraction (no map, bad image, ...)


@dataclass
class TriggerWait:
    """A ~/trigger_localization call waiting for the next frame's result."""

    done: threading.Event = field(default_factory=threading.Event)
    result: object | None = None


class FrameMailbox:
    """One slot: put() replaces a waiting job (counting it as dropped); take() waits for one.

    A replaced job's trigger calls move to the job replacing it (they asked for the next result);
    a service waiting on the replaced job itself is answered with no result."""

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
                job.triggers = self._job.triggers + job.triggers
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
    localized_prior: int = 0  # poses from the prior-narrowed search
    localized_global: int = 0  # poses from the global search
    refused_by_prior: int = 0  # poses that contradicted the odometry prediction
    skipped_idle: int = 0  # frames not localized: mode on_demand / until_localized, no trigger
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
        # rig: each camera's newest image and CameraInfo until a complete group forms
        self._rig_lock = threading.Lock()
        self._rig_images: list = []
        self._rig_infos: list = []
        self._camera_cache: tuple[tuple, object] | None = None
        self._last_job: FrameJob | None = None
        self._tracker: OdometryTracker | None = None  # per map: poses are the map's
        # /initialpose waiting for the worker: (map_from_base, odom_from_base or None)
        self._pending_seed: tuple | None = None
        # modes: callers of ~/trigger_localization waiting for the next frame, and whether frames
        # are localized without a trigger (continuous, or until_localized before it has its poses)
        self._mode_lock = threading.Lock()
        self._triggers: list[TriggerWait] = []
        self._localizing = True
        self._mailbox = FrameMailbox()  # received frames -> extraction
        self._extracted = FrameMailbox()  # extracted frames -> registration
        self._counters = Counters()
        self._counters_lock = threading.Lock()
        self._diag_window = (time.monotonic(), 0, 0, 0)
        self._tf_broadcaster = None
        self._tf_lookup = None
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
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
        # TF lookups: map->odom output, odometry for the prior, base->camera for /initialpose
        self._tf_lookup = TransformLookup(self)
        service_group = MutuallyExclusiveCallbackGroup()
        self.create_service(Trigger, "~/reload_map", self._on_reload_map, callback_group=service_group)
        self.create_service(Trigger, "~/localize_now", self._on_localize_now, callback_group=service_group)
        # its own group: it waits for the next frame, which must not hold up a map reload
        self.create_service(Trigger, "~/trigger_localization", self._on_trigger_localization,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self.create_subscription(PoseWithCovarianceStamped, "/initialpose", self._on_initial_pose, 10)
        self.create_timer(1.0, self._publish_diagnostics)
        self._configured_entities = self._entities() - before
        # A map that fails to load does not fail the transition: the node stays up, reports the
        # error on /diagnostics and loads the map on ~/reload_map (the documented recovery path).
        self._load_map()
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        before = self._entities()
        qos = self._image_qos()
        names = self._rig_names()
        if names:
            self._rig_images, self._rig_infos = [None] * len(names), [None] * len(names)
            kind = CompressedImage if self.params.image_transport == "compressed" else Image
            suffix = "/compressed" if kind is CompressedImage else ""
            for index in range(len(names)):
                self.create_subscription(kind, f"image_{index}{suffix}",
                                         lambda msg, index=index: self._on_rig_image(index, msg), qos)
                self.create_subscription(CameraInfo, f"camera_info_{index}",
                                         lambda msg, index=index: self._on_rig_camera_info(index, msg), qos)
        elif self.params.image_transport == "compressed":
            topic = self.params.image_topic.rstrip("/") + "/compressed"
            self.create_subscription(CompressedImage, topic, self._on_image, qos)
        else:
            self.create_subscription(Image, self.params.image_topic, self._on_image, qos)
        self.create_subscription(CameraInfo, self.params.camera_info_topic, self._on_camera_info, qos)
        self._active_entities = self._entities() - before
        self._mailbox, self._extracted = FrameMailbox(), FrameMailbox()
        self._stop = threading.Event()
        self._workers = [threading.Thread(target=self._extract_work, name="scenesqueezer-extract", daemon=True),
                         threading.Thread(target=self._register_work, name="scenesqueezer-register", daemon=True)]
        for worker in self._workers:
            worker.start()
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
            self._localizer = self._tracker = None
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
        self._extracted.close()
        for worker in self._workers:
            worker.join(timeout=5.0)
        self._workers = []

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

    def _rig_names(self) -> list[str]:
        return [name.strip() for name in self.params.cameras.split(",") if name.strip()]

    def _on_rig_image(self, index: int, msg) -> None:
        """Keep each camera's newest image; a complete group within the stamp tolerance becomes one job."""
        with self._counters_lock:
            self._counters.received += 1
        tolerance_ns = self.params.rig_stamp_tolerance_s * 1e9
        with self._rig_lock:
            self._rig_images[index] = msg
            if any(image is None for image in self._rig_images):
                return
            stamps = [stamp_ns(image.header.stamp) for image in self._rig_images]
            if max(stamps) - min(stamps) > tolerance_ns:
                return  # a camera's frame of this instant is still on its way (or lost): wait for it
            images, self._rig_images = self._rig_images, [None] * len(self._rig_images)
            infos = list(self._rig_infos)
        self._mailbox.put(FrameJob(images[0], infos[0], rig_images=images, rig_infos=infos))

    def _on_rig_camera_info(self, index: int, msg: CameraInfo) -> None:
        with self._rig_lock:
            self._rig_infos[index] = msg
            if all(info is not None for info in self._rig_infos):
                self._camera_info = msg  # diagnostics: every camera's CameraInfo has arrived

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
            self._tracker = OdometryTracker(localizer.conf)
            self._map_error = ""
        with self._mode_lock:  # the mode, like the localizer's parameters, applies from a (re)load on
            self._localizing = self.params.mode != "on_demand"
            self._reload_error = ""
        if self._workers:  # active; on_activate publishes it otherwise
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
        if not self._workers:
            response.success, response.message = False, "the node is not active; activate it first"
            return response
        if job is None:
            response.success, response.message = False, "no frame received yet"
            return response
        waiting = replace(job, done=threading.Event(), result=None)
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

    def _on_trigger_localization(self, request, response):
        """Localize the next frame (whatever the mode) and answer with its result."""
        if not self._workers:
            response.success, response.message = False, "the node is not active; activate it first"
            return response
        waiting = TriggerWait()
        with self._mode_lock:
            self._triggers.append(waiting)
        if not waiting.done.wait(TRIGGER_TIMEOUT_S):
            with self._mode_lock:
                if waiting in self._triggers:
                    self._triggers.remove(waiting)
            response.success = False
            response.message = (f"no camera frame arrived within {TRIGGER_TIMEOUT_S:.0f} s of the trigger; check "
                                f"that the camera publishes on {self.params.image_topic!r}")
            return response
        result = waiting.result
        response.success = bool(result.success)
        if result.success:
            center = result.cam_from_world.center
            response.message = (f"localized ({result.search} search) at x={center[0]:.2f} y={center[1]:.2f} "
                                f"z={center[2]:.2f} with {result.num_inliers} inliers")
        else:
            response.message = result.failure_reason
        return response

    def _on_initial_pose(self, msg: PoseWithCovarianceStamped) -> None:
        """RViz's 2D Pose Estimate: the pose of base_frame in the map seeds the odometry prior."""
        params = self.params
        if msg.header.frame_id.lstrip("/") != params.map_frame:
            self.get_logger().error(f"/initialpose is in frame {msg.header.frame_id!r}, not the map frame "
                                    f"{params.map_frame!r}; set RViz's fixed frame to {params.map_frame!r}")
            return
        map_from_base = pose_msg_to_cam_from_world(msg.pose.pose).inverse()
        odom_from_base = (self._tf_lookup.lookup(params.odom_frame, params.base_frame)
                          if params.odom_frame and self._tf_lookup is not None else None)
        self._pending_seed = (map_from_base, odom_from_base)
        self.get_logger().info(f"/initialpose received: seeding the prior at x={map_from_base.t[0]:.2f} "
                               f"y={map_from_base.t[1]:.2f}")

    # --- worker -------------------------------------------------------------------------------

    def _extract_work(self) -> None:
        """Pipeline stage 1: the newest received frame -> its features, into the second mailbox."""
        next_allowed = 0.0
        while not self._stop.is_set():
            if self.params.max_rate_hz > 0:
                wait = next_allowed - time.monotonic()
                if wait > 0:
                    self._stop.wait(wait)  # frames arriving meanwhile replace each other
            job = self._mailbox.take(timeout=0.2)
            if job is None:
                continue
            with self._mode_lock:
                triggers, self._triggers = self._triggers, []
                run = job.done is not None or bool(triggers) or self._localizing
                if triggers and self.params.mode == "until_localized":
                    self._localizing = True  # again until it has its agreeing poses
                    if self._tracker is not None:
                        self._tracker.consecutive_agreeing = 0
            if not run:
                with self._counters_lock:
                    self._counters.skipped_idle += 1
                continue
            if self.params.max_rate_hz > 0:
                next_allowed = time.monotonic() + 1.0 / self.params.max_rate_hz
            job.triggers = triggers
            try:
                self._extract(job)
            except Exception as error:  # noqa: BLE001 - the worker must outlive any bad frame
                job.failure = self._crashed("feature extraction", error)
            self._extracted.put(job)

    def _register_work(self) -> None:
        """Pipeline stage 2: the newest extracted frame -> pose (or failure), published."""
        while not self._stop.is_set():
            job = self._extracted.take(timeout=0.2)
            if job is None:
                continue
            if job.done is None and not job.triggers:
                with self._mode_lock:
                    run = self._localizing  # until_localized may have stopped while it was extracted
                if not run:
                    with self._counters_lock:
                        self._counters.skipped_idle += 1
                    continue
            try:
                result = self._register(job)
            except Exception as error:  # noqa: BLE001 - the worker must outlive any bad frame
                result = self._publish_failure(job, self._crashed("localization", error))
            if job.done is not None:
                job.result = result
                job.done.set()
            for trigger in job.triggers:
                trigger.result = result
                trigger.done.set()
            self._update_mode()

    def _update_mode(self) -> None:
        """until_localized: stop once the tracker has its consecutive agreeing poses."""
        tracker = self._tracker
        if (self.params.mode == "until_localized" and tracker is not None
                and tracker.consecutive_agreeing >= self.params.localized_poses_to_stop):
            with self._mode_lock:
                if self._localizing:
                    self.get_logger().info(f"{tracker.consecutive_agreeing} consecutive agreeing poses: "
                                           "localized; idle until ~/trigger_localization")
                self._localizing = False

    def _crashed(self, stage: str, error: Exception) -> LocalizationResult:
        """Log and count a stage that raised on a frame; the failure result its subscribers get."""
        self.get_logger().error(f"{stage} crashed on a frame: {error!r}")
        with self._counters_lock:
            self._counters.errors += 1
        return internal_error(error)

    def _extract(self, job: FrameJob) -> None:
        """Stage 1 on one frame: check it, decode it, extract its features (``job.extracted``), or
        the reason it cannot be (``job.failure``). Fills ``job`` itself: a service waiting on it
        reads the ``result`` that stage 2 sets on it."""
        self._last_job = replace(job, done=None, result=None, triggers=[])
        if job.rig_images is not None:
            return  # a rig frame goes through the registration stage whole
        header = job.image_msg.header
        with self._localizer_lock:
            localizer = self._localizer
        failure = None
        backwards = self._stamp_went_backwards(header) if job.done is None else ""
        if backwards:
            failure = LocalizationResult(False).fail(FailureCode.STAMP_BACKWARDS, backwards)
        elif localizer is None:
            failure = LocalizationResult(False).fail(FailureCode.NO_MAP, self._map_error or "no map loaded")
        elif job.camera_info is None:
            failure = LocalizationResult(False).fail(
                FailureCode.NO_CAMERA_INFO, f"no CameraInfo received on {self.params.camera_info_topic!r} yet")
        if failure is None:
            try:
                camera = self._camera_for(job.camera_info)
                rgb = decode_for_camera(job.image_msg, camera)
                job.localizer, job.extracted = localizer, localizer.extract(rgb, camera)
                return
            except ImageError as error:
                failure = LocalizationResult(False).fail(FailureCode.BAD_IMAGE, str(error))
            except SceneSqueezerError as error:
                failure = LocalizationResult(False).fail(FailureCode.BAD_INPUT, str(error))
        job.failure = failure

    def _register(self, job: FrameJob):
        """Stage 2 on one frame: the pose from its features (with the odometry prior when there is
        one), or its stage-1 failure; published either way."""
        if job.rig_images is not None:
            return self._process_rig(job)
        header = job.image_msg.header
        camera_frame = self.params.camera_frame or header.frame_id
        result = job.failure
        if result is None:
            assert job.localizer is not None and job.extracted is not None
            with self._localizer_lock:
                tracker = self._tracker if job.localizer is self._localizer else None  # a tracker is its map's
            try:
                odom_from_camera = self._odometry(camera_frame, header.stamp)
                if tracker is None:
                    result = job.localizer.localize_extracted(job.extracted)
                else:
                    self._apply_pending_seed(tracker, camera_frame, odom_from_camera)
                    result = tracker.localize_extracted(job.localizer, job.extracted, odom_from_camera)
            except SceneSqueezerError as error:
                result = LocalizationResult(False).fail(FailureCode.BAD_INPUT, str(error))
        self._publish(result, header, camera_frame)
        return result

    def _process_rig(self, job: FrameJob):
        """One rig frame: every camera's image, intrinsics and TF extrinsics -> one pose of base_frame."""
        params = self.params
        header = job.image_msg.header
        names = self._rig_names()
        with self._localizer_lock:
            localizer, tracker = self._localizer, self._tracker
        result = None
        backwards = self._stamp_went_backwards(header) if job.done is None else ""
        missing = [f"camera_info_{i} ({name})" for i, (name, info) in enumerate(zip(names, job.rig_infos))
                   if info is None]
        if backwards:
            result = LocalizationResult(False).fail(FailureCode.STAMP_BACKWARDS, backwards)
        elif localizer is None:
            result = LocalizationResult(False).fail(FailureCode.NO_MAP, self._map_error or "no map loaded")
        elif missing:
            result = LocalizationResult(False).fail(FailureCode.NO_CAMERA_INFO,
                                                    f"no CameraInfo received on {', '.join(missing)} yet")
        if result is None:
            try:
                rig_cameras: list[RigCamera] = []
                images: list = []
                cameras: list = []
                for index, (name, msg, info) in enumerate(zip(names, job.rig_images, job.rig_infos)):
                    frame = msg.header.frame_id.lstrip("/")
                    base_from_camera = (self._tf_lookup.lookup(params.base_frame, frame, msg.header.stamp)
                                        if frame and self._tf_lookup is not None else None)
                    if base_from_camera is None:
                        raise ConfigError(
                            f"rig camera {name!r} (image_{index}): no TF from base_frame {params.base_frame!r} to "
                            f"its image frame {frame!r}; publish the camera's mounting (e.g. a static transform "
                            "from the robot description) and set the image header's frame_id")
                    camera = camera_info_to_camera(info)
                    rgb = decode_for_camera(msg, camera, f"rig camera {name!r}: ", f"camera_info_{index}")
                    rig_cameras.append(RigCamera(name, base_from_camera))
                    images.append(rgb)
                    cameras.append(camera)
                rig_localizer = RigLocalizer(localizer, Rig(tuple(rig_cameras)))
                # the tracked frame is the rig's base: odometry odom -> base_frame, /initialpose as given
                odom_from_base = self._odometry(params.base_frame, header.stamp)
                if tracker is None:
                    result = rig_localizer.localize(images, cameras)
                else:
                    self._apply_pending_seed(tracker, params.base_frame, odom_from_base)
                    result = tracker.track(odom_from_base,
                                           lambda prior: rig_localizer.localize(images, cameras, prior=prior))
            except ImageError as error:
                result = LocalizationResult(False).fail(FailureCode.BAD_IMAGE, str(error))
            except SceneSqueezerError as error:
                result = LocalizationResult(False).fail(FailureCode.BAD_INPUT, str(error))
        self._publish(result, header, params.base_frame)
        return result

    def _odometry(self, camera_frame: str, stamp):
        """odom_from_camera from TF for the odometry prior; None without odom_frame or TF."""
        params = self.params
        if not (params.odometry_prior and params.odom_frame and camera_frame) or self._tf_lookup is None:
            return None
        odom_from_camera = self._tf_lookup.lookup(params.odom_frame, camera_frame, stamp)
        if odom_from_camera is None:
            self.get_logger().warning(
                f"odometry prior: no TF from {params.odom_frame} to {camera_frame}; localizing without it "
                "(publish odom->base and base->camera, or set odom_frame to '')", throttle_duration_sec=10.0)
        return odom_from_camera

    def _apply_pending_seed(self, tracker: OdometryTracker, camera_frame: str, odom_from_camera) -> None:
        """Turn the latest /initialpose (a base pose) into the camera pose that seeds the prior."""
        seed, self._pending_seed = self._pending_seed, None
        if seed is None:
            return
        map_from_base, odom_from_base = seed
        base_from_camera = self._tf_lookup.lookup(self.params.base_frame, camera_frame) if self._tf_lookup else None
        if base_from_camera is None:
            self.get_logger().error(
                f"/initialpose ignored: no TF from base_frame {self.params.base_frame!r} to the camera frame "
                f"{camera_frame!r}; publish it (e.g. a static transform) or set base_frame to {camera_frame!r}")
            return
        odom_then = odom_from_base @ base_from_camera if odom_from_base is not None else odom_from_camera
        tracker.seed((map_from_base @ base_from_camera).inverse(), odom_then)

    def _publish_failure(self, job: FrameJob, result: LocalizationResult) -> LocalizationResult:
        """Publish the failure of a frame whose processing raised: subscribers still hear of it."""
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
        now_ns = stamp_ns(header.stamp)
        previous, self._last_stamp_ns = self._last_stamp_ns, now_ns
        if previous is not None and now_ns < previous:
            return (f"image stamp went backwards by {(previous - now_ns) / 1e9:.3f} s (out-of-order "
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
        msg.search = int(result.search)
        msg.num_candidates_matched = int(result.num_candidates_matched)
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
                counters.localized_prior += result.search == SearchKind.PRIOR
                counters.localized_global += result.search == SearchKind.GLOBAL
            else:
                counters.failed += 1
                counters.last_failure_reason = msg.failure_reason
                counters.refused_by_prior += result.failure_code == FailureCode.DISAGREES_WITH_PRIOR
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
        elif not self._localizing and not self._triggers:
            status.level = DiagnosticStatus.OK
            status.message = f"idle until ~/trigger_localization (mode {self.params.mode})"
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
            "frames_dropped": self._mailbox.dropped + self._extracted.dropped,
            "localized": snapshot.localized,
            "failed": snapshot.failed,
            "errors": snapshot.errors,
            "mode": self.params.mode,
            "localizing": self._localizing,
            "localized_prior_search": snapshot.localized_prior,
            "localized_global_search": snapshot.localized_global,
            "refused_by_prior": snapshot.refused_by_prior,
            "frames_skipped_idle": snapshot.skipped_idle,
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


def decode_for_camera(msg, camera, prefix: str = "", info_name: str = "CameraInfo"):
    """(H, W, 3) uint8 RGB of an Image / CompressedImage, which must have ``camera``'s size
    (ImageError naming the image, ``prefix`` first, and the CameraInfo topic ``info_name`` otherwise)."""
    rgb = compressed_msg_to_rgb(msg) if isinstance(msg, CompressedImage) else image_msg_to_rgb(msg)
    if (rgb.shape[1], rgb.shape[0]) != (camera.width, camera.height):
        raise ImageError(f"{prefix}image is {rgb.shape[1]}x{rgb.shape[0]} but {info_name} says "
                         f"{camera.width}x{camera.height}; publish the CameraInfo of this image stream")
    return rgb


def internal_error(error: Exception) -> LocalizationResult:
    return LocalizationResult(False).fail(FailureCode.INTERNAL_ERROR, f"internal error, frame skipped: {error!r}")


def stamp_ns(stamp) -> int:
    """A builtin_interfaces/Time in nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


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
