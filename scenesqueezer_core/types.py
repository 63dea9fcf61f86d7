"""Typed core objects shared by every stage: cameras, poses, frames, datasets.

Conventions used everywhere in the core:

* Poses are world-to-camera (``cam_from_world``): ``x_cam = R @ X_world + t``.
* Pixel coordinates follow COLMAP: the image's top-left *corner* is (0, 0), so the centre of the
  pixel in column ``i`` and row ``j`` is ``(i + 0.5, j + 0.5)``. Feature extractors that report
  pixel-centre coordinates (OpenCV, kornia, XFeat) are shifted by +0.5 at their boundary.
* Images handed between stages are ``(H, W, 3)`` uint8 RGB arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pycolmap
from scipy.spatial.transform import Rotation

from .errors import CameraModelError, ConfigError, DatasetError

# Parameter names per supported model, in COLMAP's order. Distortion is never ignored: models with
# distortion are handed to pycolmap, which undistorts keypoints (``cam_from_img``) and projects with
# distortion (``img_from_cam``).
CAMERA_MODELS: dict[str, tuple[str, ...]] = {
    "SIMPLE_PINHOLE": ("f", "cx", "cy"),
    "PINHOLE": ("fx", "fy", "cx", "cy"),
    "SIMPLE_RADIAL": ("f", "cx", "cy", "k"),
    "RADIAL": ("f", "cx", "cy", "k1", "k2"),
    "OPENCV": ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2"),
}


@dataclass(frozen=True)
class Camera:
    """Intrinsics of one camera. ``params`` in COLMAP order for ``model`` (see CAMERA_MODELS)."""

    model: str
    width: int
    height: int
    params: np.ndarray  # (P,) float64

    def __post_init__(self) -> None:
        if self.model not in CAMERA_MODELS:
            raise CameraModelError(
                f"unsupported camera model {self.model!r}; supported: {', '.join(CAMERA_MODELS)}. "
                "Convert the model (e.g. undistort the images with COLMAP) or add support."
            )
        params = np.asarray(self.params, dtype=np.float64).reshape(-1)
        expected = len(CAMERA_MODELS[self.model])
        if params.size != expected:
            raise CameraModelError(
                f"camera model {self.model} takes {expected} parameters "
                f"({' '.join(CAMERA_MODELS[self.model])}), got {params.size}"
            )
        if not np.all(np.isfinite(params)):
            raise CameraModelError(f"camera parameters must be finite, got {params.tolist()}")
        if self.width <= 0 or self.height <= 0:
            raise CameraModelError(f"camera size must be positive, got {self.width}x{self.height}")
        focal = params[:2] if self.model in ("PINHOLE", "OPENCV") else params[:1]
        if np.any(focal <= 0):
            raise CameraModelError(f"focal length must be positive, got {focal.tolist()}")
        object.__setattr__(self, "params", params)

    @classmethod
    def pinhole(cls, fx: float, fy: float, cx: float, cy: float, width: int, height: int) -> Camera:
        return cls("PINHOLE", int(width), int(height), np.array([fx, fy, cx, cy], dtype=np.float64))

    @classmethod
    def from_pycolmap(cls, camera: pycolmap.Camera) -> Camera:
        return cls(camera.model.name, int(camera.width), int(camera.height), np.array(camera.params))

    def to_pycolmap(self, camera_id: int = 1) -> pycolmap.Camera:
        cam = pycolmap.Camera(
            model=self.model, width=self.width, height=self.height, params=self.params.tolist()
        )
        cam.camera_id = camera_id
        return cam

    @property
    def has_distortion(self) -> bool:
        n_base = 3 if self.model.startswith("SIMPLE") or self.model == "RADIAL" else 4
        return bool(np.any(self.params[n_base:] != 0))

    @property
    def K(self) -> np.ndarray:
        """(3, 3) calibration matrix (COLMAP pixel convention)."""
        if self.model in ("PINHOLE", "OPENCV"):
            fx, fy, cx, cy = self.params[:4]
        else:
            fx = fy = self.params[0]
            cx, cy = self.params[1:3]
        return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)

    @property
    def focal(self) -> float:
        """Mean focal length in pixels (fx + fy) / 2."""
        return float(self.K[0, 0] + self.K[1, 1]) / 2.0

    def scaled(self, sx: float, sy: float | None = None) -> Camera:
        """The camera for an image resized by (sx, sy); distortion coefficients are unchanged."""
        sy = sx if sy is None else sy
        p = self.params.copy()
        if self.model in ("PINHOLE", "OPENCV"):
            p[[0, 2]] *= sx
            p[[1, 3]] *= sy
        else:
            if abs(sx - sy) > 1e-9:
                raise CameraModelError(f"{self.model} has one focal length: scale must be isotropic")
            p[:3] *= sx
        return Camera(self.model, round(self.width * sx), round(self.height * sy), p)

    def undistort_points(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) distorted pixels -> (N, 2) pixels of the equivalent distortion-free pinhole K."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if not self.has_distortion or len(points) == 0:
            return points.copy()
        normalized = self.to_pycolmap().cam_from_img(points)
        return normalized @ self.K[:2, :2].T + self.K[:2, 2]

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """(N, 3) camera-frame points -> (N, 2) pixels, with distortion. Points need z > 0."""
        points_cam = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
        if len(points_cam) == 0:
            return np.zeros((0, 2))
        if not self.has_distortion:
            normalized = points_cam[:, :2] / points_cam[:, 2:3]
            return normalized @ self.K[:2, :2].T + self.K[:2, 2]
        return np.asarray(self.to_pycolmap().img_from_cam(np.ascontiguousarray(points_cam), check_cheirality=False))


@dataclass(frozen=True)
class Pose:
    """A rigid transform ``x_out = R @ x_in + t``; in the core always ``cam_from_world``."""

    R: np.ndarray  # (3, 3) float64 rotation
    t: np.ndarray  # (3,) float64 translation

    def __post_init__(self) -> None:
        object.__setattr__(self, "R", np.asarray(self.R, dtype=np.float64).reshape(3, 3))
        object.__setattr__(self, "t", np.asarray(self.t, dtype=np.float64).reshape(3))

    @classmethod
    def identity(cls) -> Pose:
        return cls(np.eye(3), np.zeros(3))

    @classmethod
    def from_qvec_tvec(cls, qvec_wxyz: np.ndarray, tvec: np.ndarray) -> Pose:
        w, x, y, z = np.asarray(qvec_wxyz, dtype=np.float64)
        return cls(Rotation.from_quat([x, y, z, w]).as_matrix(), tvec)

    @classmethod
    def from_rigid3d(cls, rigid: pycolmap.Rigid3d) -> Pose:
        return cls(rigid.rotation.matrix(), rigid.translation)

    @classmethod
    def from_matrix(cls, T: np.ndarray) -> Pose:
        T = np.asarray(T, dtype=np.float64)
        return cls(T[:3, :3], T[:3, 3])

    def to_rigid3d(self) -> pycolmap.Rigid3d:
        return pycolmap.Rigid3d(pycolmap.Rotation3d(self.R), self.t)

    @property
    def qvec_wxyz(self) -> np.ndarray:
        x, y, z, w = Rotation.from_matrix(self.R).as_quat()
        return np.array([w, x, y, z])

    @property
    def matrix(self) -> np.ndarray:
        """(4, 4) homogeneous matrix."""
        T = np.eye(4)
        T[:3, :3] = self.R
        T[:3, 3] = self.t
        return T

    def inverse(self) -> Pose:
        return Pose(self.R.T, -self.R.T @ self.t)

    def __matmul__(self, other: Pose) -> Pose:
        return Pose(self.R @ other.R, self.R @ other.t + self.t)

    def transform(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) -> (N, 3)."""
        return np.asarray(points, dtype=np.float64).reshape(-1, 3) @ self.R.T + self.t

    @property
    def center(self) -> np.ndarray:
        """(3,) camera centre in world coordinates, for a cam_from_world pose."""
        return -self.R.T @ self.t


