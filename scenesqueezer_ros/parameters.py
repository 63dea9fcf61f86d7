"""Every parameter of the localizer node, declared from the core's option lists.

``PARAMETER_SPECS`` = ``scenesqueezer_core.localization.LOCALIZER_OPTIONS`` (the localizer's stages
and pose checks) + ``NODE_OPTIONS`` (topics, frames, TF); ``config/localizer.yaml`` mirrors them one
to one (a test checks it). Values that configure the core localizer (thresholds, top-k, device,
map path) take effect when the map is (re)loaded: at start-up and on the ``~/reload_map`` service.
"""

from __future__ import annotations

from dataclasses import fields, make_dataclass

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.node import Node
from rclpy.parameter import Parameter

from scenesqueezer_core.errors import ConfigError
from scenesqueezer_core.localization import LOCALIZER_OPTIONS, NODE_OPTIONS, Option


# Declared from the core's option lists: the localizer's (each stage's and each pose check's) and
# the node's own. Defaults, descriptions and ranges live there, once.
PARAMETER_SPECS: tuple[Option, ...] = LOCALIZER_OPTIONS + NODE_OPTIONS
SPECS_BY_NAME = {spec.name: spec for spec in PARAMETER_SPECS}


def _localizer_conf(self) -> dict:
    """The core ``Localizer`` configuration these parameters set."""
    return {spec.name: getattr(self, spec.name) for spec in LOCALIZER_OPTIONS}


# One typed, frozen field per parameter (``params.top_k``), generated so that it cannot drift.
LocalizerParameters = make_dataclass(
    "LocalizerParameters", [(spec.name, type(spec.default)) for spec in PARAMETER_SPECS], frozen=True,
    namespace={"localizer_conf": _localizer_conf, "__doc__": "Values of every node parameter."})


def _descriptor(spec: Option) -> ParameterDescriptor:
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
    SPECS_BY_NAME[name].check(value)


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
