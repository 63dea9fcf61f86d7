"""Localization of a dataset split (RESULTS.json) and its evaluation (METRICS.json) against ground truth.

RESULTS.json::

    {"map": path, "map_bytes": int, "feature_setup": str, "conf": {...},
     "results": {image name: LocalizationResult.to_json()}}

METRICS.json keys are a contract read by tools outside the repo: ``num_queries``,
``num_localized``, ``recall`` (``0.25m_2deg``, ``0.5m_5deg``, ``5m_10deg``, ``0.25m_1deg``),
``median_translation_m``, ``median_rotation_deg``, ``map_bytes``, ``median_seconds_per_query``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .atomic import atomic_write_text
from .dataset import load_dataset, read_image
from .errors import DatasetError, SceneSqueezerError
from .geometry import pose_error
from .localization import LocalizationResult, Localizer
from .types import Pose

THRESHOLDS: dict[str, tuple[float, float]] = {
    "0.25m_2deg": (0.25, 2.0),
    "0.5m_5deg": (0.5, 5.0),
    "5m_10deg": (5.0, 10.0),
    "0.25m_1deg": (0.25, 1.0),
}


def localize_dataset(map_path: str | os.PathLike, dataset_dir: str | os.PathLike, output: str | os.PathLike,
                     split: str = "query", conf: dict[str, Any] | None = None, device: str = "auto",
                     progress: bool = True) -> dict[str, LocalizationResult]:
    """Localize every image of a split and write RESULTS.json (the format above)."""
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


def write_results(path: str | os.PathLike, results: dict[str, Any], header: dict[str, Any]) -> Path:
    payload = {**header, "results": {name: r.to_json() if hasattr(r, "to_json") else r for name, r in results.items()}}
    atomic_write_text(path, json.dumps(payload, indent=1) + "\n")
    return Path(path)


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise SceneSqueezerError(f"results file {path} does not exist; run `scenesqueezer localize` first")
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SceneSqueezerError(f"results file {path} is not valid JSON ({exc}); re-run localize") from exc
    if "results" not in payload:
        raise SceneSqueezerError(f"results file {path} has no 'results' object; re-run localize")
    return payload


def result_pose(entry: dict[str, Any]) -> Pose | None:
    if not entry.get("success") or "qvec_wxyz" not in entry:
        return None
    return Pose.from_qvec_tvec(np.asarray(entry["qvec_wxyz"]), np.asarray(entry["tvec"]))


def compute_metrics(estimates: dict[str, Pose | None], truths: dict[str, Pose], map_bytes: int,
                    seconds: list[float]) -> dict[str, Any]:
    """Recall at each threshold over ALL queries (a failure is a miss), median errors over localized."""
    errors = []
    for name, truth in truths.items():
        est = estimates.get(name)
        errors.append(pose_error(est, truth) if est is not None else (np.inf, np.inf))
    err = np.asarray(errors, dtype=np.float64).reshape(-1, 2)
    n = len(truths)
    localized = np.isfinite(err[:, 0])
    recall = {key: float(np.mean((err[:, 0] <= t) & (err[:, 1] <= r))) if n else 0.0
              for key, (t, r) in THRESHOLDS.items()}
    return {
        "num_queries": n,
        "num_localized": int(localized.sum()),
        "recall": recall,
        # medians over all queries with failures as +inf would be inf as soon as half fail; we report
        # the median over localized queries and count the failures in num_localized.
        "median_translation_m": float(np.median(err[localized, 0])) if localized.any() else None,
        "median_rotation_deg": float(np.median(err[localized, 1])) if localized.any() else None,
        "map_bytes": int(map_bytes),
        "median_seconds_per_query": float(np.median(seconds)) if seconds else None,
    }


def evaluate_results(results_path: str | os.PathLike, dataset_dir: str | os.PathLike,
                     split: str | None = None) -> dict[str, Any]:
    payload = load_results(results_path)
    dataset = load_dataset(dataset_dir, check_images=False)
    names = list(payload["results"]) if split is None else dataset.splits.get(split)
    if names is None:
        raise DatasetError(f"split {split!r} not in {dataset.root}/splits.json")
    missing = [n for n in names if n not in dataset.frames or dataset.frames[n].cam_from_world is None]
    if missing:
        raise DatasetError(f"{len(missing)} result(s) have no ground-truth pose in {dataset_dir}, e.g. {missing[:3]}; "
                           "evaluate against the dataset the queries came from")
    truths = {n: dataset.frames[n].cam_from_world for n in names}
    estimates = {n: result_pose(payload["results"].get(n, {})) for n in names}
    seconds = [payload["results"][n]["timings"]["total"] for n in names if n in payload["results"]]
    return compute_metrics(estimates, truths, int(payload.get("map_bytes", 0)), seconds)


def format_metrics_table(metrics: dict[str, Any], title: str = "") -> str:
    def fmt(v, unit=""):
        return "n/a" if v is None else f"{v:.3f}{unit}"

    rows = [
        ("queries", str(metrics["num_queries"])),
        ("localized", f"{metrics['num_localized']} / {metrics['num_queries']}"),
        *[(f"recall {k}", f"{100 * v:.1f} %") for k, v in metrics["recall"].items()],
        ("median translation", fmt(metrics["median_translation_m"], " m")),
        ("median rotation", fmt(metrics["median_rotation_deg"], " deg")),
        ("map size", f"{metrics['map_bytes'] / 1e6:.3f} MB"),
        ("median time / query", fmt(metrics["median_seconds_per_query"], " s")),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [title] if title else []
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)
