"""Offline replay: every image of a query bag through the core ``Localizer`` (no DDS), then the report.

The DDS replay (``scenesqueezer_ros.replay``) runs the node with the same localizer configuration
(every localizer option is a node parameter), the same CameraInfo conversion and the same RANSAC
seed, so both agree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DatasetError
from ..localization import Localizer
from ..bag import messages as m
from ..bag.read import BagScan, iter_image_messages, scan_bag
from .report import QueryRecord, write_report


@dataclass
class ReplayOutcome:
    report_dir: Path
    metrics: dict[str, Any]
    records: list[QueryRecord]
    info: dict[str, Any]


def query_scan(bag: str | os.PathLike, image_topic: str | None = None, camera_info_topic: str | None = None,
               pose_topic: str | None = None, tf_frames: tuple[str, str] | None = None) -> BagScan:
    scan = scan_bag(bag, image_topic, camera_info_topic, pose_topic, tf_frames)
    if not scan.synced:
        raise DatasetError(f"no image of {bag} has a ground-truth pose; a replay evaluation needs the pose "
                           "topic (export-bag writes /ground_truth/camera_pose) or TF")
    return scan


def replay_offline(bag: str | os.PathLike, map_path: str | os.PathLike, output: str | os.PathLike,
                   conf: dict[str, Any] | None = None, device: str = "auto", image_topic: str | None = None,
                   camera_info_topic: str | None = None, pose_topic: str | None = None,
                   tf_frames: tuple[str, str] | None = None, progress: bool = True) -> ReplayOutcome:
    """Localize each ground-truthed image of ``bag`` against ``map_path`` and write the report to ``output``."""
    from tqdm import tqdm

    map_path = Path(map_path)
    if not map_path.is_file():
        raise DatasetError(f"map file {map_path} does not exist; build one with `scenesqueezer build-map`")
    scan = query_scan(bag, image_topic, camera_info_topic, pose_topic, tf_frames)
    localizer = Localizer.from_file(map_path, conf, device)
    wanted = {f.index for f in scan.synced}
    records: list[QueryRecord] = []
    stream = iter_image_messages(bag, scan, wanted)
    for frame, msg, _, _ in tqdm(stream, total=len(wanted), desc="replay (offline)", unit="img",
                                 disable=not progress or None):
        result = localizer.localize(m.image_msg_to_rgb(msg), frame.camera)
        records.append(QueryRecord(frame.name, frame.stamp_ns, frame.cam_from_world,
                                   result.cam_from_world if result.success else None, dict(result.timings),
                                   result.failure_reason, int(result.num_inliers),
                                   failure_code=result.failure_code))
    info = replay_info("offline", bag, map_path, scan, localizer.conf)
    metrics = write_report(records, output, map_path.stat().st_size, info, title="SceneSqueezer replay (offline)")
    return ReplayOutcome(Path(output), metrics, records, info)


def replay_info(mode: str, bag, map_path, scan: BagScan, conf: dict[str, Any], **extra) -> dict[str, Any]:
    return {"mode": mode, "bag": str(bag), "map": str(map_path), "image_topic": scan.topics.image,
            "camera_info_topic": scan.topics.camera_info, "ground_truth": scan.topics.pose or scan.topics.tf_frames,
            "images_in_bag": len(scan.frames), "images_without_ground_truth": len(scan.frames) - len(scan.synced),
            "conf": dict(conf), **extra}
