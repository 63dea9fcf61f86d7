"""Core objects <-> ROS messages.

Poses: the core holds ``cam_from_world`` (x_cam = R X + t); ROS messages carry the camera optical
frame's pose in the map frame (REP 103/105), i.e. ``world_from_cam``: position = camera centre,
orientation = R^T.

Covariance: pycolmap 4.2 reports the 6x6 covariance of ``cam_from_world`` over (d_rot, d_t) in that
order, where the rotation block is in the tangent space of Ceres' quaternion manifold:
R' = Exp(2 d_rot) R (left perturbation, *half* angle: the manifold adds d_rot to the quaternion's
half-angle), t' = t + d_t. Checked by Monte Carlo against pycolmap itself (test_ros_conversions.py).
ROS wants (x, y, z, rot_x, rot_y, rot_z) of the camera pose in the map frame, rotations about the
map's fixed axes: with a = 2 d_rot,  d_center = -R^T [t]x a - R^T d_t  and  d_phi = -R^T a.
"""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import Pose as PoseMsg
from geometry_msgs.msg import Quaternion, Transform, TransformStamped, Vector3
from geometry_msgs.msg import Point
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, PointCloud2, PointField

from scenesqueezer_core.bag import messages as bag_messages
from scenesqueezer_core.types import Camera, Pose


def _skew(v: np.ndarray) -> np.ndarray:
    x, y, z = v
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def cam_from_world_to_pose_msg(cam_from_world: Pose) -> PoseMsg:
    """Core cam_from_world -> geometry_msgs/Pose of the camera in the map frame."""
    world_from_cam = cam_from_world.inverse()
    x, y, z, w = Rotation.from_matrix(world_from_cam.R).as_quat()
    msg = PoseMsg()
    msg.position = Point(x=float(world_from_cam.t[0]), y=float(world_from_cam.t[1]),
                         z=float(world_from_cam.t[2]))
    msg.orientation = Quaternion(x=float(x), y=float(y), z=float(z), w=float(w))
    return msg


def pose_msg_to_cam_from_world(msg: PoseMsg) -> Pose:
    """geometry_msgs/Pose of the camera in the map frame -> core cam_from_world."""
    q = msg.orientation
    world_from_cam = Pose(
        Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix(),
        np.array([msg.position.x, msg.position.y, msg.position.z]),
    )
    return world_from_cam.inverse()


def pose_to_transform(pose: Pose) -> Transform:
    """A core Pose (parent_from_child) -> geometry_msgs/Transform."""
    x, y, z, w = Rotation.from_matrix(pose.R).as_quat()
    return Transform(
        translation=Vector3(x=float(pose.t[0]), y=float(pose.t[1]), z=float(pose.t[2])),
        rotation=Quaternion(x=float(x), y=float(y), z=float(z), w=float(w)),
    )


def transform_to_pose(transform: Transform) -> Pose:
    """geometry_msgs/Transform (parent_from_child) -> core Pose."""
    q, v = transform.rotation, transform.translation
    return Pose(Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix(), np.array([v.x, v.y, v.z]))


def make_transform_stamped(parent_from_child: Pose, parent: str, child: str, stamp) -> TransformStamped:
    msg = TransformStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = parent
    msg.child_frame_id = child
    msg.transform = pose_to_transform(parent_from_child)
    return msg


def covariance_to_ros(cam_from_world: Pose, covariance: np.ndarray) -> np.ndarray:
    """(6, 6) pycolmap covariance of cam_from_world -> (36,) row-major ROS covariance of the
    camera pose in the map frame over (x, y, z, rot_x, rot_y, rot_z). See the module docstring."""
    covariance = np.asarray(covariance, dtype=np.float64).reshape(6, 6)
    R_t = cam_from_world.R.T
    # Columns: pycolmap's (d_rot_half (3), d_t (3)); rows: ROS (d_center (3), d_phi (3)).
    jacobian = np.zeros((6, 6))
    jacobian[:3, :3] = -2.0 * R_t @ _skew(cam_from_world.t)
    jacobian[:3, 3:] = -R_t
    jacobian[3:, :3] = -2.0 * R_t
    ros = jacobian @ covariance @ jacobian.T
    return (0.5 * (ros + ros.T)).reshape(36)


def camera_info_to_camera(msg: CameraInfo) -> Camera:
    """sensor_msgs/CameraInfo -> core Camera (PINHOLE, or OPENCV for plumb_bob distortion).

    ROS puts pixel centres at integer coordinates, COLMAP at +0.5: the principal point shifts by
    half a pixel. Binning and a region of interest are applied as the camera driver describes them.
    """
    # One implementation for live messages and bag messages (duck-typed on CameraInfo's fields), so
    # that the node and the offline replay see exactly the same intrinsics.
    return bag_messages.camera_info_to_camera(msg)


def camera_to_camera_info(camera: Camera, header=None) -> CameraInfo:
    """Core Camera -> sensor_msgs/CameraInfo (for publishers and tests): the bag export's fields."""
    fields = bag_messages.camera_info_fields(camera)
    msg = CameraInfo()
    if header is not None:
        msg.header = header
    msg.width, msg.height = fields["width"], fields["height"]
    msg.distortion_model = fields["distortion_model"]
    msg.d, msg.k, msg.r, msg.p = (fields[name].tolist() for name in ("d", "k", "r", "p"))
    return msg


_POINT_FIELDS = [
    PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
    PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
    PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
    # RViz reads colour from a float32 field named rgb holding 0x00RRGGBB bytes.
    PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1),
]


def points_to_cloud(points_xyz: np.ndarray, colors_rgb: np.ndarray | None, frame_id: str, stamp) -> PointCloud2:
    """(N, 3) xyz and (N, 3) uint8 RGB -> unorganized sensor_msgs/PointCloud2 (x, y, z, rgb)."""
    points_xyz = np.asarray(points_xyz, dtype=np.float32).reshape(-1, 3)
    count = len(points_xyz)
    records = np.zeros(count, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4")])
    records["x"], records["y"], records["z"] = points_xyz.T
    if colors_rgb is not None and len(colors_rgb) == count:
        c = np.asarray(colors_rgb, dtype=np.uint32).reshape(-1, 3)
        records["rgb"] = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
    msg = PointCloud2()
    msg.header.frame_id = frame_id
    msg.header.stamp = stamp
    msg.height, msg.width = 1, count
    msg.fields = _POINT_FIELDS
    msg.is_bigendian = False
    msg.point_step = 16
    msg.row_step = 16 * count
    msg.is_dense = True
    msg.data = records.tobytes()
    return msg


def cloud_to_points(msg: PointCloud2) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of points_to_cloud: (N, 3) float32 xyz, (N, 3) uint8 RGB."""
    records = np.frombuffer(msg.data, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4")])
    xyz = np.stack([records["x"], records["y"], records["z"]], axis=1)
    rgb = np.stack([(records["rgb"] >> s) & 0xFF for s in (16, 8, 0)], axis=1).astype(np.uint8)
    return xyz, rgb
