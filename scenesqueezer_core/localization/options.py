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
    stage: str = "node"  # image | retrieval | matching | pose | checks | prior | node
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
    Option("top_k_share", 1.0, "... at most this share of the map's candidates (rounded up): a "
           "compressed map has few candidates, each a cluster of many frames (1.0: top_k alone).",
           "retrieval", value_range=(0.01, 1.0)),
    Option("max_similarity_gap", 2.0, "Retrieved candidates whose global similarity trails the best "
           "one's by more than this are not matched (2.0: none is dropped; similarities are cosines).",
           "retrieval", value_range=(0.0, 2.0)),
    Option("retrieval", "vlad", "Global retrieval model: 'vlad' (the map's VLAD codebook and "
           "whitening, cosine top-k).", "retrieval", choices=("vlad",)),
    Option("matcher", "", "2D-3D matcher: empty for the map's feature setup default, else one of "
           "the matchers of scenesqueezer_core.features.MATCHERS with its default conf.", "matching",
           choices=("", "mnn", "lightglue", "lighterglue")),
    Option("early_exit_inliers", 200, "Stop matching further candidates once the registered ones "
           "that agree with the best-supported one hold this many inliers (0: match every retrieved "
           "candidate).", "matching",
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
    # The odometry prior (prior.py): used when the caller predicts the pose (the node, from TF).
    Option("prior_radius_m", 5.0, "Odometry prior: the narrowed search takes the map candidates with a "
           "frame within this distance of the predicted camera centre (plus the allowed drift) ...",
           "prior", value_range=(0.1, 10000.0)),
    Option("prior_max_view_angle_deg", 60.0, "... and a quarter of whose map points lie within this "
           "angle of the predicted viewing direction.", "prior", value_range=(1.0, 180.0)),
    Option("prior_top_k", 5, "Candidates matched in the prior-narrowed search: the near ones most "
           "similar to the query.", "prior", value_range=(1, 1000)),
    Option("prior_tolerance_m", 1.0, "A pose agrees with the odometry prediction within this distance "
           "plus prior_drift_m_per_m per metre travelled since the last accepted pose; else it is "
           "refused (failure disagrees_with_prior) unless the next frame confirms it.", "prior",
           value_range=(0.0, 10000.0)),
    Option("prior_tolerance_deg", 5.0, "... and within this angle plus prior_drift_deg_per_m per metre "
           "travelled.", "prior", value_range=(0.0, 180.0)),
    Option("prior_drift_m_per_m", 0.1, "Odometry position drift allowed per metre travelled.", "prior",
           value_range=(0.0, 100.0)),
    Option("prior_drift_deg_per_m", 1.0, "Odometry heading drift allowed per metre travelled, degrees.",
           "prior", value_range=(0.0, 180.0)),
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
    Option("odom_frame", "", "Odometry frame. Set it for the odometry prior (TF odom->base_frame->camera "
           "between frames) and, with tf_mode 'map_to_odom', to publish map->odom computed from a TF "
           "lookup of odom->camera. Empty: no odometry."),
    Option("base_frame", "base_link", "Robot base frame: /initialpose gives its pose in the map (RViz's "
           "2D Pose Estimate); TF base_frame->camera turns it into the camera's."),
    Option("odometry_prior", True, "With odom_frame set and an accepted pose (or /initialpose), search "
           "the map near the pose predicted by odometry first (options prior_*), refuse poses that "
           "contradict it, and fall back to the global search."),
    Option("mode", "continuous", "'continuous': localize every frame; 'on_demand': only the next frame "
           "after a ~/trigger_localization call, which answers with its result; 'until_localized': every "
           "frame until localized_poses_to_stop consecutive poses agree, then only after "
           "~/trigger_localization.", choices=("continuous", "on_demand", "until_localized")),
    Option("localized_poses_to_stop", 3, "mode until_localized: consecutive agreeing poses (through "
           "odometry, or equal poses without it) after which the node stops localizing.",
           value_range=(1, 10000)),
    Option("camera_frame", "", "Camera optical frame (z forward, x right, y down). Empty: the image "
           "header's frame_id."),
    Option("cameras", "", "Multi-camera rig: comma-separated camera names (e.g. 'front,left,right'). The "
           "node then subscribes image_<i> and camera_info_<i> (i = 0, 1, ... in this order; remap them), "
           "takes each camera's extrinsics from TF (base_frame -> the image header's frame_id), groups one "
           "frame per camera by stamp and publishes one pose of base_frame from all cameras' matches "
           "(core: localization/rig.py; no odometry prior in rig mode). Empty: one camera on image_topic."),
    Option("rig_stamp_tolerance_s", 0.02, "Rig: the cameras' frames whose stamps lie within this many "
           "seconds of each other form one rig frame.", value_range=(0.0, 10.0)),
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
