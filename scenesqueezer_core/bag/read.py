"""Rosbag2 -> time-synchronized camera frames with poses -> dataset folder (for ``build_map``).

A bag holds an image topic (``sensor_msgs/Image`` or ``CompressedImage``), a ``CameraInfo``
topic and the camera's pose in the map, either on a pose topic (``PoseStamped``,
``PoseWithCovarianceStamped`` or ``Odometry``) or on TF. Topics are detected from their message
types when that is unambiguous; otherwise the error lists the candidates and the option to pass.

Synchronization is by header stamp: each image gets the pose interpolated (linear position,
slerp rotation) between the two pose samples around its stamp when they are at most
``max_interpolation_gap_s`` apart, or the nearest sample when that lies within
``sync_tolerance_s``; other images are dropped (and counted). The CameraInfo nearest in time
gives each image its intrinsics.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from ..atomic import atomic_path
from ..dataset import write_colmap_text, write_splits
from ..errors import ConfigError, DatasetError
from ..types import Camera, Frame, Pose
from . import messages as m
from .export import is_bag


@dataclass(frozen=True)
class TopicSelection:
    image: str
    image_type: str
    camera_info: str
    pose: str | None  # None: poses come from TF
    pose_type: str | None
    tf_frames: tuple[str, str] | None  # (map frame, camera frame) when poses come from TF


@dataclass
class BagFrame:
    """One image of a bag: its position in the image topic, header stamp, intrinsics, pose."""

    index: int
    stamp_ns: int
    frame_id: str
    camera: Camera
    cam_from_world: Pose | None

    @property
    def name(self) -> str:
        sec, nsec = divmod(self.stamp_ns, 1_000_000_000)
        return f"{self.index:06d}_{sec}.{nsec:09d}"


@dataclass
class BagScan:
    path: Path
    topics: TopicSelection
    frames: list[BagFrame]
    dropped: Counter = field(default_factory=Counter)  # reason -> number of images

    @property
    def synced(self) -> list[BagFrame]:
        return [f for f in self.frames if f.cam_from_world is not None]


class PoseTrack:
    """Time-stamped parent_from_child poses of one frame pair, interpolated on request."""

    def __init__(self) -> None:
        self._samples: dict[int, Pose] = {}
        self._times: np.ndarray | None = None

    def add(self, stamp_ns: int, pose: Pose) -> None:
        self._samples[int(stamp_ns)] = pose
        self._times = None

    def __len__(self) -> int:
        return len(self._samples)

    def _sorted(self) -> tuple[np.ndarray, list[Pose]]:
        if self._times is None:
            self._times = np.array(sorted(self._samples), dtype=np.int64)
            self._poses = [self._samples[int(t)] for t in self._times]
        return self._times, self._poses

    def at(self, stamp_ns: int, tolerance_ns: int, max_gap_ns: int) -> Pose | None:
        times, poses = self._sorted()
        if len(times) == 0:
            return None
        right = int(np.searchsorted(times, stamp_ns, side="left"))
        if right < len(times) and times[right] == stamp_ns:
            return poses[right]
        left = right - 1
        if 0 <= left and right < len(times) and times[right] - times[left] <= max_gap_ns:
            return interpolate_pose(poses[left], poses[right],
                                    (stamp_ns - times[left]) / (times[right] - times[left]))
        nearest = [i for i in (left, right) if 0 <= i < len(times)]
        best = min(nearest, key=lambda i: abs(int(times[i]) - stamp_ns))
        return poses[best] if abs(int(times[best]) - stamp_ns) <= tolerance_ns else None


def interpolate_pose(a: Pose, b: Pose, fraction: float) -> Pose:
    """Linear translation and slerp rotation between two poses; ``fraction`` 0 gives ``a``."""
    slerp = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([a.R, b.R])))
    return Pose(slerp([fraction]).as_matrix()[0], (1.0 - fraction) * a.t + fraction * b.t)


class TfBuffer:
    """/tf and /tf_static of a bag; looks up parent_from_child between any two connected frames."""

    def __init__(self) -> None:
        self.static: dict[tuple[str, str], Pose] = {}
        self.dynamic: dict[tuple[str, str], PoseTrack] = {}

    def add(self, msg, static: bool) -> None:
        for transform in msg.transforms:
            parent = transform.header.frame_id.lstrip("/")
            child = transform.child_frame_id.lstrip("/")
            pose = m.msg_to_pose(transform.transform.translation, transform.transform.rotation)
            if static:
                self.static[(parent, child)] = pose
            else:
                self.dynamic.setdefault((parent, child), PoseTrack()).add(m.stamp_to_ns(transform.header.stamp), pose)

    @property
    def frames(self) -> set[str]:
        return {f for edge in [*self.static, *self.dynamic] for f in edge}

    def parent_of(self, frame: str) -> str | None:
        for parent, child in [*self.static, *self.dynamic]:
            if child == frame:
                return parent
        return None

    def root_of(self, frame: str) -> str:
        seen = {frame}
        while (parent := self.parent_of(frame)) is not None and parent not in seen:
            seen.add(parent)
            frame = parent
        return frame

    def lookup(self, parent: str, child: str, stamp_ns: int, tolerance_ns: int, max_gap_ns: int) -> Pose | None:
        """parent_from_child at ``stamp_ns``, or None when a dynamic link has no sample near it."""
        path = self._path(parent, child)
        if path is None:
            return None
        result = Pose.identity()
        for a, b in zip(path, path[1:]):
            if (a, b) in self.static or (a, b) in self.dynamic:
                step = self._edge(a, b, stamp_ns, tolerance_ns, max_gap_ns)
            else:
                step = self._edge(b, a, stamp_ns, tolerance_ns, max_gap_ns)
                step = None if step is None else step.inverse()
            if step is None:
                return None
            result = result @ step
        return result

    def connected(self, a: str, b: str) -> bool:
        return self._path(a, b) is not None

    def _edge(self, parent: str, child: str, stamp_ns: int, tolerance_ns: int, max_gap_ns: int) -> Pose | None:
        if (parent, child) in self.static:
            return self.static[(parent, child)]
        return self.dynamic[(parent, child)].at(stamp_ns, tolerance_ns, max_gap_ns)

    def _path(self, start: str, goal: str) -> list[str] | None:
        neighbours: dict[str, set[str]] = {}
        for a, b in [*self.static, *self.dynamic]:
            neighbours.setdefault(a, set()).add(b)
            neighbours.setdefault(b, set()).add(a)
        previous: dict[str, str | None] = {start: None}
        queue = deque([start])
        while queue:
            frame = queue.popleft()
            if frame == goal:
                path = [frame]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                return path[::-1]
            for nxt in neighbours.get(frame, ()):
                if nxt not in previous:
                    previous[nxt] = frame
                    queue.append(nxt)
        return None


@contextlib.contextmanager
def open_reader(bag: str | os.PathLike) -> Iterator:
    """An open rosbags Reader over a bag folder; DatasetError when it is not a readable bag."""
    from rosbags.rosbag2 import Reader

    bag = Path(bag)
    if not bag.exists():
        raise DatasetError(f"bag {bag} does not exist")
    if not is_bag(bag):
        raise DatasetError(f"{bag} is not a rosbag2 (a folder with metadata.yaml); pass the bag folder")
    if bag.is_file():
        bag = bag.parent
    try:
        reader = Reader(bag)
        reader.open()
    except Exception as exc:  # rosbags raises its own ReaderError / storage errors
        raise DatasetError(f"cannot open bag {bag}: {exc}") from exc
    try:
        yield reader
    finally:
        reader.close()


def _pick(kind: str, wanted: str | None, available: dict[str, str], types: tuple[str, ...], option: str,
          prefer_namespace: str | None = None) -> str:
    if wanted is not None:
        wanted_norm = "/" + wanted.lstrip("/")
        if wanted_norm not in available:
            raise DatasetError(f"{kind} topic {wanted!r} is not in the bag; topics: {', '.join(sorted(available))}")
        if available[wanted_norm] not in types:
            raise DatasetError(f"{kind} topic {wanted!r} has type {available[wanted_norm]}; "
                               f"expected one of {', '.join(types)}")
        return wanted_norm
    candidates = sorted(t for t, ty in available.items() if ty in types)
    if prefer_namespace is not None and len(candidates) > 1:
        same = [c for c in candidates if c.rsplit("/", 1)[0] == prefer_namespace]
        if len(same) == 1:
            return same[0]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DatasetError(f"the bag has no {kind} topic ({' / '.join(types)}); topics: "
                           f"{', '.join(f'{t} [{ty}]' for t, ty in sorted(available.items()))}")
    raise DatasetError(f"the bag has several {kind} topics ({', '.join(candidates)}); choose one with {option}")


def select_topics(available: dict[str, str], image_topic: str | None = None, camera_info_topic: str | None = None,
                  pose_topic: str | None = None, tf_frames: tuple[str, str] | None = None) -> TopicSelection:
    """Pick the topics to read from ``available`` (topic -> message type); see the module docstring."""
    image = _pick("image", image_topic, available, m.IMAGE_TYPES, "--image-topic")
    namespace = image.rsplit("/", 1)[0]
    if available[image] == m.COMPRESSED_IMAGE_TYPE:
        namespace = namespace.rsplit("/", 1)[0]  # <camera>/image_raw/compressed
    info = _pick("camera info", camera_info_topic, available, (m.CAMERA_INFO_TYPE,), "--camera-info-topic",
                 prefer_namespace=namespace)
    if pose_topic is None and tf_frames is None:
        pose_candidates = [t for t, ty in available.items() if ty in m.POSE_TYPES]
        if not pose_candidates and "/tf" in available:
            return TopicSelection(image, available[image], info, None, None, None)
    if tf_frames is not None:
        if "/tf" not in available and "/tf_static" not in available:
            raise DatasetError("tf_frames given but the bag has no /tf or /tf_static topic")
        return TopicSelection(image, available[image], info, None, None, (tf_frames[0], tf_frames[1]))
    pose = _pick("pose", pose_topic, available, m.POSE_TYPES, "--pose-topic (or tf_frames for poses on /tf)")
    return TopicSelection(image, available[image], info, pose, available[pose], None)


def scan_bag(bag: str | os.PathLike, image_topic: str | None = None, camera_info_topic: str | None = None,
             pose_topic: str | None = None, tf_frames: tuple[str, str] | None = None,
             sync_tolerance_s: float = 0.05, max_interpolation_gap_s: float = 1.0) -> BagScan:
    """Read every image's stamp, intrinsics and (synchronized) pose; images themselves stay in the bag.

    ``tf_frames`` = (map frame, camera frame); with poses on TF and no ``tf_frames``, the camera
    frame is the images' frame_id and the map frame is ``map`` when TF has it, else the root of
    the camera's TF tree.
    """
    if sync_tolerance_s < 0 or max_interpolation_gap_s < 0:
        raise ConfigError("sync_tolerance_s and max_interpolation_gap_s must be >= 0")
    tolerance_ns = int(sync_tolerance_s * 1e9)
    max_gap_ns = int(max_interpolation_gap_s * 1e9)
    store = m.typestore()
    with open_reader(bag) as reader:
        available = {c.topic: c.msgtype for c in reader.connections}
        topics = select_topics(available, image_topic, camera_info_topic, pose_topic, tf_frames)
        wanted = {topics.image, topics.camera_info, "/tf", "/tf_static"} | ({topics.pose} if topics.pose else set())
        connections = [c for c in reader.connections if c.topic in wanted]
        image_stamps: list[tuple[int, str]] = []
        infos: dict[int, Camera] = {}
        track = PoseTrack()
        pose_child: str | None = None
        tf = TfBuffer()
        for connection, _, raw in reader.messages(connections=connections):
            if connection.topic == topics.image:
                msg = store.deserialize_cdr(raw, connection.msgtype)
                image_stamps.append((m.stamp_to_ns(msg.header.stamp), msg.header.frame_id.lstrip("/")))
                continue
            msg = store.deserialize_cdr(raw, connection.msgtype)
            if connection.topic == topics.camera_info:
                infos[m.stamp_to_ns(msg.header.stamp)] = m.camera_info_to_camera(msg)
            elif connection.topic in ("/tf", "/tf_static"):
                tf.add(msg, static=connection.topic == "/tf_static")
            else:
                pose_msg = msg.pose if connection.msgtype == m.POSE_STAMPED_TYPE else msg.pose.pose
                if connection.msgtype == m.ODOMETRY_TYPE and msg.child_frame_id:
                    pose_child = msg.child_frame_id.lstrip("/")
                track.add(m.stamp_to_ns(msg.header.stamp), m.msg_to_pose(pose_msg.position, pose_msg.orientation))

    if not image_stamps:
        raise DatasetError(f"image topic {topics.image} of {bag} holds no messages")
    if not infos:
        raise DatasetError(f"camera info topic {topics.camera_info} of {bag} holds no messages; record "
                           "the camera's CameraInfo with the images")
    camera_frame = image_stamps[0][1]
    if topics.pose is None:
        topics = _resolve_tf_frames(topics, tf, camera_frame, bag)
    elif len(track) == 0:
        raise DatasetError(f"pose topic {topics.pose} of {bag} holds no messages")

    info_times = sorted(infos)
    frames: list[BagFrame] = []
    dropped: Counter = Counter()
    for index, (stamp, frame_id) in enumerate(image_stamps):
        k = bisect.bisect_left(info_times, stamp)
        nearest = min((i for i in (k - 1, k) if 0 <= i < len(info_times)), key=lambda i: abs(info_times[i] - stamp))
        camera = infos[info_times[nearest]]
        if topics.pose is None:
            map_frame, cam_frame = topics.tf_frames
            world_from_cam = tf.lookup(map_frame, cam_frame, stamp, tolerance_ns, max_gap_ns)
        else:
            world_from_cam = track.at(stamp, tolerance_ns, max_gap_ns)
            if world_from_cam is not None and pose_child and frame_id and pose_child != frame_id:
                mount = tf.lookup(pose_child, frame_id, stamp, tolerance_ns, max_gap_ns)
                if mount is None:
                    raise DatasetError(
                        f"poses on {topics.pose} are of frame {pose_child!r} but the images are in {frame_id!r}, "
                        "and the bag's TF does not connect them; record /tf_static with the camera mount")
                world_from_cam = world_from_cam @ mount
        if world_from_cam is None:
            dropped["no pose within the sync tolerance"] += 1
        frames.append(BagFrame(index, stamp, frame_id, camera,
                               None if world_from_cam is None else world_from_cam.inverse()))
    return BagScan(Path(bag), topics, frames, dropped)


def _resolve_tf_frames(topics: TopicSelection, tf: TfBuffer, camera_frame: str, bag) -> TopicSelection:
    if topics.tf_frames is not None:
        map_frame, cam_frame = topics.tf_frames
    else:
        if not camera_frame:
            raise DatasetError(f"the images of {bag} have no frame_id, so the camera's TF frame is unknown; "
                               "pass tf_frames=(map frame, camera frame) (--tf-frames MAP CAMERA)")
        cam_frame = camera_frame
        map_frame = "map" if "map" in tf.frames else tf.root_of(cam_frame)
    for frame in (map_frame, cam_frame):
        if frame not in tf.frames:
            raise DatasetError(f"frame {frame!r} is not on /tf or /tf_static of {bag}; frames there: "
                               f"{', '.join(sorted(tf.frames)) or 'none'}")
    if map_frame == cam_frame or not tf.connected(map_frame, cam_frame):
        raise DatasetError(f"TF of {bag} has no chain from {map_frame!r} to {cam_frame!r}; pass tf_frames "
                           "(--tf-frames MAP CAMERA) naming two connected frames")
    return TopicSelection(topics.image, topics.image_type, topics.camera_info, None, None, (map_frame, cam_frame))


def iter_image_messages(bag: str | os.PathLike, scan: BagScan, indices: set[int] | None = None,
                        with_camera_info: bool = False) -> Iterator[tuple[BagFrame, Any, bytes, bytes | None]]:
    """Stream (frame, deserialized image msg, raw image CDR, raw CameraInfo CDR) in bag order.

    ``with_camera_info`` pairs each image with the latest CameraInfo message before it (for
    republishing); frames not in ``indices`` are skipped without keeping their pixels.
    """
    store = m.typestore()
    frames = scan.frames
    index = -1
    last_info: bytes | None = None
    with open_reader(bag) as reader:
        topics = {scan.topics.image} | ({scan.topics.camera_info} if with_camera_info else set())
        connections = [c for c in reader.connections if c.topic in topics]
        for connection, _, raw in reader.messages(connections=connections):
            if connection.topic != scan.topics.image:
                last_info = bytes(raw)
                continue
            index += 1
            if indices is not None and index not in indices:
                continue
            yield frames[index], store.deserialize_cdr(raw, connection.msgtype), bytes(raw), last_info


def select_keyframes(poses: list[Pose], min_translation: float, min_rotation_deg: float) -> list[int]:
    """Indices of the poses (cam_from_world) kept: the first, then each one that moved at least
    ``min_translation`` metres or turned ``min_rotation_deg`` degrees from the last kept one."""
    if min_translation < 0 or min_rotation_deg < 0:
        raise ConfigError("min_translation and min_rotation_deg must be >= 0")
    kept: list[int] = []
    for i, pose in enumerate(poses):
        if not kept:
            kept.append(i)
            continue
        last = poses[kept[-1]]
        moved = np.linalg.norm(pose.center - last.center)
        cos = np.clip((np.trace(pose.R @ last.R.T) - 1.0) / 2.0, -1.0, 1.0)
        turned = np.degrees(np.arccos(cos))
        if moved >= min_translation or turned >= min_rotation_deg:
            kept.append(i)
    return kept


@dataclass
class BagImport:
    """What ``bag_to_dataset`` did."""

    dataset_dir: Path
    topics: TopicSelection
    num_images: int
    num_synced: int
    num_keyframes: int
    dropped: dict[str, int]


def bag_to_dataset(bag: str | os.PathLike, out_dir: str | os.PathLike, image_topic: str | None = None,
                   camera_info_topic: str | None = None, pose_topic: str | None = None,
                   tf_frames: tuple[str, str] | None = None, min_translation: float = 0.1,
                   min_rotation_deg: float = 5.0, sync_tolerance_s: float = 0.05,
                   max_interpolation_gap_s: float = 1.0) -> BagImport:
    """Write a dataset folder (images/, sparse/, splits.json with every keyframe in ``mapping``).

    Raw images are stored as PNG, JPEG CompressedImages byte for byte as .jpg; ``bag_frames.json``
    records each image's stamp. The folder is replaced atomically.
    """
    import cv2

    scan = scan_bag(bag, image_topic, camera_info_topic, pose_topic, tf_frames, sync_tolerance_s,
                    max_interpolation_gap_s)
    synced = scan.synced
    if not synced:
        raise DatasetError(f"no image of {bag} has a pose within {sync_tolerance_s} s (or between two pose "
                           f"samples at most {max_interpolation_gap_s} s apart); check the pose topic / TF "
                           "or raise the tolerances")
    keep = select_keyframes([f.cam_from_world for f in synced], min_translation, min_rotation_deg)
    chosen = {synced[i].index: synced[i] for i in keep}
    out_dir = Path(out_dir)
    written: list[Frame] = []
    with atomic_path(out_dir, is_dir=True) as tmp:
        (tmp / "images").mkdir()
        for frame, msg, _, _ in iter_image_messages(bag, scan, set(chosen)):
            fmt = getattr(msg, "format", "").lower()
            if scan.topics.image_type == m.COMPRESSED_IMAGE_TYPE and ("jpeg" in fmt or "jpg" in fmt):
                name = frame.name + ".jpg"
                (tmp / "images" / name).write_bytes(np.asarray(msg.data, dtype=np.uint8).tobytes())
                height, width = _jpeg_size(tmp / "images" / name)
            else:
                rgb = m.image_msg_to_rgb(msg)
                name = frame.name + ".png"
                cv2.imwrite(str(tmp / "images" / name), np.ascontiguousarray(rgb[:, :, ::-1]))
                height, width = rgb.shape[:2]
            if (width, height) != (frame.camera.width, frame.camera.height):
                raise DatasetError(
                    f"image {frame.index} on {scan.topics.image} is {width}x{height} but CameraInfo on "
                    f"{scan.topics.camera_info} says {frame.camera.width}x{frame.camera.height}; "
                    "pass the camera info topic of this image stream")
            written.append(Frame(name, frame.camera, frame.cam_from_world, tmp / "images" / name))
        write_colmap_text(tmp / "sparse", written)
        write_splits(tmp, {"mapping": [f.name for f in written]})
        stamps = {f.name: chosen[int(f.name.split("_", 1)[0])].stamp_ns for f in written}
        (tmp / "bag_frames.json").write_text(json.dumps({
            "bag": str(Path(bag).resolve()), "topics": scan.topics.__dict__, "stamps_ns": stamps}, indent=1) + "\n")
    return BagImport(out_dir, scan.topics, len(scan.frames), len(synced), len(written), dict(scan.dropped))


def _jpeg_size(path: Path) -> tuple[int, int]:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DatasetError(f"a CompressedImage of the bag is not a decodable JPEG ({path.name})")
    return image.shape[:2]