@dataclass(frozen=True)
class RigCamera:
    """One camera of a rig: its name and its optical frame's pose in the rig's base frame."""

    name: str
    base_from_camera: Pose  # x_base = R @ x_camera + t; camera frame z forward, x right, y down


@dataclass(frozen=True)
class Rig:
    """Cameras rigidly mounted on one base; images are handed over in this order."""

    cameras: tuple[RigCamera, ...]

    def __post_init__(self) -> None:
        names = [c.name for c in self.cameras]
        if not names:
            raise ConfigError("a rig needs at least one camera; list the camera names (parameter cameras)")
        if len(set(names)) != len(names):
            raise ConfigError(f"rig camera names must be unique, got {names}")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cameras]


@dataclass
class Frame:
    """One image of a dataset: name (relative to the image folder), camera, pose (or None)."""

    name: str
    camera: Camera
    cam_from_world: Pose | None
    image_path: Path


@dataclass
class Dataset:
    """Frames with intrinsics and world-to-camera poses, and named splits of frame names."""

    root: Path
    frames: dict[str, Frame]
    splits: dict[str, list[str]] = field(default_factory=dict)

    def split(self, name: str) -> list[Frame]:
        if name not in self.splits:
            raise DatasetError(
                f"split {name!r} not found in {self.root / 'splits.json'}; "
                f"available splits: {', '.join(sorted(self.splits)) or 'none'}"
            )
        return [self.frames[n] for n in self.splits[name]]

    @property
    def has_poses(self) -> bool:
        return all(f.cam_from_world is not None for f in self.frames.values())
