"""What the localizer needs from a map (``LocalizationDatabase``), the adapter that gives it for an
uncompressed SceneMap, and ``load_database`` that opens either kind of map file.

A candidate is what retrieval ranks and matching pairs a query with: a mapping frame of a
SceneMap (its triangulated keypoints) or a co-visible cluster of a CompressedMap (its kept points
projected into the cluster's representative frame; CompressedMap implements the protocol itself).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import MapFileError
from ..features import Features
from ..retrieval import VladModel
from ..types import Camera, Pose
from .compressed_map import CompressedMap
from .mapfile import read_map_file
from .packed_geometry import PackedPoints
from .scene_map import SceneMap


class LocalizationDatabase(Protocol):
    """What the localizer needs from a map."""

    feature_setup: str
    vlad: VladModel
    global_descriptors: np.ndarray  # (C, G) float32
    points_color: np.ndarray  # (P, 3) uint8

    # read-only: CompressedMap computes these (properties), SceneMapDatabase stores them
    @property
    def points_xyz(self) -> np.ndarray | PackedPoints:
        """(P, 3) float32 / float64 point coordinates: index the rows a stage needs (a compressed
        map decodes them then), ``np.asarray`` for all."""

    @property
    def points_multiview(self) -> np.ndarray:
        """(P,) bool: seen by >= 3 map frames (trusted occluders)."""

    @property
    def candidate_ids(self) -> np.ndarray:
        """(C,) int64 ids reported in results (frame or cluster ids)."""

    @property
    def file_bytes(self) -> int:
        """Bytes of the map file (0 for a map only in memory)."""

    @property
    def own_residual_px(self) -> float:
        """Median distance of the map frames' keypoints to their triangulated points' projections:
        how loosely the map fits its own images (0 when unknown). Scales the residual pose check."""

    @property
    def points_share_descriptors(self) -> bool:
        """Whether every feature of one map point carries the same descriptor, whichever candidate it
        comes from (a compressed map stores one code per point): matching compares such a point with
        the query once per pass."""

    @property
    def decodes_on_demand(self) -> bool:
        """Whether ``candidate_features`` decodes compact codes at each request (keeping at most a
        compact store of its own): the localizer then keeps no decoded copy, so RAM stays small."""

    def candidate_features(self, index: int) -> tuple[Features, np.ndarray]:
        """(features of candidate ``index``, (N,) int64 point id of each feature)."""

    def candidate_point_ids(self, index: int) -> np.ndarray:
        """(N,) int64: ``candidate_features(index)[1]`` alone (cheap: no descriptors)."""

    def candidate_pose(self, index: int) -> Pose:
        """cam_from_world of the frame a candidate's features live in (frame / representative)."""

    def candidate_camera(self, index: int) -> Camera:
        """Intrinsics of that frame."""

    def candidate_centers(self, index: int) -> np.ndarray:
        """(K, 3) camera centres of every map frame behind candidate ``index`` (a frame, or a cluster's frames)."""


def load_database(map_path: str | os.PathLike) -> LocalizationDatabase:
    """Open a SceneMap or a CompressedMap, whichever the file holds."""
    container = read_map_file(map_path, verify=False)  # kind sniffing only; full load verifies
    if container.kind == "scene_map":
        return SceneMapDatabase(SceneMap.load(map_path))
    if container.kind == "compressed_map":
        return CompressedMap.load(map_path)
    raise MapFileError(f"map file {map_path} holds an unknown kind {container.kind!r}")


class SceneMapDatabase:
    """LocalizationDatabase over an uncompressed SceneMap: one candidate per mapping frame."""

    points_share_descriptors = False  # each observation keeps its own keypoint's descriptor
    decodes_on_demand = False  # features are read from the map's float arrays

    def __init__(self, scene_map) -> None:
        self.scene_map = scene_map
        self.feature_setup = scene_map.feature_setup
        self.vlad = scene_map.vlad
        self.global_descriptors = np.asarray(scene_map.global_descriptors)
        self.points_xyz = np.asarray(scene_map.points_xyz)
        self.points_color = np.asarray(scene_map.points_color)
        self.points_multiview = scene_map.multiview_points()
        self.candidate_ids = np.arange(scene_map.num_frames, dtype=np.int64)
        self.file_bytes = Path(scene_map.path).stat().st_size if scene_map.path else 0

    @functools.cached_property
    def own_residual_px(self) -> float:
        return frames_residual_px(self)

    def candidate_pose(self, index: int) -> Pose:
        return self.scene_map.pose(index)

    def candidate_centers(self, index: int) -> np.ndarray:
        return self.scene_map.pose(index).center[None]

    def candidate_camera(self, index: int) -> Camera:
        return self.scene_map.cameras[index]

    def candidate_features(self, index: int) -> tuple[Features, np.ndarray]:
        feats = self.scene_map.frame_features(index)
        ids = np.asarray(self.scene_map.keypoint_point_ids[self.scene_map.frame_slice(index)])
        keep = ids >= 0
        return feats.subset(keep), ids[keep]

    def candidate_point_ids(self, index: int) -> np.ndarray:
        ids = np.asarray(self.scene_map.keypoint_point_ids[self.scene_map.frame_slice(index)])
        return ids[ids >= 0]


def frames_residual_px(database: SceneMapDatabase, samples: int = 30) -> float:
    """Median over up to ``samples`` evenly spread frames of their keypoints' median distance to the
    projections of their triangulated points: the map's own reprojection noise (blur, rolling
    shutter, calibration and pose errors all show in it)."""
    count = len(database.candidate_ids)
    medians = []
    for index in np.unique(np.linspace(0, count - 1, min(samples, count)).astype(int)):
        features, point_ids = database.candidate_features(int(index))
        in_camera = database.candidate_pose(int(index)).transform(database.points_xyz[point_ids])
        front = in_camera[:, 2] > 1e-6
        if front.any():
            residuals = database.candidate_camera(int(index)).project(in_camera[front]) - features.keypoints[front]
            medians.append(float(np.median(np.linalg.norm(residuals, axis=1))))
    return float(np.median(medians)) if medians else 0.0
