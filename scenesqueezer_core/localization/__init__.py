"""Localization: query image -> retrieval -> matching -> pose estimation -> pose checks -> result.

    localizer = Localizer.from_file("site.sqz", conf={"top_k": 10})
    result = localizer.localize(rgb, camera)   # result.success, .cam_from_world, .failure_code, .checks

Stages: retrieval.py, matching.py, pose.py, checks.py (named pose checks), composed in
localizer.py; every option with its default, description and range in conf.py / options.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .checks import POSE_CHECKS, PoseCheck
from .conf import (
    DEFAULT_LOCALIZER_CONF,
    LOCALIZER_OPTIONS,
    OPTIONS_BY_NAME,
    checks_disabled_conf,
    localizer_conf,
    read_conf_file,
)
from .database import LocalizationDatabase, SceneMapDatabase, load_database
from .localizer import Localizer
from .options import NODE_OPTIONS, Option
from .result import CheckOutcome, FailureCode, LocalizationResult


def localize_dataset(map_path: str | os.PathLike, dataset_dir: str | os.PathLike, output: str | os.PathLike,
                     split: str = "query", conf: dict[str, Any] | None = None, device: str = "auto",
                     progress: bool = True) -> dict[str, LocalizationResult]:
    """Localize every image of a split and write RESULTS.json (see evaluate.py for the format)."""
    from tqdm import tqdm

    from ..dataset import load_dataset, read_image
    from ..evaluate import write_results

    dataset = load_dataset(dataset_dir)
    localizer = Localizer.from_file(map_path, conf, device)
    results: dict[str, LocalizationResult] = {}
    for frame in tqdm(dataset.split(split), desc="localize", unit="img", disable=not progress or None):
        results[frame.name] = localizer.localize(read_image(frame.image_path), frame.camera)
    write_results(output, results, {
        "map": str(map_path), "map_bytes": Path(map_path).stat().st_size,
        "feature_setup": localizer.database.feature_setup, "conf": localizer.conf,
        "dataset": str(dataset_dir), "split": split,
    })
    return results


__all__ = [
    "DEFAULT_LOCALIZER_CONF",
    "LOCALIZER_OPTIONS",
    "NODE_OPTIONS",
    "OPTIONS_BY_NAME",
    "POSE_CHECKS",
    "CheckOutcome",
    "FailureCode",
    "LocalizationDatabase",
    "LocalizationResult",
    "Localizer",
    "Option",
    "PoseCheck",
    "SceneMapDatabase",
    "checks_disabled_conf",
    "load_database",
    "localize_dataset",
    "localizer_conf",
    "read_conf_file",
]
