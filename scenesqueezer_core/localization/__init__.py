"""Localization: query image -> retrieval -> matching -> pose estimation -> pose checks -> result.

    localizer = Localizer.from_file("site.sqz", conf={"top_k": 10})
    result = localizer.localize(rgb, camera)   # result.success, .cam_from_world, .failure_code, .checks

Stages: retrieval.py, matching.py, pose.py, checks.py (named pose checks), composed in
localizer.py; every option with its default, description and range in conf.py / options.py.
"""

from __future__ import annotations

from .checks import POSE_CHECKS, PoseCheck
from .conf import (
    DEFAULT_LOCALIZER_CONF,
    LOCALIZER_OPTIONS,
    OPTIONS_BY_NAME,
    checks_disabled_conf,
    localizer_conf,
    read_conf_file,
)
from .localizer import Localizer
from .options import NODE_OPTIONS, Option
from .prior import OdometryTracker, PosePrior
from .result import CheckOutcome, FailureCode, LocalizationResult, SearchKind


__all__ = [
    "DEFAULT_LOCALIZER_CONF",
    "LOCALIZER_OPTIONS",
    "NODE_OPTIONS",
    "OPTIONS_BY_NAME",
    "POSE_CHECKS",
    "CheckOutcome",
    "FailureCode",
    "LocalizationResult",
    "Localizer",
    "OdometryTracker",
    "Option",
    "PoseCheck",
    "PosePrior",
    "SearchKind",
    "checks_disabled_conf",
    "localizer_conf",
    "read_conf_file",
]
