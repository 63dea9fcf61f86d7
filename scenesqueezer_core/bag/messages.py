"""Core objects <-> rosbags message objects (no ROS install needed: rosbags' pure-Python types).

Same conventions as the node, so that a bag replayed over DDS and the same bag evaluated offline
see identical cameras, images and poses; the camera and image conversions are duck-typed on the
message fields and ``scenesqueezer_ros`` (conversions, image_conversion) calls them for live messages:

* Poses on ROS topics are the camera optical frame's pose in the map frame (``world_from_cam``);
  the core holds ``cam_from_world``.
* ROS puts pixel centres at integer coordinates, COLMAP at +0.5: the principal point shifts by
  half a pixel between ``CameraInfo.k`` and the core ``Camera``.
"""

from __future__ import annotations

import io
import sys
import warnings
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from ..errors import CameraModelError, ImageError
from ..types import Camera, Pose

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
POSE_STAMPED_TYPE = "geometry_msgs/msg/PoseStamped"
POSE_COV_STAMPED_TYPE = "geometry_msgs/msg/PoseWithCovarianceStamped"
ODOMETRY_TYPE = "nav_msgs/msg/Odometry"
TF_TYPE = "tf2_msgs/msg/TFMessage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE)
POSE_TYPES = (POSE_STAMPED_TYPE, POSE_COV_STAMPED_TYPE, ODOMETRY_TYPE)

