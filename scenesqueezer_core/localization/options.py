"""The settings of a localizer deployment as plain data: name, default, description, allowed values.

``STAGE_OPTIONS`` configure the localizer's stages (image, retrieval, matching, pose); each pose
check declares its own option beside its code (checks.py); conf.py gathers them all.
``NODE_OPTIONS`` configure the ROS node around the localizer (topics, frames, TF): plain data, so
that the core can read a node's parameter file (``localize --conf``) and the ROS layer generates
its parameter declarations from the same list.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

Value = str | int | float | bool


@dataclass(frozen=True)
class Option:
    name: str
    default: Value
    description: str
    stage: str = "node"  # image | retrieval | matching | pose | checks | node
    choices: tuple[str, ...] | None = None
    value_range: tuple[float, float] | None = None

    def check(self, value: Any) -> Value:
        """``value`` converted to this option's type; ConfigError naming the option and the fix otherwise."""
        kind = type(self.default)
        if kind is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"option {self.name!r} is {value!r}; set it to true or false")
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ConfigError(f"option {self.name!r} is {value!r}; it takes a whole number")
            value = int(value)
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ConfigError(f"option {self.name!r} is {value!r}; it takes a number")
            value = float(value)
        elif not isinstance(value, str):
            raise ConfigError(f"option {self.name!r} is {value!r}; it takes a string")
        if self.choices and value not in self.choices:
            raise ConfigError(f"option {self.name!r} is {value!r}; set it to one of: {', '.join(self.choices)}")
        if self.value_range is not None and not (self.value_range[0] <= value <= self.value_range[1]):
            raise ConfigError(f"option {self.name!r} is {value!r}; it must lie in "
                              f"[{self.value_range[0]}, {self.value_range[1]}]")
        return value


STAGE_OPTIONS: tuple[Option, ...] = (
    Option("max_image_size", 1600, "Images larger than this (longest side, pixels) are downscaled, "
           "intrinsics alike.", "image", value_range=(64, 100000)),
    Option("top_k", 15, "Number of map candidates (clusters of a compressed map, frames of an "
           "uncompressed one) retrieved per query image.", "retrieval", value_range=(1, 1000)),
    Option("retrieval", "vlad", "Global retrieval model: 'vlad' (the map's VLAD codebook and "
           "whitening, cosine top-k).", "retrieval", choices=("vlad",)),
    Option("matcher", "", "2D-3D matcher: empty for the map's feature setup default, else one of "
           "the matchers of scenesqueezer_core.features.MATCHERS with its default conf.", "matching",
           choices=("", "mnn", "lightglue", "lighterglue")),
    Option("early_exit_inliers", 200, "Stop matching further candidates once the registered ones "
           "hold this many inliers (0: match every retrieved candidate).", "matching",
           value_range=(0, 1000000)),
    Option("precompute_candidates_max", 20000, "Prepare every candidate's features at map load when "
           "the map has at most this many (flat latency from the first frame).", "matching",
           value_range=(0, 10000000)),
    Option("ransac_threshold_px", 12.0, "RANSAC inlier threshold of the PnP, in pixels.", "pose",
           value_range=(0.1, 100.0)),
    Option("ransac_max_trials", 2000, "RANSAC trials per PnP (2000 find a 12 % inlier set with 97 % "
           "probability).", "pose", value_range=(100, 1000000)),
    Option("ransac_seed", 0, "RANSAC random seed, fixed so that offline and online runs agree.", "pose",
           value_range=(0, 2**31 - 1)),
    Option("min_candidate_inliers", 12, "A candidate takes part in the final PnP only with at least "
           "this many RANSAC inliers.", "pose", value_range=(4, 100000)),
    Option("min_candidate_agreement", 0.5, "... and if this share of its inliers fits the best "
           "candidate's pose (else it is a conflicting hypothesis).", "pose", value_range=(0.0, 1.0)),
)

NODE_OPTIONS: tuple[Option, ...] = (
    Option("map_path", "", "Map file (uncompressed SceneMap or CompressedMap) to localize against. "
           "Empty or missing: the node stays up, reports ERROR on /diagnostics and loads the map when "
           "~/reload_map is called."),
    Option("image_topic", "image_raw", "Camera image topic. With image_transport 'compressed' the node "
           "subscribes <image_topic>/compressed."),
    Option("camera_info_topic", "camera_info", "sensor_msgs/CameraInfo topic of the camera."),
    Option("image_transport", "raw", "'raw' (sensor_msgs/Image) or 'compressed' "
           "(sensor_msgs/CompressedImage, JPEG or PNG).", choices=("raw", "compressed")),
    Option("image_qos", "reliable", "QoS of the image and camera-info subscriptions: 'reliable' "
           "(needed for multi-MB frames between processes; matches reliable publishers only) or "
           "'sensor_data' (best effort; matches every publisher, but large frames get lost).",
           choices=("reliable", "sensor_data")),
    Option("device", "auto", "Device for feature extraction and matching: 'auto' (CUDA when "
           "available), 'cpu' or 'cuda'.", choices=("auto", "cpu", "cuda")),
    Option("max_rate_hz", 0.0, "Upper bound on localizations per second (0: as fast as the localizer "
           "runs). Frames arriving in between are dropped, newest kept.", value_range=(0.0, 1000.0)),
    Option("map_frame", "map", "Frame of the map; frame_id of every published pose."),
    Option("odom_frame", "", "Odometry frame. Set together with tf_mode 'map_to_odom' to publish "
           "map->odom computed from a TF lookup of odom->camera."),
    Option("camera_frame", "", "Camera optical frame (z forward, x right, y down). Empty: the image "
           "header's frame_id."),
    Option("publish_tf", False, "Publish the localization on /tf."),
    Option("tf_mode", "map_to_camera", "'map_to_camera': publish map->camera_frame (only when nothing "
           "else gives the camera frame a parent); 'map_to_odom': publish map->odom_frame so that "
           "map->odom->...->camera equals the localized pose.", choices=("map_to_camera", "map_to_odom")),
    Option("autostart", True, "Bring the lifecycle node up to active at start-up (configure: parameters "
           "and map; activate: subscriptions and worker), like nav2's lifecycle manager autostart. False: "
           "wait for lifecycle transitions from a manager or `ros2 lifecycle set`."),
    Option("publish_point_cloud", True, "Publish the map's 3D points once, latched (transient local), "
           "as sensor_msgs/PointCloud2 on ~/map_points for RViz."),
)
