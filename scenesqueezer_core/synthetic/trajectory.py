"""Camera paths and the mapping / query trajectories that follow them.

World frame: metres, z up. Camera frame (COLMAP / OpenCV): x right, y down, z forward.
A trajectory is sampled by arc length along a path; view directions sweep between looking ahead
and looking sideways at the facades, so consecutive mapping frames overlap strongly while the
map still sees every facade head-on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from ..types import Pose

# Mapping view-direction sweep: yaw offset from the path heading = AMPLITUDE * sin(2 pi k / PERIOD).
SWEEP_AMPLITUDE_DEG = 55.0
SWEEP_PERIOD_FRAMES = 24


def pose_from_view(center: np.ndarray, yaw: float, pitch: float = 0.0, roll: float = 0.0) -> Pose:
    """cam_from_world pose of a camera at ``center`` (3,) looking along ``yaw`` (radians about +z,
    0 = +x), tilted up by ``pitch`` and rolled by ``roll`` (radians) about its optical axis."""
    forward = np.array([math.cos(yaw) * math.cos(pitch), math.sin(yaw) * math.cos(pitch), math.sin(pitch)])
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    world_from_cam = np.stack([right, down, forward], axis=1)
    world_from_cam = world_from_cam @ Rotation.from_rotvec([0.0, 0.0, roll]).as_matrix()
    R = world_from_cam.T
    return Pose(R, -R @ np.asarray(center, dtype=np.float64))


class Path3D:
    """A camera path parameterised by arc length: position (3,), heading (yaw) and its left normal."""

    length: float

    def at(self, arc: float) -> tuple[np.ndarray, float]:
        raise NotImplementedError

    def to_json(self) -> dict:
        raise NotImplementedError

    def offset_pose(self, arc: float, lateral: float, height: float, yaw_offset: float,
                    pitch: float, roll: float) -> Pose:
        """Pose at ``arc`` shifted ``lateral`` metres to the left of the path and ``height`` up."""
        position, heading = self.at(arc)
        left = np.array([-math.sin(heading), math.cos(heading), 0.0])
        center = position + lateral * left + np.array([0.0, 0.0, height])
        return pose_from_view(center, heading + yaw_offset, pitch, roll)


@dataclass
class StraightPath(Path3D):
    start: tuple[float, float, float]
    length: float
    lateral_limit: float  # queries stay this close to the path (metres), i.e. on the road

    def at(self, arc: float) -> tuple[np.ndarray, float]:
        return np.asarray(self.start, dtype=np.float64) + np.array([arc, 0.0, 0.0]), 0.0

    def to_json(self) -> dict:
        return {"type": "straight", "start": list(self.start), "length": self.length}


@dataclass
class CourtyardPath(Path3D):
    """Laps of ellipses inside a ``size`` = (x, y) courtyard; each lap uses a different inset."""

    size: tuple[float, float]
    height: float
    frame_spacing: float
    length: float
    insets: tuple[float, ...] = (7.0, 9.5, 6.0, 8.0)
    lateral_limit: float = 2.5

    def _lap(self, index: int) -> tuple[float, float, float]:
        inset = self.insets[index % len(self.insets)]
        a = self.size[0] / 2.0 - inset
        b = self.size[1] / 2.0 - inset
        perimeter = math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))  # Ramanujan
        return a, b, perimeter

    def at(self, arc: float) -> tuple[np.ndarray, float]:
        remaining = float(arc)
        lap = 0
        a, b, perimeter = self._lap(0)
        while remaining >= perimeter:
            remaining -= perimeter
            lap += 1
            a, b, perimeter = self._lap(lap)
        # Arc length along an ellipse is not linear in the angle; the resulting few-% spacing
        # variation is harmless, the pose itself is exact.
        angle = 2.0 * math.pi * remaining / perimeter
        cx, cy = self.size[0] / 2.0, self.size[1] / 2.0
        position = np.array([cx + a * math.cos(angle), cy + b * math.sin(angle), self.height])
        heading = math.atan2(b * math.cos(angle), -a * math.sin(angle))  # counter-clockwise tangent
        return position, heading

    def to_json(self) -> dict:
        return {"type": "courtyard_laps", "size": list(self.size), "insets": list(self.insets),
                "height": self.height, "length": self.length}


@dataclass(frozen=True)
class FrameSpec:
    """One frame to render: image name, split, pose, and the seed of its appearance change."""

    name: str
    split: str  # "mapping" | "query_day" | "query_night"
    cam_from_world: Pose
    arc: float


def mapping_yaw_offset(arc: float, spacing: float) -> float:
    """Sweep of the mapping view direction (radians) at arc length ``arc``."""
    k = arc / spacing
    return math.radians(SWEEP_AMPLITUDE_DEG) * math.sin(2.0 * math.pi * k / SWEEP_PERIOD_FRAMES)


def mapping_trajectory(path: Path3D, num_frames: int, spacing: float, seed: int) -> list[FrameSpec]:
    """``num_frames`` frames every ``spacing`` metres, sweeping between forward and sideways views."""
    rng = np.random.default_rng([seed, 303])
    frames = []
    for k in range(num_frames):
        arc = min(k * spacing, path.length)
        pose = path.offset_pose(
            arc,
            lateral=float(rng.normal(0.0, 0.1)),
            height=float(rng.normal(0.0, 0.05)),
            yaw_offset=mapping_yaw_offset(arc, spacing) + math.radians(float(rng.normal(0.0, 2.0))),
            pitch=math.radians(float(rng.uniform(0.0, 8.0))),
            roll=math.radians(float(rng.normal(0.0, 1.0))),
        )
        frames.append(FrameSpec(f"map_{k:06d}.jpg", "mapping", pose, arc))
    return frames


def query_trajectory(path: Path3D, num_frames: int, spacing: float, seed: int, split: str,
                     prefix: str) -> list[FrameSpec]:
    """Queries that differ from the mapping run: 0.5-1.5 m lateral and 0.3-1.0 m height offsets,
    10-25 degree yaw changes; positions spread along the whole path, ordered by arc length."""
    rng = np.random.default_rng([seed, 404, sum(map(ord, split))])
    arcs = np.sort(rng.uniform(0.0, path.length, size=num_frames))
    frames = []
    limit = getattr(path, "lateral_limit", 1.5)
    for k, arc in enumerate(arcs):
        lateral = float(rng.uniform(0.5, min(1.5, limit))) * rng.choice([-1.0, 1.0])
        height = float(rng.uniform(0.3, 1.0)) * rng.choice([-1.0, 1.0])
        yaw_change = math.radians(float(rng.uniform(10.0, 25.0))) * rng.choice([-1.0, 1.0])
        pose = path.offset_pose(
            float(arc), lateral, height,
            yaw_offset=mapping_yaw_offset(float(arc), spacing) + yaw_change,
            pitch=math.radians(float(rng.uniform(-3.0, 10.0))),
            roll=math.radians(float(rng.normal(0.0, 2.0))),
        )
        frames.append(FrameSpec(f"{prefix}_{k:06d}.jpg", split, pose, float(arc)))
    return frames
