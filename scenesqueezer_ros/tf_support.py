"""TF output without depending on tf2_ros, which has no PyPI wheel.

With a full ROS 2 install, tf2_ros' broadcaster and buffer are used. Otherwise transforms go out
on /tf as ``tf2_msgs/TFMessage`` through a plain publisher (scripts/build_ros_msgs.sh builds a
wire-compatible tf2_msgs when the venv has none), and ``odom -> camera`` lookups use a small buffer
that keeps the newest transform per child frame (no interpolation in time; good enough for the
map->odom correction, which changes slowly).
"""

from __future__ import annotations

import threading

from geometry_msgs.msg import TransformStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from scenesqueezer_core.types import Pose

from .conversions import transform_to_pose

try:
    import tf2_ros  # type: ignore

    HAVE_TF2_ROS = True
except ImportError:
    HAVE_TF2_ROS = False

try:
    from tf2_msgs.msg import TFMessage

    HAVE_TF2_MSGS = True
except ImportError:
    HAVE_TF2_MSGS = False

TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
TF_STATIC_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)


class TransformBroadcaster:
    """Publishes TransformStamped messages on /tf."""

    def __init__(self, node: Node) -> None:
        if HAVE_TF2_ROS:
            self._broadcaster = tf2_ros.TransformBroadcaster(node)
            self._publisher = None
        elif HAVE_TF2_MSGS:
            self._broadcaster = None
            self._publisher = node.create_publisher(TFMessage, "/tf", TF_QOS)
        else:
            raise RuntimeError(
                "publish_tf needs tf2_msgs: install ROS 2's tf2_msgs, or run "
                "`bash scripts/build_ros_msgs.sh <venv>` which builds a compatible one"
            )

    def send(self, transform: TransformStamped) -> None:
        if self._broadcaster is not None:
            self._broadcaster.sendTransform(transform)
        else:
            self._publisher.publish(TFMessage(transforms=[transform]))


class TransformLookup:
    """lookup(target, source) -> Pose target_from_source from /tf and /tf_static, or None."""

    def __init__(self, node: Node) -> None:
        self._node = node
        if HAVE_TF2_ROS:
            self._buffer = tf2_ros.Buffer()
            self._listener = tf2_ros.TransformListener(self._buffer, node)
            return
        self._buffer = None
        self._lock = threading.Lock()
        self._parent_from_child: dict[str, tuple[str, Pose]] = {}
        if HAVE_TF2_MSGS:
            node.create_subscription(TFMessage, "/tf", self._on_tf, TF_QOS)
            node.create_subscription(TFMessage, "/tf_static", self._on_tf, TF_STATIC_QOS)

    def _on_tf(self, msg) -> None:
        with self._lock:
            for transform in msg.transforms:
                self._parent_from_child[transform.child_frame_id.lstrip("/")] = (
                    transform.header.frame_id.lstrip("/"), transform_to_pose(transform.transform))

    def _root_from_frame(self, frame: str) -> tuple[str, Pose]:
        pose = Pose.identity()
        seen = {frame}
        while frame in self._parent_from_child:
            parent, parent_from_frame = self._parent_from_child[frame]
            pose = parent_from_frame @ pose
            frame = parent
            if frame in seen:
                break
            seen.add(frame)
        return frame, pose

    def lookup(self, target: str, source: str, stamp=None) -> Pose | None:
        if self._buffer is not None:
            from rclpy.time import Time

            try:
                msg = self._buffer.lookup_transform(target, source, Time.from_msg(stamp) if stamp else Time())
            except Exception:  # noqa: BLE001 - tf2 raises several exception types for "not available"
                try:
                    msg = self._buffer.lookup_transform(target, source, Time())
                except Exception:  # noqa: BLE001 - as above, at the latest stamp: not available yet
                    return None
            return transform_to_pose(msg.transform)
        with self._lock:
            root_t, root_from_target = self._root_from_frame(target.lstrip("/"))
            root_s, root_from_source = self._root_from_frame(source.lstrip("/"))
        if root_t != root_s:
            return None
        return root_from_target.inverse() @ root_from_source