# encoding -> (channels, numpy dtype, OpenCV conversion to RGB or None)
_ENCODINGS: dict[str, tuple[int, type, int | None]] = {
    "rgb8": (3, np.uint8, None),
    "bgr8": (3, np.uint8, cv2.COLOR_BGR2RGB),
    "rgba8": (4, np.uint8, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, np.uint8, cv2.COLOR_BGRA2RGB),
    "rgb16": (3, np.uint16, None),
    "bgr16": (3, np.uint16, cv2.COLOR_BGR2RGB),
    "mono8": (1, np.uint8, cv2.COLOR_GRAY2RGB),
    "8UC1": (1, np.uint8, cv2.COLOR_GRAY2RGB),
    "mono16": (1, np.uint16, cv2.COLOR_GRAY2RGB),
    "16UC1": (1, np.uint16, cv2.COLOR_GRAY2RGB),
    # OpenCV names Bayer patterns after the second row's first two pixels, hence the shift.
    "bayer_rggb8": (1, np.uint8, cv2.COLOR_BayerBG2RGB),
    "bayer_bggr8": (1, np.uint8, cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg8": (1, np.uint8, cv2.COLOR_BayerGR2RGB),
    "bayer_grbg8": (1, np.uint8, cv2.COLOR_BayerGB2RGB),
    "bayer_rggb16": (1, np.uint16, cv2.COLOR_BayerBG2RGB),
    "bayer_bggr16": (1, np.uint16, cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg16": (1, np.uint16, cv2.COLOR_BayerGR2RGB),
    "bayer_grbg16": (1, np.uint16, cv2.COLOR_BayerGB2RGB),
    # ROS "yuv422" is UYVY byte order; "yuv422_yuy2" is YUYV.
    "yuv422": (2, np.uint8, cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": (2, np.uint8, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": (2, np.uint8, cv2.COLOR_YUV2RGB_YUY2),
    "yuyv": (2, np.uint8, cv2.COLOR_YUV2RGB_YUY2),
}

SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_ENCODINGS)

# A few hundred bytes of JPEG/PNG header can declare a 30000x30000 image; OpenCV would allocate
# its pixels (2.7 GB) before finding out the data is missing. 64 Mpx is far above any camera.
MAX_COMPRESSED_PIXELS = 64_000_000


@lru_cache(maxsize=1)
def typestore():
    """The message definitions of ROS 2 Kilted, the distribution of the project's rclpy wheels."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int):
    Time = typestore().types["builtin_interfaces/msg/Time"]
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def header(ns: int, frame_id: str):
    Header = typestore().types["std_msgs/msg/Header"]
    return Header(stamp=ns_to_stamp(ns), frame_id=frame_id)


def _quaternion_msg(R: np.ndarray):
    """(3, 3) rotation -> geometry_msgs/Quaternion."""
    x, y, z, w = Rotation.from_matrix(R).as_quat()
    return typestore().types["geometry_msgs/msg/Quaternion"](x=float(x), y=float(y), z=float(z), w=float(w))


def _xyz(msg_type: str, t: np.ndarray):
    """(3,) vector -> a geometry_msgs Point or Vector3."""
    return typestore().types[msg_type](x=float(t[0]), y=float(t[1]), z=float(t[2]))


def pose_to_msg(parent_from_child: Pose):
    """Core Pose (parent_from_child) -> geometry_msgs/Pose."""
    return typestore().types["geometry_msgs/msg/Pose"](
        position=_xyz("geometry_msgs/msg/Point", parent_from_child.t), orientation=_quaternion_msg(parent_from_child.R))


def transform_msg(parent_from_child: Pose):
    """Core Pose -> geometry_msgs/Transform."""
    return typestore().types["geometry_msgs/msg/Transform"](
        translation=_xyz("geometry_msgs/msg/Vector3", parent_from_child.t), rotation=_quaternion_msg(parent_from_child.R))


def msg_to_pose(position, orientation) -> Pose:
    """(geometry_msgs Point/Vector3, Quaternion) -> core Pose (parent_from_child)."""
    q = np.array([orientation.x, orientation.y, orientation.z, orientation.w], dtype=np.float64)
    norm = np.linalg.norm(q)
    if not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f"invalid quaternion {q.tolist()}")
    return Pose(Rotation.from_quat(q / norm).as_matrix(), np.array([position.x, position.y, position.z]))


def camera_info_fields(camera: Camera) -> dict[str, Any]:
    """The sensor_msgs/CameraInfo fields of a core Camera (plumb_bob distortion): width, height,
    distortion_model, d (5,), k (9,), r (9,), p (12,) float64. One implementation for bag messages
    (``camera_to_camera_info``) and live ones (``scenesqueezer_ros.conversions``)."""
    K = camera.K.copy()
    K[0, 2] -= 0.5
    K[1, 2] -= 0.5
    p = camera.params
    if camera.model in ("PINHOLE", "SIMPLE_PINHOLE"):
        d = [0.0] * 5
    elif camera.model == "SIMPLE_RADIAL":
        d = [float(p[3]), 0.0, 0.0, 0.0, 0.0]
    elif camera.model == "RADIAL":
        d = [float(p[3]), float(p[4]), 0.0, 0.0, 0.0]
    elif camera.model == "OPENCV":
        d = [*map(float, p[4:8]), 0.0]
    else:  # Camera rejects other models at construction
        raise CameraModelError(f"camera model {camera.model} has no CameraInfo equivalent")
    P = np.zeros((3, 4))
    P[:, :3] = K
    return {"width": camera.width, "height": camera.height, "distortion_model": "plumb_bob",
            "d": np.array(d, dtype=np.float64), "k": K.reshape(-1), "r": np.eye(3).reshape(-1), "p": P.reshape(-1)}


def camera_to_camera_info(camera: Camera, ns: int, frame_id: str):
    """Core Camera -> sensor_msgs/CameraInfo (rosbags object, plumb_bob distortion)."""
    types = typestore().types
    return types["sensor_msgs/msg/CameraInfo"](
        header=header(ns, frame_id), **camera_info_fields(camera), binning_x=0, binning_y=0,
        roi=types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                      do_rectify=False),
    )


def camera_info_to_camera(msg) -> Camera:
    """sensor_msgs/CameraInfo -> core Camera (PINHOLE, or OPENCV for plumb_bob distortion).

    Duck-typed on CameraInfo's fields: the node converts live messages with it too (binning and ROI
    included), so that offline and DDS evaluations see the same intrinsics.
    """
    k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if k[0, 0] <= 0 or k[1, 1] <= 0:
        raise CameraModelError(
            f"CameraInfo has no calibration (K = {k.reshape(-1).tolist()}); record the bag with a "
            "calibrated camera driver or pass a dataset with known intrinsics"
        )
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2] + 0.5, k[1, 2] + 0.5
    width, height = int(msg.width), int(msg.height)
    roi = msg.roi
    if roi.width > 0 and roi.height > 0 and (roi.width, roi.height) != (width, height):
        cx, cy = cx - roi.x_offset, cy - roi.y_offset
        width, height = int(roi.width), int(roi.height)
    bin_x, bin_y = max(1, int(msg.binning_x)), max(1, int(msg.binning_y))
    if bin_x > 1 or bin_y > 1:
        fx, cx, width = fx / bin_x, cx / bin_x, width // bin_x
        fy, cy, height = fy / bin_y, cy / bin_y, height // bin_y
    distortion = np.asarray(msg.d, dtype=np.float64)
    if distortion.size == 0 or not np.any(distortion):
        return Camera("PINHOLE", width, height, np.array([fx, fy, cx, cy]))
    if msg.distortion_model in ("plumb_bob", "rational_polynomial"):
        k1, k2, p1, p2 = (list(distortion[:4]) + [0.0] * 4)[:4]
        if np.any(np.abs(distortion[4:]) > 1e-12):
            raise CameraModelError(
                f"CameraInfo distortion {msg.distortion_model} has higher-order terms "
                f"{distortion[4:].tolist()} that the OPENCV model cannot represent; rectify the images "
                "(image_proc) and record the rectified CameraInfo"
            )
        return Camera("OPENCV", width, height, np.array([fx, fy, cx, cy, k1, k2, p1, p2]))
    raise CameraModelError(
        f"unsupported CameraInfo distortion model {msg.distortion_model!r}; supported: plumb_bob, "
        "rational_polynomial (k3..k6 = 0), or none. Rectify the images with image_proc."
    )


def image_msg_to_rgb(msg) -> np.ndarray:
    """sensor_msgs Image or CompressedImage (rosbags object) -> (H, W, 3) uint8 RGB."""
    return compressed_image_to_rgb(msg) if hasattr(msg, "format") else raw_image_to_rgb(msg)


def raw_image_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image (a rosbags or an rclpy message: encoding, height, width, step, is_bigendian,
    data) -> (H, W, 3) uint8 RGB, a new array. ImageError for unsupported encodings and for buffers
    inconsistent with width/height/step. 16-bit images are scaled over the full range (value / 257)."""
    encoding = msg.encoding
    if encoding not in _ENCODINGS:
        raise ImageError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}. "
            "Republish the images in one of them (e.g. with image_proc) or use the compressed transport."
        )
    channels, dtype, conversion = _ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageError(f"image has no pixels: {width}x{height}")
    item = np.dtype(dtype).itemsize
    row_bytes = width * channels * item
    if channels == 2:  # packed 4:2:2: two bytes per pixel
        row_bytes = width * 2
        if width % 2:
            raise ImageError(f"{encoding} packs pixel pairs, so its width must be even; got {width}")
    if step < row_bytes:
        raise ImageError(
            f"image step {step} is smaller than width * bytes per pixel = {row_bytes} "
            f"({width} px of {encoding}); the publisher filled the message wrongly"
        )
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size < step * height:
        raise ImageError(
            f"image data has {data.size} bytes, but height * step = {height} * {step} = "
            f"{height * step}; the message is truncated or its size fields are wrong"
        )
    rows = data[: step * height].reshape(height, step)[:, :row_bytes]
    pixels: np.ndarray  # (H, W, C) or (H, W)
    if channels == 2:
        pixels = np.ascontiguousarray(rows).reshape(height, width, 2)
    else:
        pixels = np.ascontiguousarray(rows).view(dtype)
        if item > 1:
            if bool(msg.is_bigendian) != (sys.byteorder == "big"):
                pixels = pixels.byteswap()
        pixels = pixels.reshape(height, width, channels) if channels > 1 else pixels.reshape(height, width)
    if pixels.dtype == np.uint16:
        # Round-to-nearest division by 257 maps 0..65535 onto 0..255 exactly at both ends.
        pixels = ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if conversion is not None:
        try:
            pixels = cv2.cvtColor(pixels, conversion)
        except cv2.error as error:
            raise ImageError(f"OpenCV cannot convert this {width}x{height} {encoding} image: {error}") from error
    return np.ascontiguousarray(pixels)


