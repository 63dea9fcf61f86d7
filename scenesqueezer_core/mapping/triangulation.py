"""Triangulate 3D points from known poses with pycolmap (tracks, reprojection and angle filters).

We go through a COLMAP database because pycolmap's ``triangulate_points`` is the maintained path
that builds multi-view tracks, merges and completes them, and filters by reprojection error and
triangulation angle; writing that by hand would re-implement COLMAP's IncrementalTriangulator.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycolmap

from ..types import Frame


@dataclass
class Triangulation:
    """3D points and their tracks. Track entries index frames (0..F-1) and their keypoints."""

    xyz: np.ndarray  # (P, 3) float64 world coordinates
    error: np.ndarray  # (P,) float32 mean reprojection error in pixels
    track_offsets: np.ndarray  # (P + 1,) int64: observations of point p are [offsets[p], offsets[p+1])
    track_frames: np.ndarray  # (T,) int32 frame index of each observation
    track_keypoints: np.ndarray  # (T,) int32 keypoint index within that frame

    @property
    def track_lengths(self) -> np.ndarray:
        """(P,) int64."""
        return np.diff(self.track_offsets)


def triangulate_known_poses(
    frames: list[Frame],
    keypoints: list[np.ndarray],
    pair_matches: dict[tuple[int, int], np.ndarray],
    max_reproj_error: float = 4.0,
    min_tri_angle_deg: float = 1.5,
    work_dir: Path | None = None,
) -> Triangulation:
    """Triangulate tracks from verified pairwise matches.

    frames: F frames with intrinsics and cam_from_world poses.
    keypoints: F arrays (N_f, 2) in COLMAP pixel convention.
    pair_matches: {(f0, f1): (M, 2) keypoint indices}, geometrically verified, f0 < f1.
    """
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp_name:
        tmp = Path(tmp_name)
        database_path = tmp / "database.db"
        rec = pycolmap.Reconstruction()
        db = pycolmap.Database.open(str(database_path))
        try:
            for idx, (frame, kpts) in enumerate(zip(frames, keypoints)):
                cid = idx + 1
                camera = frame.camera.to_pycolmap(camera_id=cid)
                db.write_camera(camera, use_camera_id=True)
                rec.add_camera_with_trivial_rig(camera)
                image = pycolmap.Image(name=frame.name, camera_id=cid, image_id=cid,
                                       keypoints=np.asarray(kpts, dtype=np.float64))
                db.write_image(pycolmap.Image(name=frame.name, camera_id=cid, image_id=cid), use_image_id=True)
                db.write_keypoints(cid, np.asarray(kpts, dtype=np.float32))
                rec.add_image_with_trivial_frame(image, frame.cam_from_world.to_rigid3d())
            for (f0, f1), matches in pair_matches.items():
                if len(matches) == 0:
                    continue
                matches = np.asarray(matches, dtype=np.uint32)
                db.write_matches(f0 + 1, f1 + 1, matches)
                geometry = pycolmap.TwoViewGeometry()
                # Poses are known, so matches were verified against them; CALIBRATED is required
                # because pycolmap 4.x skips pairs whose configuration is UNDEFINED.
                geometry.config = pycolmap.TwoViewGeometryConfiguration.CALIBRATED
                geometry.inlier_matches = matches
                db.write_two_view_geometry(f0 + 1, f1 + 1, geometry)
        finally:
            db.close()

        options = pycolmap.IncrementalPipelineOptions()
        options.triangulation.min_angle = min_tri_angle_deg
        options.triangulation.complete_max_reproj_error = max_reproj_error
        options.triangulation.merge_max_reproj_error = max_reproj_error
        options.mapper.filter_max_reproj_error = max_reproj_error
        options.mapper.filter_min_tri_angle = min_tri_angle_deg
        (tmp / "out").mkdir()
        rec = pycolmap.triangulate_points(rec, str(database_path), str(tmp), str(tmp / "out"),
                                          clear_points=True, options=options)

    xyz, errors, offsets, track_frames, track_kpts = [], [], [0], [], []
    for point in rec.points3D.values():
        elements = point.track.elements
        if len(elements) < 2:
            continue
        xyz.append(point.xyz)
        errors.append(point.error)
        for el in elements:
            track_frames.append(el.image_id - 1)
            track_kpts.append(el.point2D_idx)
        offsets.append(len(track_frames))
    return Triangulation(
        xyz=np.asarray(xyz, dtype=np.float64).reshape(-1, 3),
        error=np.asarray(errors, dtype=np.float32),
        track_offsets=np.asarray(offsets, dtype=np.int64),
        track_frames=np.asarray(track_frames, dtype=np.int32),
        track_keypoints=np.asarray(track_kpts, dtype=np.int32),
    )
