"""Pose and epipolar utilities (cam_from_world poses, COLMAP pixel convention)."""

from __future__ import annotations

import numpy as np

from .types import Camera, Pose


def skew(v: np.ndarray) -> np.ndarray:
    """(3,) -> (3, 3) cross-product matrix."""
    x, y, z = v
    return np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]], dtype=np.float64)


def relative_pose(cam1_from_world: Pose, cam2_from_world: Pose) -> Pose:
    """cam2_from_cam1."""
    return cam2_from_world @ cam1_from_world.inverse()


def fundamental_from_poses(camera1: Camera, pose1: Pose, camera2: Camera, pose2: Pose) -> np.ndarray:
    """(3, 3) F with x2^T F x1 = 0 for undistorted pixels x1 in image 1 and x2 in image 2."""
    rel = relative_pose(pose1, pose2)
    essential = skew(rel.t) @ rel.R
    return np.linalg.inv(camera2.K).T @ essential @ np.linalg.inv(camera1.K)


def sampson_error(F: np.ndarray, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """(N,) first-order geometric error (pixels) of correspondences (N, 2) <-> (N, 2)."""
    h1 = np.hstack([x1, np.ones((len(x1), 1))])
    h2 = np.hstack([x2, np.ones((len(x2), 1))])
    Fx1 = h1 @ F.T
    Ftx2 = h2 @ F
    num = np.sum(h2 * Fx1, axis=1)
    den = Fx1[:, 0] ** 2 + Fx1[:, 1] ** 2 + Ftx2[:, 0] ** 2 + Ftx2[:, 1] ** 2
    return np.abs(num) / np.sqrt(np.maximum(den, 1e-12))


def symmetric_epipolar_error(F: np.ndarray, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """(N,) mean of the point-to-epipolar-line distances in both images (pixels)."""
    h1 = np.hstack([x1, np.ones((len(x1), 1))])
    h2 = np.hstack([x2, np.ones((len(x2), 1))])
    l2 = h1 @ F.T
    l1 = h2 @ F
    num = np.abs(np.sum(h2 * l2, axis=1))
    d2 = num / np.sqrt(np.maximum(l2[:, 0] ** 2 + l2[:, 1] ** 2, 1e-12))
    d1 = num / np.sqrt(np.maximum(l1[:, 0] ** 2 + l1[:, 1] ** 2, 1e-12))
    return 0.5 * (d1 + d2)


def pose_error(estimate: Pose, truth: Pose) -> tuple[float, float]:
    """(translation error in metres between camera centres, rotation error in degrees)."""
    dt = float(np.linalg.norm(estimate.center - truth.center))
    cos = (np.trace(estimate.R @ truth.R.T) - 1.0) / 2.0
    dr = float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    return dt, dr


def viewing_direction(pose: Pose) -> np.ndarray:
    """(3,) unit optical axis (+z of the camera) in world coordinates."""
    return pose.R[2].copy()


def project(camera: Camera, pose: Pose, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) world points -> ((N, 2) pixels, (N,) depth). Pixels of points behind are NaN."""
    cam = pose.transform(points_world)
    depth = cam[:, 2]
    pixels = np.full((len(cam), 2), np.nan)
    front = depth > 1e-6
    pixels[front] = camera.project(cam[front])
    return pixels, depth


def hidden_points(camera: Camera, pose: Pose, points_world: np.ndarray, occluders_world: np.ndarray,
                  radius_px: float, depth_ratio: float = 0.7) -> np.ndarray:
    """(N,) bool: which of ``points_world`` (N, 3) ``occluders_world`` (M, 3) would hide from the camera.

    A point counts as hidden when an occluder projects within ``radius_px`` of its pixel at less
    than ``depth_ratio`` times its depth (a sparse z-buffer test: the margin absorbs triangulation
    noise and thin structures). Points behind the camera or outside the image count as not hidden.
    """
    from scipy.spatial import cKDTree

    hidden = np.zeros(len(points_world), dtype=bool)
    if len(points_world) == 0:
        return hidden

    def in_view(world: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pixels, depths = project(camera, pose, np.asarray(world, dtype=np.float64).reshape(-1, 3))
        with np.errstate(invalid="ignore"):  # pixels of points behind the camera are NaN
            inside = (depths > 1e-6) & (pixels[:, 0] >= 0) & (pixels[:, 0] < camera.width) \
                & (pixels[:, 1] >= 0) & (pixels[:, 1] < camera.height)
        return pixels, depths, inside

    pixels, depths, inside = in_view(occluders_world)
    if not inside.any():
        return hidden
    pixels, depths = pixels[inside], depths[inside]
    point_pixels, point_depths, visible = in_view(points_world)
    neighbours = cKDTree(pixels).query_ball_point(point_pixels[visible], radius_px)
    hidden[visible] = [bool(n) and depths[n].min() < depth_ratio * z
                       for n, z in zip(neighbours, point_depths[visible])]
    return hidden


def occluded_share(camera: Camera, pose: Pose, points_world: np.ndarray, occluders_world: np.ndarray,
                   radius_px: float, depth_ratio: float = 0.7) -> float:
    """Share of ``points_world`` (N, 3) that ``occluders_world`` (M, 3) would hide (``hidden_points``);
    0.0 for no points."""
    if len(points_world) == 0:
        return 0.0
    return float(hidden_points(camera, pose, points_world, occluders_world, radius_px, depth_ratio).mean())