def compressed_image_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG, PNG, ...; rosbags or rclpy: format, data) -> (H, W, 3) uint8 RGB."""
    fmt = (msg.format or "").lower()
    if "compresseddepth" in fmt:
        raise ImageError(
            f"compressed format {msg.format!r} is a depth image; subscribe the colour or mono stream"
        )
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    if buffer.size == 0:
        raise ImageError("compressed image message has no data")
    width, height = _compressed_image_size(bytes(msg.data), msg.format)
    if width * height > MAX_COMPRESSED_PIXELS:
        raise ImageError(
            f"compressed image declares {width}x{height} pixels, more than {MAX_COMPRESSED_PIXELS} "
            "(a corrupt header or a decompression bomb); publish camera-sized images"
        )
    decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise ImageError(
            f"OpenCV could not decode the compressed image (format {msg.format!r}, {buffer.size} "
            "bytes); publish JPEG or PNG"
        )
    if decoded.dtype == np.uint16:
        decoded = ((decoded.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if decoded.ndim == 2:
        return cv2.cvtColor(decoded, cv2.COLOR_GRAY2RGB)
    if decoded.shape[2] == 4:
        return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def _compressed_image_size(data: bytes, fmt: str) -> tuple[int, int]:
    """(width, height) from the header alone, without decoding pixels (Pillow opens lazily)."""
    from PIL import Image as PilImage

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PilImage.DecompressionBombWarning)
            with PilImage.open(io.BytesIO(data)) as probe:
                return probe.size
    except Exception as error:  # any header Pillow cannot read is refused alike
        raise ImageError(
            f"could not decode the header of the compressed image (format {fmt!r}, {len(data)} bytes): "
            f"{error}; publish JPEG or PNG"
        ) from error
