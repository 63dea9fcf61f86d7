"""Every parameter of the localizer node, declared in one place.

``config/localizer.yaml`` mirrors ``PARAMETER_SPECS`` one to one (a test checks it). Values that
configure the core localizer (thresholds, top-k, device, map path) take effect when the map is
(re)loaded: at start-up and on the ``~/reload_map`` service.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.node import Node
from rclpy.parameter import Parameter

from scenesqueezer_core.errors import ConfigError


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    default: str | int | float | bool
    description: str
    choices: tuple[str, ...] | None = None
    value_range: tuple[float, float] | None = None


PARAMETER_SPECS: tuple[ParameterSpec, ...] = (
    ParameterSpec("map_path", "", "Map file (uncompressed SceneMap or CompressedMap) to localize "
                  "against. Empty or missing: the node stays up, reports ERROR on /diagnostics and "
                  "loads the map when ~/reload_map is called."),
    ParameterSpec("image_topic", "image_raw", "Camera image topic. With image_transport "
                  "'compressed' the node subscribes <image_topic>/compressed."),
    ParameterSpec("camera_info_topic", "camera_info", "sensor_msgs/CameraInfo topic of the camera."),
    ParameterSpec("image_transport", "raw", "'raw' (sensor_msgs/Image) or 'compressed' "
                  "(sensor_msgs/CompressedImage, JPEG or PNG).", choices=("raw", "compressed")),
    ParameterSpec("image_qos", "reliable", "QoS of the image and camera-info subscriptions: "
                  "'reliable' (needed for multi-MB frames between processes; matches reliable "
                  "publishers only) or 'sensor_data' (best effort; matches every publisher, but "
                  "large frames get lost).", choices=("reliable", "sensor_data")),
    ParameterSpec("top_k", 15, "Number of map clusters retrieved per query image.",
                  value_range=(1, 1000)),
    ParameterSpec("device", "auto", "Device for feature extraction and matching: 'auto' (CUDA when "
                  "available), 'cpu' or 'cuda'.", choices=("auto", "cpu", "cuda")),
    ParameterSpec("ransac_threshold_px", 12.0, "RANSAC inlier threshold of the PnP, in pixels.",
                  value_range=(0.1, 100.0)),
    ParameterSpec("min_inliers", 40, "A pose with fewer PnP inliers is reported as a failure.",
                  value_range=(6, 100000)),
    ParameterSpec("min_inlier_ratio", 0.2, "A pose whose inliers / correspondences is lower is "
                  "reported as a failure.", value_range=(0.0, 1.0)),
    ParameterSpec("min_hypothesis_margin", 1.6, "The best candidate's inliers must outnumber those of "
                  "the strongest candidate contradicting its pose by this factor (perceptual "
                  "aliasing guard; 0 turns it off).", value_range=(0.0, 100.0)),
    ParameterSpec("max_median_reprojection_error_px", 4.0, "A pose whose inliers' median reprojection "
                  "error is above this many pixels is refused: aliased poses fit their inliers loosely "
                  "(0 turns it off; scale it with ransac_threshold_px).", value_range=(0.0, 100.0)),
    ParameterSpec("max_occluded_inliers", 0.15, "A pose is refused when more than this share of its "
                  "inliers would be hidden behind other map points seen from it (free-space check "
                  "against aliased poses; raise it for maps of scenes that change a lot; 1 turns it "
                  "off).", value_range=(0.0, 1.0)),
    ParameterSpec("max_rate_hz", 0.0, "Upper bound on localizations per second (0: as fast as the "
                  "localizer runs). Frames arriving in between are dropped, newest kept.",
                  value_range=(0.0, 1000.0)),
    ParameterSpec("map_frame", "map", "Frame of the map; frame_id of every published pose."),
    ParameterSpec("odom_frame", "", "Odometry frame. Set together with tf_mode 'map_to_odom' to "
                  "publish map->odom computed from a TF lookup of odom->camera."),
    ParameterSpec("camera_frame", "", "Camera optical frame (z forward, x right, y down). Empty: "
                  "the image header's frame_id."),
    ParameterSpec("publish_tf", False, "Publish the localization on /tf."),
    ParameterSpec("tf_mode", "map_to_camera", "'map_to_camera': publish map->camera_frame (only "
                  "when nothing else gives the camera frame a parent); 'map_to_odom': publish "
                  "map->odom_frame so that map->odom->...->camera equals the localized pose.",
                  choices=("map_to_camera", "map_to_odom")),
    ParameterSpec("publish_point_cloud", True, "Publish the map's 3D points once, latched "
                  "(transient local), as sensor_msgs/PointCloud2 on ~/map_points for RViz."),
)

SPECS_BY_NAME = {spec.name: spec for spec in PARAMETER_SPECS}


@dataclass(frozen=True)
class LocalizerParameters:
    map_path: str
    image_topic: str
    camera_info_topic: str
    image_transport: str
    image_qos: str
    top_k: int
    device: str
    ransac_threshold_px: float
    min_inliers: int
    min_inlier_ratio: float
    min_hypothesis_margin: float
    max_median_reprojection_error_px: float
    max_occluded_inliers: float
    max_rate_hz: float
    map_frame: str
    odom_frame: str
    camera_frame: str
    publish_tf: bool
    tf_mode: str
    publish_point_cloud: bool

    def localizer_conf(self) -> dict:
        """The core ``Localizer`` configuration these parameters set."""
        return {
            "top_k": self.top_k,
            "ransac_threshold_px": self.ransac_threshold_px,
            "min_inliers": self.min_inliers,
            "min_inlier_ratio": self.min_inlier_ratio,
            "min_hypothesis_margin": self.min_hypothesis_margin,
            "max_median_reprojection_error_px": self.max_median_reprojection_error_px,
            "max_occluded_inliers": self.max_occluded_inliers,
        }


def _descriptor(spec: ParameterSpec) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(description=spec.description)
    if spec.choices:
        descriptor.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.value_range is not None:
        low, high = spec.value_range
        if isinstance(spec.default, int) and not isinstance(spec.default, bool):
            descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
        else:
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)
            ]
    return descriptor


def check_value(name: str, value) -> None:
    """Raise ConfigError naming the parameter and the allowed values when ``value`` is invalid."""
    spec = SPECS_BY_NAME[name]
    if spec.choices and value not in spec.choices:
        raise ConfigError(
            f"parameter {name!r} is {value!r}; set it to one of: {', '.join(spec.choices)}"
        )
    if spec.value_range is not None and not (spec.value_range[0] <= value <= spec.value_range[1]):
        raise ConfigError(
            f"parameter {name!r} is {value!r}; it must lie in "
            f"[{spec.value_range[0]}, {spec.value_range[1]}]"
        )


def declare_parameters(node: Node) -> LocalizerParameters:
    """Declare every parameter on ``node`` (overrides from YAML / --ros-args apply) and read them.

    Raises ConfigError when an override is out of its allowed values.
    """
    for spec in PARAMETER_SPECS:
        node.declare_parameter(spec.name, spec.default, _descriptor(spec))

    def validate(changes: list[Parameter]) -> SetParametersResult:
        for parameter in changes:
            if parameter.name in SPECS_BY_NAME:
                try:
                    check_value(parameter.name, parameter.value)
                except ConfigError as error:
                    return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(validate)
    return read_parameters(node)


def read_parameters(node: Node) -> LocalizerParameters:
    values = {}
    for field in fields(LocalizerParameters):
        value = node.get_parameter(field.name).value
        check_value(field.name, value)
        values[field.name] = value
    return LocalizerParameters(**values)


def defaults() -> dict[str, str | int | float | bool]:
    return {spec.name: spec.default for spec in PARAMETER_SPECS}
