"""Dataset split -> rosbag2 (MCAP or SQLite3), as a robot's camera would have recorded it.

Per frame, all with the same header stamp (``start + i / rate_hz``):

* the image, ``sensor_msgs/Image`` (rgb8 / bgr8 / mono8, lossless) or ``sensor_msgs/CompressedImage``
  (JPEG, single-channel for mono8) on ``<image>/compressed`` as image_transport names it. The default
  encoding ``auto`` writes grey images (a grey camera such as KITTI's: 8-bit grey files, or colour files
  whose three channels are equal) as mono8 and colour images as rgb8;
* its ``sensor_msgs/CameraInfo`` (each frame carries its own intrinsics);
* the ground-truth camera pose as ``geometry_msgs/PoseStamped`` (camera optical frame in ``map``);
* with ``ground_truth_tf``, the same pose on ``/tf`` as map -> ``body_frame``, and on
  ``/tf_static`` the camera mount body_frame -> optical frame (REP 103 body axes to optical axes),
  so TF consumers (and ``bag_to_dataset(tf_frames=...)``) see a realistic tree.

A rig split (``rig``: the split's rows in the dataset's rig.json) is written as a multi-camera
robot records it, what the node's ``cameras`` mode subscribes to: per rig frame and camera i, the
image and CameraInfo on ``/image_<i>`` / ``/camera_info_<i>`` (frame ``<camera name>_optical``),
all with the frame's stamp; the ground-truth pose of the rig's base frame (``rig_base_frame``) in
``map``; and with ``ground_truth_tf`` map -> rig base on ``/tf`` and each camera's mounting from
rig.json (rig base -> ``<name>_optical``) on ``/tf_static``.

The bag is written into a temporary folder beside ``bag_out`` and renamed when complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..dataset import load_dataset, load_rig, read_image
from ..errors import ConfigError, DatasetError
from ..types import Pose
from . import messages as m

# Optical frame (z forward, x right, y down) expressed in a REP 103 body frame (x forward, y left, z up).
BODY_FROM_OPTICAL = Pose(np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]), np.zeros(3))
DEFAULT_START_NS = 1_700_000_000 * 1_000_000_000  # fixed so that exports are reproducible
ENCODINGS = ("auto", "rgb8", "bgr8", "mono8")  # auto: mono8 for grey images, rgb8 for colour ones


@dataclass(frozen=True)
class BagTopics:
    """Topic and frame names of an exported bag."""

    image: str = "/camera/image_raw"
    camera_info: str = "/camera/camera_info"
    ground_truth_pose: str = "/ground_truth/camera_pose"
    map_frame: str = "map"
    body_frame: str = "camera_link"
    optical_frame: str = "camera_optical_frame"
    # a rig's: {index} is the camera's position in rig.json (the node's image_<i> / camera_info_<i>)
    rig_image: str = "/image_{index}"
    rig_camera_info: str = "/camera_info_{index}"
    rig_base_frame: str = "rig_base"

    def image_topic(self, compressed: bool, index: int | None = None) -> str:
        image = self.image if index is None else self.rig_image.format(index=index)
        return image.rstrip("/") + "/compressed" if compressed else image

    def camera_info_topic(self, index: int | None = None) -> str:
        return self.camera_info if index is None else self.rig_camera_info.format(index=index)


def is_bag(path: str | os.PathLike) -> bool:
    """True for a rosbag2 folder (metadata.yaml) or a bare ``.mcap`` / ``.db3`` file."""
    path = Path(path)
    if path.is_dir():
        return (path / "metadata.yaml").is_file()
    return path.is_file() and path.suffix in (".mcap", ".db3")


def export_bag(dataset_dir: str | os.PathLike, bag_out: str | os.PathLike, split: str = "query",
               storage: str = "mcap", compressed: bool = False, rate_hz: float = 10.0,
               topics: BagTopics | None = None, encoding: str = "auto", jpeg_quality: int = 95,
               ground_truth_tf: bool = True, start_ns: int = DEFAULT_START_NS,
               overwrite: bool = False, rig: bool = False) -> Path:
    """Write the frames of ``split`` (in splits.json order) into a new rosbag2 at ``bag_out``;
    with ``rig``, the rig frames of ``split`` in rig.json, every camera's image (module docstring).

    Raises ConfigError for bad options, DatasetError for a split without ground-truth poses or an
    existing ``bag_out`` (replaced only with ``overwrite`` and only when it is a bag).
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    topics = topics or BagTopics()
    plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise ConfigError(f"unknown bag storage {storage!r}; choose mcap or sqlite3")
    if not (rate_hz > 0 and np.isfinite(rate_hz)):
        raise ConfigError(f"rate_hz must be a positive number, got {rate_hz}")
    if encoding not in ENCODINGS:
        raise ConfigError(f"image encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    if not 1 <= int(jpeg_quality) <= 100:
        raise ConfigError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
    bag_out = Path(bag_out)
    if bag_out.exists():
        if not is_bag(bag_out):
            raise DatasetError(f"{bag_out} exists and is not a rosbag2; choose another output path")
        if not overwrite:
            raise DatasetError(f"bag {bag_out} exists already; delete it or pass overwrite (--overwrite)")

    dataset = load_dataset(dataset_dir)
    if rig:
        camera_rig, rig_frames = load_rig(dataset)
        if split not in rig_frames:
            raise DatasetError(f"rig.json of {dataset.root} has no rig frames of split {split!r} (it has "
                               f"{', '.join(sorted(rig_frames)) or 'none'}); pass one of those as the split")
        rows = rig_frames[split]
        mounts = [(c.base_from_camera, topics.rig_base_frame, f"{c.name}_optical") for c in camera_rig.cameras]
    else:
        rows = [[frame] for frame in dataset.split(split)]
        mounts = [(BODY_FROM_OPTICAL, topics.body_frame, topics.optical_frame)]
    # (base_from_camera, base frame, optical frame) per camera; the base's ground truth is
    # base_from_world = base_from_camera @ cam_from_world of any of its images (the first's here)
    base_from_first, body_frame = mounts[0][0], mounts[0][1]
    frames = [frame for row in rows for frame in row]
    if not frames:
        raise DatasetError(f"split {split!r} of {dataset.root} is empty; nothing to export")
    missing = [f.name for f in frames if f.cam_from_world is None]
    if missing:
        raise DatasetError(f"{len(missing)} frame(s) of split {split!r} have no ground-truth pose, "
                           f"e.g. {missing[:3]}; export a split with known poses")

    types = m.typestore().types
    period_ns = int(round(1e9 / rate_hz))
    bag_out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=bag_out.parent, prefix=f".{bag_out.name}.", suffix=".tmp"))
    try:
        writer = Writer(staging / bag_out.name, version=9, storage_plugin=plugins[storage])
        writer.open()
        try:
            store = m.typestore()
            image_type = m.COMPRESSED_IMAGE_TYPE if compressed else m.IMAGE_TYPE
            indices = list(range(len(rows[0]))) if rig else [None]
            image_conns = [writer.add_connection(topics.image_topic(compressed, i), image_type, typestore=store)
                           for i in indices]
            info_conns = [writer.add_connection(topics.camera_info_topic(i), m.CAMERA_INFO_TYPE, typestore=store)
                          for i in indices]
            pose_conn = writer.add_connection(topics.ground_truth_pose, m.POSE_STAMPED_TYPE, typestore=store)
            if ground_truth_tf:
                tf_conn = writer.add_connection("/tf", m.TF_TYPE, typestore=store)
                static_conn = writer.add_connection("/tf_static", m.TF_TYPE, typestore=store,
                                                    offered_qos_profiles=[_latched_qos()])
                writer.write(static_conn, start_ns, store.serialize_cdr(_tf_message(mounts, start_ns), m.TF_TYPE))

            for index, row in enumerate(rows):
                ns = start_ns + index * period_ns
                for frame, image_conn, info_conn, (_, _, optical_frame) in zip(row, image_conns, info_conns, mounts):
                    rgb = read_image(frame.image_path)
                    if (rgb.shape[1], rgb.shape[0]) != (frame.camera.width, frame.camera.height):
                        raise DatasetError(
                            f"image {frame.image_path} is {rgb.shape[1]}x{rgb.shape[0]} but its camera says "
                            f"{frame.camera.width}x{frame.camera.height}; fix the dataset's cameras.txt")
                    head = m.header(ns, optical_frame)
                    frame_encoding = encoding if encoding != "auto" else ("mono8" if is_grey(rgb) else "rgb8")
                    image_msg = (_compressed_msg(rgb, head, jpeg_quality, grey=frame_encoding == "mono8") if compressed
                                 else _image_msg(rgb, head, frame_encoding))
                    info_msg = m.camera_to_camera_info(frame.camera, ns, optical_frame)
                    # Camera info first: a subscriber pairing each image with the latest info gets the right one.
                    writer.write(info_conn, ns, store.serialize_cdr(info_msg, m.CAMERA_INFO_TYPE))
                    writer.write(image_conn, ns, store.serialize_cdr(image_msg, image_type))
                map_from_base = (base_from_first @ row[0].cam_from_world).inverse()
                # the ground-truth pose: a rig's base, a single camera's optical frame
                map_from_pose = map_from_base if rig else map_from_base @ base_from_first
                pose_msg = types[m.POSE_STAMPED_TYPE](header=m.header(ns, topics.map_frame),
                                                      pose=m.pose_to_msg(map_from_pose))
                writer.write(pose_conn, ns, store.serialize_cdr(pose_msg, m.POSE_STAMPED_TYPE))
                if ground_truth_tf:
                    tf = _tf_message([(map_from_base, topics.map_frame, body_frame)], ns)
                    writer.write(tf_conn, ns, store.serialize_cdr(tf, m.TF_TYPE))
        except BaseException:
            writer.abort()  # the staging folder goes away below; only release the file handles
            raise
        writer.close()
        if bag_out.exists():
            shutil.rmtree(bag_out)
        os.replace(staging / bag_out.name, bag_out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return bag_out


def is_grey(rgb: np.ndarray) -> bool:
    """True when the three channels of an (H, W, 3) image are equal (read_image of a grey file)."""
    return bool(np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(rgb[:, :, 1], rgb[:, :, 2]))


def _grey(rgb: np.ndarray) -> np.ndarray:
    """(H, W) uint8: the grey image itself, or the luminance of a colour one."""
    import cv2

    return np.ascontiguousarray(rgb[:, :, 0]) if is_grey(rgb) else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _image_msg(rgb: np.ndarray, head, encoding: str):
    height, width = rgb.shape[:2]
    if encoding == "mono8":
        pixels, channels = _grey(rgb), 1
    else:
        pixels, channels = (rgb if encoding == "rgb8" else rgb[:, :, ::-1]), 3
    return m.typestore().types[m.IMAGE_TYPE](
        header=head, height=height, width=width, encoding=encoding, is_bigendian=0, step=channels * width,
        data=np.ascontiguousarray(pixels).reshape(-1))


def _compressed_msg(rgb: np.ndarray, head, quality: int, grey: bool = False):
    import cv2

    pixels = _grey(rgb) if grey else np.ascontiguousarray(rgb[:, :, ::-1])
    ok, buffer = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise DatasetError("OpenCV could not JPEG-encode an image")
    # image_transport's format string: the raw encoding, then the codec (a grey JPEG for mono8).
    return m.typestore().types[m.COMPRESSED_IMAGE_TYPE](
        header=head, format="mono8; jpeg compressed mono8" if grey else "rgb8; jpeg compressed bgr8",
        data=np.asarray(buffer, dtype=np.uint8).reshape(-1))


def _tf_message(transforms: list[tuple[Pose, str, str]], ns: int):
    types = m.typestore().types
    stamped = [types["geometry_msgs/msg/TransformStamped"](
        header=m.header(ns, parent), child_frame_id=child, transform=m.transform_msg(parent_from_child))
        for parent_from_child, parent, child in transforms]
    return types[m.TF_TYPE](transforms=stamped)


def _latched_qos():
    """/tf_static's QoS (reliable, transient local), so that `ros2 bag play` latches it."""
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

    zero = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL, zero, zero,
               QosLiveliness.AUTOMATIC, zero, False)
