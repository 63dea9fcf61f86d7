"""The localizer's configuration: every option with its default in one list, checked on the way in.

``LOCALIZER_OPTIONS`` = the stages' options (options.py) + each pose check's own option
(checks.py). The ROS node declares its parameters from ``LOCALIZER_OPTIONS + NODE_OPTIONS``, and
``localize --conf`` / ``replay --offline --conf`` read the node's parameter file through
``read_conf_file``, so a setting means the same everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .checks import POSE_CHECKS
from .options import NODE_OPTIONS, STAGE_OPTIONS, Option, Value

LOCALIZER_OPTIONS: tuple[Option, ...] = STAGE_OPTIONS + tuple(c.option for c in POSE_CHECKS if c.option)
OPTIONS_BY_NAME: dict[str, Option] = {o.name: o for o in LOCALIZER_OPTIONS + NODE_OPTIONS}
DEFAULT_LOCALIZER_CONF: dict[str, Value] = {o.name: o.default for o in LOCALIZER_OPTIONS}


def localizer_conf(overrides: dict[str, Any] | None = None) -> dict[str, Value]:
    """Defaults overlaid with ``overrides`` (localizer options only), each value checked.

    Raises ConfigError for an unknown key (naming the valid ones) or a value out of range.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(DEFAULT_LOCALIZER_CONF))
    if unknown:
        raise ConfigError(f"unknown localizer option(s) {', '.join(unknown)}; valid options: "
                          f"{', '.join(DEFAULT_LOCALIZER_CONF)}")
    conf = dict(DEFAULT_LOCALIZER_CONF)
    for key, value in overrides.items():
        conf[key] = OPTIONS_BY_NAME[key].check(value)
    return conf


def stage_conf(conf: dict[str, Value], stage: str) -> dict[str, Value]:
    """The sub-dict of ``conf`` that one stage (image, retrieval, matching, pose, checks, prior) reads."""
    return {o.name: conf[o.name] for o in LOCALIZER_OPTIONS if o.stage == stage}


def checks_disabled_conf() -> dict[str, Value]:
    """Overrides that turn every pose check off (the floor of min_inliers stays: fewer is noise)."""
    off = {c.option.name: c.off_value for c in POSE_CHECKS if c.option and c.off_value is not None}
    minimum = {c.option.name: c.option.value_range[0] for c in POSE_CHECKS
               if c.option and c.off_value is None and c.option.value_range}
    return {name: OPTIONS_BY_NAME[name].check(type(OPTIONS_BY_NAME[name].default)(value))
            for name, value in {**minimum, **off}.items()}


def read_conf_file(path: str | os.PathLike) -> dict[str, Value]:
    """The localizer conf of a YAML file: defaults overlaid with its localizer options, all checked.

    Takes either a flat mapping (``min_inliers: 30``) or a ROS 2 parameter file like
    ``config/localizer.yaml`` (``<node or /**>: {ros__parameters: {...}}``); the node's own options
    in it (topics, frames) are accepted and left out. An unknown key is an error naming the valid
    ones, so that a typo never silently keeps a default.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file {path} does not exist; pass a YAML file like config/localizer.yaml")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"configuration file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"configuration file {path} must hold a mapping of option: value")
    sections = [v["ros__parameters"] for v in data.values() if isinstance(v, dict) and "ros__parameters" in v]
    if len(sections) > 1:
        raise ConfigError(f"configuration file {path} has parameters for {len(sections)} nodes; keep one")
    values = sections[0] if sections else data
    if not isinstance(values, dict):
        raise ConfigError(f"configuration file {path}: ros__parameters must be a mapping of option: value")
    unknown = sorted(set(values) - set(OPTIONS_BY_NAME))
    if unknown:
        raise ConfigError(f"configuration file {path}: unknown option(s) {', '.join(unknown)}; valid options: "
                          f"{', '.join(OPTIONS_BY_NAME)}")
    try:
        for key, value in values.items():
            OPTIONS_BY_NAME[key].check(value)
    except ConfigError as exc:
        raise ConfigError(f"configuration file {path}: {exc}") from exc
    return localizer_conf({k: v for k, v in values.items() if k in DEFAULT_LOCALIZER_CONF})
