"""Pose stage: RANSAC + PnP per candidate, agreement between candidates, the final PnP.

What it measures (inliers, residuals, the strongest conflicting hypothesis) is handed to the pose
checks (checks.py), which decide whether the pose is published.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pycolmap

from ..types import Camera, Pose
from ..maps.database import LocalizationDatabase
from .matching import CandidateMatches


@dataclass
class CandidatePose:
    index: int  # candidate index into the database
    pose: Pose  # cam_from_world of this candidate's RANSAC
    inlier_pairs: np.ndarray  # (I, 2) int64 rows of (query keypoint, map point)


@dataclass
class PoseEstimate:
    """Everything the pose checks read about one query's estimate."""

    camera: Camera  # the query camera (after any downscaling)
    keypoints: np.ndarray  # (N, 2) query keypoints
    registered: list[CandidatePose]  # candidates with a RANSAC pose, in matching order
    agreeing: list[int]  # indices into ``registered`` consistent with the best-supported one
    correspondences: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))  # (C, 2) union
    pose: Pose | None = None  # final cam_from_world; None when the final PnP failed
    inlier_mask: np.ndarray | None = None  # (C,) bool
    covariance: np.ndarray | None = None  # (6, 6)
    residuals_px: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (I,) of the final inliers

    @property
    def num_inliers(self) -> int:
        return int(self.inlier_mask.sum()) if self.inlier_mask is not None else 0

    @property
    def inlier_points(self) -> np.ndarray:
        """(I,) map point ids of the final inliers."""
        return self.correspondences[self.inlier_mask, 1] if self.inlier_mask is not None else np.zeros(0, np.int64)

    @property
    def median_residual_px(self) -> float:
        """Median reprojection error of the final inliers (NaN without a final pose)."""
        return float(np.median(self.residuals_px)) if len(self.residuals_px) else float("nan")

    @property
    def best_inliers(self) -> int:
        return max(len(self.registered[i].inlier_pairs) for i in self.agreeing)

    @property
    def strongest_conflict(self) -> int:
        """Inliers of the strongest registered candidate that contradicts the best pose (0: none)."""
        return max((len(c.inlier_pairs) for i, c in enumerate(self.registered) if i not in self.agreeing), default=0)


