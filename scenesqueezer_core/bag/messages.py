"""Core objects <-> rosbags message objects (no ROS install needed: rosbags' pure-Python types).

Same conventions as the node (``scenesqueezer_ros/conversions.py``), so that a bag replayed over
DDS and the same bag evaluated offline see identical cameras and poses:

* Poses on ROS topics are the camera optical frame's pose in the map frame (``world_from_cam``);
  the core holds ``cam_from_world``.
* ROS puts pixel centres at integer coordinates, COLMAP at +0.5: the principal point shifts by
  half a pixel between ``CameraInfo.k`` and the core ``Camera``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.spatial.transform import Rotation

from ..errors import CameraModelError
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


def pose_to_msg(parent_from_child: Pose):
    """Core Pose (parent_from_child) -> geometry_msgs/Pose."""
    types = typestore().types
    x, y, z, w = Rotation.from_matrix(parent_from_child.R).as_quat()
    t = parent_from_child.t
    return types["geometry_msgs/msg/Pose"](
        position=types["geometry_msgs/msg/Point"](x=float(t[0]), y=float(t[1]), z=float(t[2])),
        orientation=types["geometry_msgs/msg/Quaternion"](x=float(x), y=float(y), z=float(z), w=float(w)),
    )


def transform_msg(parent_from_child: Pose):
    """Core Pose -> geometry_msgs/Transform."""
    types = typestore().types
    x, y, z, w = Rotation.from_matrix(parent_from_child.R).as_quat()
    t = parent_from_child.t
    return types["geometry_msgs/msg/Transform"](
        translation=types["geometry_msgs/msg/Vector3"](x=float(t[0]), y=float(t[1]), z=float(t[2])),
        rotation=types["geometry_msgs/msg/Quaternion"](x=float(x), y=float(y), z=float(z), w=float(w)),
    )


def msg_to_pose(position, orientation) -> Pose:
    """(geometry_msgs Point/Vector3, Quaternion) -> core Pose (parent_from_child)."""
    q = np.array([orientation.x, orientation.y, orientation.z, orientation.w], dtype=np.float64)
    norm = np.linalg.norm(q)
    if not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f"invalid quaternion {q.tolist()}")
    return Pose(Rotation.from_quat(q / norm).as_matrix(), [position.x, position.y, position.z])


def camera_to_camera_info(camera: Camera, ns: int, frame_id: str):
    """Core Camera -> sensor_msgs/CameraInfo (plumb_bob distortion)."""
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
    types = typestore().types
    return types["sensor_msgs/msg/CameraInfo"](
        header=header(ns, frame_id), height=camera.height, width=camera.width,
        distortion_model="plumb_bob", d=np.array(d, dtype=np.float64),
        k=K.reshape(-1), r=np.eye(3).reshape(-1), p=P.reshape(-1),
        binning_x=0, binning_y=0,
        roi=types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                      do_rectify=False),
    )


def camera_info_to_camera(msg) -> Camera:
    """sensor_msgs/CameraInfo -> core Camera (PINHOLE, or OPENCV for plumb_bob distortion).

    Mirrors ``scenesqueezer_ros.conversions.camera_info_to_camera`` (binning and ROI included) so
    that offline and DDS evaluations see the same intrinsics.
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
    from rosbags.image import ImageError as RosbagsImageError
    from rosbags.image import message_to_cvimage

    from ..errors import ImageError

    try:
        rgb = message_to_cvimage(msg, "rgb8")
    except (RosbagsImageError, ValueError, TypeError) as exc:
        encoding = getattr(msg, "encoding", getattr(msg, "format", "?"))
        raise ImageError(f"cannot decode a bag image with encoding/format {encoding!r}: {exc}") from exc
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    if rgb.dtype != np.uint8:  # 16-bit: full range to 8 bits, as the node does
        rgb = (rgb.astype(np.float64) / 257.0).round().astype(np.uint8)
    return np.ascontiguousarray(rgb)
