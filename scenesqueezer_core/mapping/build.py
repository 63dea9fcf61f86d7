"""Build a SceneMap from a dataset with known poses: extract -> pairs -> match -> verify -> triangulate."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..bag import bag_to_dataset, is_bag
from ..dataset import _find_model_dir, load_dataset, read_image
from ..errors import DatasetError
from ..features import load_feature_setup
from ..features.base import Features, merge_conf
from ..geometry import fundamental_from_poses, sampson_error
from ..maps.scene_map import SceneMap
from ..retrieval import fit_vlad
from ..types import Frame
from .pairs import pairs_from_poses
from .sfm import dataset_with_sfm_poses
from .triangulation import triangulate_known_poses

logger = logging.getLogger(__name__)

DEFAULT_BUILD_CONF: dict[str, Any] = {
    "num_neighbors": 10,  # matched neighbours per frame, chosen from poses (not exhaustive)
    "max_view_angle_deg": 70.0,  # frames looking further apart than this are never paired
    "verify_threshold_px": 4.0,  # Sampson distance to the ground-truth epipolar geometry
    "min_pair_matches": 15,
    "max_reproj_error_px": 4.0,
    "min_tri_angle_deg": 1.5,
    "vlad_clusters": 32,
    "global_dim": 1024,
}


def extract_frames(frames: list[Frame], extractor, desc: str = "extract") -> tuple[list[Features], list[np.ndarray]]:
    """Features per frame and the RGB colour under each keypoint ((N, 3) uint8)."""
    features, colours = [], []
    for frame in tqdm(frames, desc=desc, unit="img", leave=False, disable=None):
        image = read_image(frame.image_path)
        if (image.shape[1], image.shape[0]) != (frame.camera.width, frame.camera.height):
            raise DatasetError(
                f"image {frame.image_path} is {image.shape[1]}x{image.shape[0]} but its camera says "
                f"{frame.camera.width}x{frame.camera.height}; fix the intrinsics or the image"
            )
        feats = extractor.extract(image)
        cols = np.clip(np.floor(feats.keypoints).astype(int), 0, [image.shape[1] - 1, image.shape[0] - 1])
        colours.append(image[cols[:, 1], cols[:, 0]])
        features.append(feats)
    return features, colours


def verify_matches(frame0: Frame, frame1: Frame, kp0: np.ndarray, kp1: np.ndarray,
                   matches: np.ndarray, threshold_px: float) -> np.ndarray:
    """Keep matches consistent with the known relative pose (Sampson distance, undistorted)."""
    if len(matches) == 0:
        return matches
    F = fundamental_from_poses(frame0.camera, frame0.cam_from_world, frame1.camera, frame1.cam_from_world)
    x0 = frame0.camera.undistort_points(kp0[matches[:, 0]])
    x1 = frame1.camera.undistort_points(kp1[matches[:, 1]])
    return matches[sampson_error(F, x0, x1) < threshold_px]


def build_scene_map(frames: list[Frame], feature_setup: str, conf: dict[str, Any] | None = None,
                    device: str = "auto", image_root: Path | None = None) -> SceneMap:
    conf = merge_conf(DEFAULT_BUILD_CONF, conf)
    if len(frames) < 2:
        raise DatasetError(f"a map needs at least 2 frames with poses, got {len(frames)}")
    if any(f.cam_from_world is None for f in frames):
        raise DatasetError("every mapping frame needs a pose; run `build-map` on a dataset without "
                           "sparse/ to estimate poses with structure-from-motion first")
    timings: dict[str, float] = {}
    extractor, matcher = load_feature_setup(feature_setup, device=device)

    t0 = time.perf_counter()
    features, colours = extract_frames(frames, extractor)
    timings["extract_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    pairs = pairs_from_poses([f.cam_from_world for f in frames], conf["num_neighbors"], conf["max_view_angle_deg"])
    pair_matches: dict[tuple[int, int], np.ndarray] = {}
    for i, j in tqdm(pairs, desc="match", unit="pair", leave=False, disable=None):
        m = matcher.match(features[i], features[j]).indices
        m = verify_matches(frames[i], frames[j], features[i].keypoints, features[j].keypoints, m,
                           conf["verify_threshold_px"])
        if len(m) >= conf["min_pair_matches"]:
            pair_matches[(i, j)] = m
    timings["match_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    tri = triangulate_known_poses(frames, [f.keypoints for f in features], pair_matches,
                                  conf["max_reproj_error_px"], conf["min_tri_angle_deg"])
    timings["triangulate_s"] = time.perf_counter() - t0
    if len(tri.xyz) == 0:
        raise DatasetError(
            "triangulation produced no 3D points: the mapping images do not overlap or the poses are "
            "wrong; check the poses and that neighbouring images see the same scene"
        )

    offsets = np.concatenate([[0], np.cumsum([len(f) for f in features])]).astype(np.int64)
    point_ids = np.full(int(offsets[-1]), -1, dtype=np.int64)
    owner = np.repeat(np.arange(len(tri.xyz)), tri.track_lengths)
    flat = offsets[tri.track_frames] + tri.track_keypoints
    point_ids[flat] = owner
    all_colours = np.concatenate(colours, axis=0)
    first_obs = flat[tri.track_offsets[:-1]]
    points_color = all_colours[first_obs].astype(np.uint8)

    t0 = time.perf_counter()
    vlad = fit_vlad([f.descriptors for f in features], conf["vlad_clusters"], conf["global_dim"])
    global_desc = np.stack([vlad.describe(f.descriptors) for f in features]).astype(np.float32)
    timings["global_s"] = time.perf_counter() - t0

    return SceneMap(
        feature_setup=feature_setup,
        frame_names=[f.name for f in frames],
        cameras=[f.camera for f in frames],
        rotations=np.stack([f.cam_from_world.R for f in frames]),
        translations=np.stack([f.cam_from_world.t for f in frames]),
        keypoint_offsets=offsets,
        keypoints=np.concatenate([f.keypoints for f in features]).astype(np.float32),
        keypoint_scores=np.concatenate([f.scores for f in features]).astype(np.float32),
        descriptors=np.concatenate([f.descriptors for f in features]).astype(np.float32),
        keypoint_point_ids=point_ids,
        global_descriptors=global_desc,
        vlad=vlad,
        points_xyz=tri.xyz,
        points_color=points_color,
        points_error=tri.error,
        track_offsets=tri.track_offsets,
        track_frames=tri.track_frames,
        track_keypoints=tri.track_keypoints,
        info={"build_conf": conf, "timings": timings, "num_pairs": len(pairs),
              "num_verified_pairs": len(pair_matches), "image_root": str(image_root or "")},
    )


def build_map(dataset_dir: str | os.PathLike, map_path: str | os.PathLike, features: str = "xfeat",
              split: str = "mapping", conf: dict[str, Any] | None = None, device: str = "auto") -> Path:
    """Build and save a SceneMap from a dataset folder (or a rosbag, see bag_dataset); returns the path."""
    dataset_dir = Path(dataset_dir)
    map_path = Path(map_path)

    if is_bag(dataset_dir):
        # a rosbag2: images + camera info + poses (topic or TF) -> keyframes in a dataset folder

        imported = map_path.parent / f"{map_path.stem}_bag_dataset"
        bag_to_dataset(dataset_dir, imported)
        dataset_dir = imported
    if dataset_dir.is_dir() and _find_model_dir(dataset_dir) is None and (dataset_dir / "images").is_dir():
        dataset = dataset_with_sfm_poses(dataset_dir, map_path.parent / f"{map_path.stem}_sfm")
    else:
        dataset = load_dataset(dataset_dir)
    frames = dataset.split(split)
    scene_map = build_scene_map(frames, features, conf, device, image_root=dataset.root / "images")
    scene_map.info["dataset"] = str(dataset.root)
    scene_map.info["split"] = split
    return scene_map.save(map_path)