class PoseEstimation:
    """Conf: ``ransac_threshold_px``, ``ransac_max_trials``, ``ransac_seed``, ``min_candidate_inliers``,
    ``min_candidate_agreement``; ``early_exit_inliers`` (matching stage) ends the candidate loop."""

    def __init__(self, database: LocalizationDatabase, conf: dict[str, Any], early_exit_inliers: int) -> None:
        self.database, self.conf, self.early_exit_inliers = database, conf, int(early_exit_inliers)

    def register_candidates(self, keypoints: np.ndarray, camera: Camera, candidates: Iterable[CandidateMatches],
                            done: dict[int, CandidatePose | None] | None = None) -> list[CandidatePose]:
        """RANSAC + PnP on each candidate's correspondences, until the candidates that agree with the
        best-supported one hold ``early_exit_inliers``. ``done``: this query's candidates registered
        before (None: no pose), read instead of registered again, and filled with every new one.

        Only agreeing inliers count towards the early exit: inliers of candidates that contradict each
        other (aliased clusters that RANSAC fits with 40-90 wrong matches each) are no evidence for
        any one pose, and summing them stopped the search before the true candidate was reached
        (7-Scenes: the bigger the compressed map, the more such inliers, the fewer queries localized).
        """
        colmap_camera = camera.to_pycolmap()
        registered: list[CandidatePose] = []
        done = {} if done is None else done
        for cand in candidates:
            if cand.index not in done:
                done[cand.index] = self.register_one(keypoints, colmap_camera, cand)
            candidate_pose = done[cand.index]
            if candidate_pose is None:
                continue
            registered.append(candidate_pose)
            if self.early_exit_inliers and self.agreeing_inliers(registered, keypoints, camera) >= self.early_exit_inliers:
                break
        return registered

    def register_one(self, keypoints: np.ndarray, camera: pycolmap.Camera,
                     cand: CandidateMatches) -> CandidatePose | None:
        """One candidate's RANSAC + PnP; None with fewer than ``min_candidate_inliers`` matches or inliers."""
        if len(cand.query_indices) < self.conf["min_candidate_inliers"]:
            return None
        est = self.pnp(keypoints[cand.query_indices], self.database.points_xyz[cand.point_ids], camera)
        if est is None or est["num_inliers"] < self.conf["min_candidate_inliers"]:
            return None
        mask = np.asarray(est["inlier_mask"], dtype=bool)
        pairs = np.stack([cand.query_indices[mask], cand.point_ids[mask]], axis=1)
        return CandidatePose(cand.index, Pose.from_rigid3d(est["cam_from_world"]), pairs)

    def agreeing_inliers(self, registered: list[CandidatePose], keypoints: np.ndarray, camera: Camera) -> int:
        """Inliers of the candidates that agree with the best-supported one (``registered`` not empty)."""
        return sum(len(registered[i].inlier_pairs) for i in self.agreeing_candidates(registered, keypoints, camera))

    def agreeing_candidates(self, registered: list[CandidatePose], keypoints: np.ndarray, camera: Camera) -> list[int]:
        """Indices of the candidates whose inliers the best-supported candidate's pose also explains.

        Each candidate's RANSAC can "succeed" on wrong matches (dark or foreign images), and the
        union of such candidates lets the final PnP assemble a confident wrong pose from many weak
        ones. Only candidates consistent with the strongest one are merged (scale-free test: the
        share of a candidate's inliers that reproject within the RANSAC threshold under the
        reference pose).
        """
        best = int(np.argmax([len(c.inlier_pairs) for c in registered]))
        reference = registered[best].pose
        return [i for i, cand in enumerate(registered) if i == best or self.explains(reference, cand, keypoints, camera)]

    def explains(self, reference: Pose, candidate: CandidatePose, keypoints: np.ndarray, camera: Camera) -> bool:
        """Whether ``min_candidate_agreement`` of the candidate's inliers reproject within the RANSAC
        threshold at the cam_from_world pose ``reference``."""
        cam_pts = reference.transform(self.database.points_xyz[candidate.inlier_pairs[:, 1]])
        front = cam_pts[:, 2] > 1e-6
        err = np.full(len(candidate.inlier_pairs), np.inf)
        err[front] = np.linalg.norm(camera.project(cam_pts[front]) - keypoints[candidate.inlier_pairs[front, 0]], axis=1)
        return bool(np.mean(err < float(self.conf["ransac_threshold_px"])) >= float(self.conf["min_candidate_agreement"]))

    def estimate(self, keypoints: np.ndarray, camera: Camera, registered: list[CandidatePose]) -> PoseEstimate:
        """The final PnP over the union of the agreeing candidates' inliers. ``registered`` is not empty."""
        agreeing = self.agreeing_candidates(registered, keypoints, camera)
        estimate = PoseEstimate(camera, keypoints, registered, agreeing)
        union = np.unique(np.concatenate([registered[i].inlier_pairs for i in agreeing]), axis=0)
        estimate.correspondences = union
        est = self.pnp(keypoints[union[:, 0]], self.database.points_xyz[union[:, 1]], camera.to_pycolmap(),
                       covariance=True)
        if est is None:
            return estimate
        estimate.pose = Pose.from_rigid3d(est["cam_from_world"])
        estimate.inlier_mask = np.asarray(est["inlier_mask"], dtype=bool)
        cov = est.get("covariance")
        estimate.covariance = None if cov is None else np.asarray(cov, dtype=np.float64)
        inliers = union[estimate.inlier_mask]
        projected = camera.project(estimate.pose.transform(self.database.points_xyz[inliers[:, 1]]))
        estimate.residuals_px = np.linalg.norm(projected - keypoints[inliers[:, 0]], axis=1)
        return estimate

    def pnp(self, points2d: np.ndarray, points3d: np.ndarray, camera: pycolmap.Camera, covariance: bool = False):
        """pycolmap's RANSAC + PnP + refinement: (N, 2) pixels, (N, 3) world points -> dict or None."""
        options = pycolmap.AbsolutePoseEstimationOptions()
        options.ransac.max_error = float(self.conf["ransac_threshold_px"])
        options.ransac.random_seed = int(self.conf["ransac_seed"])
        options.ransac.max_num_trials = int(self.conf["ransac_max_trials"])
        return pycolmap.estimate_and_refine_absolute_pose(
            np.asarray(points2d, dtype=np.float64), np.asarray(points3d, dtype=np.float64), camera,
            estimation_options=options, return_covariance=covariance,
        )
