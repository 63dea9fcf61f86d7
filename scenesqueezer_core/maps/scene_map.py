"""SceneMap: the uncompressed map (frames, local features, global descriptors, 3D points, tracks)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MapFileError
from ..features.base import Features
from .mapfile import read_map_file, require_arrays, write_map_file
from ..retrieval import VladModel
from ..types import Camera, Pose

SCENE_MAP_KIND = "scene_map"
# A point seen by at least this many frames is "multi-view": a third view confirms it, while any wrong
# match that fits the epipolar geometry of two views triangulates somewhere along their rays.
MULTIVIEW_MIN_FRAMES = 3


@dataclass
class SceneMap:
    """All arrays are typed; F frames, N keypoints in total, P points, T track observations."""

    feature_setup: str
    frame_names: list[str]
    cameras: list[Camera]
    rotations: np.ndarray  # (F, 3, 3) float64, cam_from_world
    translations: np.ndarray  # (F, 3) float64, cam_from_world
    keypoint_offsets: np.ndarray  # (F + 1,) int64, keypoints of frame f are [off[f], off[f+1])
    keypoints: np.ndarray  # (N, 2) float32, COLMAP pixel convention
    keypoint_scores: np.ndarray  # (N,) float32
    descriptors: np.ndarray  # (N, D) float32
    keypoint_point_ids: np.ndarray  # (N,) int64, index into points or -1
    global_descriptors: np.ndarray  # (F, G) float32, L2-normalised
    vlad: VladModel
    points_xyz: np.ndarray  # (P, 3) float64
    points_color: np.ndarray  # (P, 3) uint8 RGB
    points_error: np.ndarray  # (P,) float32 mean reprojection error (px)
    track_offsets: np.ndarray  # (P + 1,) int64
    track_frames: np.ndarray  # (T,) int32
    track_keypoints: np.ndarray  # (T,) int32, index within the frame's keypoints
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def num_frames(self) -> int:
        return len(self.frame_names)

    @property
    def num_points(self) -> int:
        return len(self.points_xyz)

    def pose(self, frame: int) -> Pose:
        return Pose(self.rotations[frame], self.translations[frame])

    def frame_slice(self, frame: int) -> slice:
        return slice(int(self.keypoint_offsets[frame]), int(self.keypoint_offsets[frame + 1]))

    def frame_features(self, frame: int) -> Features:
        s = self.frame_slice(frame)
        cam = self.cameras[frame]
        return Features(np.asarray(self.keypoints[s]), np.asarray(self.keypoint_scores[s]),
                        np.asarray(self.descriptors[s]), (cam.width, cam.height))

    def track(self, point: int) -> tuple[np.ndarray, np.ndarray]:
        """(frames (L,), keypoint indices (L,)) observing a point."""
        s = slice(int(self.track_offsets[point]), int(self.track_offsets[point + 1]))
        return self.track_frames[s], self.track_keypoints[s]

    def multiview_points(self) -> np.ndarray:
        """(P,) bool: points observed by at least MULTIVIEW_MIN_FRAMES frames."""
        return np.diff(np.asarray(self.track_offsets)) >= MULTIVIEW_MIN_FRAMES

    def point_descriptors(self) -> np.ndarray:
        """(P, D) float32 mean of each point's observation descriptors, re-normalised."""
        flat = self.keypoint_offsets[self.track_frames] + self.track_keypoints
        owner = np.repeat(np.arange(self.num_points), np.diff(self.track_offsets))
        sums = np.zeros((self.num_points, self.descriptors.shape[1]), np.float64)
        np.add.at(sums, owner, np.asarray(self.descriptors)[flat])
        sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
        return sums.astype(np.float32)

    def visibility(self):
        """scipy.sparse csr (F, P): 1 where frame f observes point p."""
        from scipy.sparse import csr_matrix

        owner = np.repeat(np.arange(self.num_points), np.diff(self.track_offsets))
        data = np.ones(len(owner), dtype=np.float32)
        vis = csr_matrix((data, (self.track_frames, owner)), shape=(self.num_frames, self.num_points))
        vis.data[:] = 1.0  # a point seen twice in one frame counts once
        return vis

    # ---------------------------------------------------------------- file I/O
    def save(self, path: str | os.PathLike) -> Path:
        meta = {
            "feature_setup": self.feature_setup,
            "frame_names": self.frame_names,
            "cameras": [{"model": c.model, "width": c.width, "height": c.height, "params": c.params.tolist()}
                        for c in self.cameras],
            "info": self.info,
        }
        arrays = {
            "rotations": self.rotations, "translations": self.translations,
            "keypoint_offsets": self.keypoint_offsets, "keypoints": self.keypoints,
            "keypoint_scores": self.keypoint_scores, "descriptors": self.descriptors,
            "keypoint_point_ids": self.keypoint_point_ids, "global_descriptors": self.global_descriptors,
            "points_xyz": self.points_xyz, "points_color": self.points_color, "points_error": self.points_error,
            "track_offsets": self.track_offsets, "track_frames": self.track_frames,
            "track_keypoints": self.track_keypoints, **self.vlad.to_arrays(),
        }
        self.path = write_map_file(path, SCENE_MAP_KIND, meta, arrays)
        return self.path

    @classmethod
    def load(cls, path: str | os.PathLike, verify: bool = True) -> SceneMap:
        container = read_map_file(path, expected_kind=SCENE_MAP_KIND, verify=verify)
        names = ["rotations", "translations", "keypoint_offsets", "keypoints", "keypoint_scores",
                 "descriptors", "keypoint_point_ids", "global_descriptors", "points_xyz", "points_color",
                 "points_error", "track_offsets", "track_frames", "track_keypoints",
                 "vlad_centroids", "vlad_pca_mean", "vlad_pca_projection"]
        require_arrays(container, names)
        meta = container.meta
        a = container.arrays
        try:
            cameras = [Camera(c["model"], int(c["width"]), int(c["height"]), np.asarray(c["params"]))
                       for c in meta["cameras"]]
            frame_names = list(meta["frame_names"])
            feature_setup = str(meta["feature_setup"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MapFileError(f"map file {path}: manifest lacks or garbles {exc}; rebuild the map") from exc
        scene_map = cls(
            feature_setup=feature_setup, frame_names=frame_names, cameras=cameras,
            vlad=VladModel.from_arrays(a), info=meta.get("info", {}), path=Path(path),
            **{k: a[k] for k in names if not k.startswith("vlad_")},
        )
        scene_map.validate()
        return scene_map

    def validate(self) -> None:
        """Cross-array consistency checks; a map that fails them is refused before use."""
        f, p = self.num_frames, self.num_points
        n = len(self.keypoints)
        problems = []
        if len(self.cameras) != f or self.rotations.shape != (f, 3, 3) or self.translations.shape != (f, 3):
            problems.append("frame arrays disagree in length")
        if self.keypoint_offsets.shape != (f + 1,) or (f and int(self.keypoint_offsets[-1]) != n):
            problems.append("keypoint offsets do not match the keypoints")
        elif np.any(np.diff(self.keypoint_offsets) < 0):
            problems.append("keypoint offsets decrease")
        if self.track_offsets.shape != (p + 1,) or int(self.track_offsets[-1]) != len(self.track_frames):
            problems.append("track offsets do not match the tracks")
        if len(self.track_frames) and (self.track_frames.min() < 0 or self.track_frames.max() >= f):
            problems.append("a track names a frame that does not exist")
        if len(self.keypoint_point_ids) != n or (n and self.keypoint_point_ids.max(initial=-1) >= p):
            problems.append("keypoint point ids point outside the points")
        if self.global_descriptors.shape[0] != f:
            problems.append("one global descriptor per frame is required")
        if problems:
            raise MapFileError(f"map file {self.path} is inconsistent: {'; '.join(problems)}; rebuild it")
