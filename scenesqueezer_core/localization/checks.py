"""Pose checks: named, independent policies that decide whether an estimated pose is published.

A wrong pose published with confidence is worse than none. Each check measures one statistic of
the estimate, compares it with its option's limit and gives a verdict; every check runs and is
reported (``LocalizationResult.checks``), the first that fails names the failure. A new check is
one class here plus one line in ``POSE_CHECKS``; its option joins the localizer conf, the node's
parameters and ``config/localizer.yaml`` from its ``option`` (docs/RELIABILITY.md shows what each
one catches, measured on real and synthetic maps).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..geometry import hidden_points
from ..maps.database import LocalizationDatabase
from ..types import Pose
from .options import Option
from .pose import PoseEstimate
from .result import CheckOutcome, FailureCode


@dataclass
class CheckContext:
    """What a check may read besides the estimate."""

    database: LocalizationDatabase
    retrieved: np.ndarray  # (k,) candidate indices retrieval returned
    candidate_point_ids: Callable[[int], np.ndarray]  # candidate index -> (N,) map point ids of its features


class PoseCheck:
    """One policy. Subclasses set the class attributes and ``statistic``; ``passes`` compares."""

    name: ClassVar[str]
    code: ClassVar[FailureCode]
    option: ClassVar[Option | None]  # its limit, declared once (None: a fixed limit)
    off_value: ClassVar[float | None] = None  # the option value that turns the check off
    needs_pose: ClassVar[bool] = True  # only meaningful once the final PnP found a pose
    is_minimum: ClassVar[bool] = False  # the statistic must reach the limit (else stay below it)

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf_limit = float(conf[self.option.name]) if self.option else float("nan")

    def statistic(self, estimate: PoseEstimate, context: CheckContext) -> float:
        raise NotImplementedError

    def limit(self, estimate: PoseEstimate, context: CheckContext) -> float:
        return self.conf_limit

    def reason(self, statistic: float, limit: float) -> str:
        raise NotImplementedError

    def passes(self, statistic: float, limit: float) -> bool:
        if self.off_value is not None and self.conf_limit == self.off_value:
            return True
        if np.isnan(statistic):  # nothing to measure is no evidence against the pose
            return True
        return statistic >= limit if self.is_minimum else statistic <= limit

    def __call__(self, estimate: PoseEstimate, context: CheckContext) -> CheckOutcome:
        statistic = float(self.statistic(estimate, context))
        limit = float(self.limit(estimate, context))
        return CheckOutcome(self.name, statistic, limit, self.passes(statistic, limit))


class HypothesisMargin(PoseCheck):
    """The best candidate's inliers over those of the strongest candidate that contradicts its pose.

    RANSAC at a 12 px threshold finds 15-40 "inliers" among wrong matches of any candidate
    (night images, repeated facades), so inlier counts mean little on their own. What separates
    a true pose is its margin over the strongest contradicting hypothesis, as Lowe's ratio test
    does for descriptor matches.
    """

    name, code, needs_pose, is_minimum, off_value = "hypothesis_margin", FailureCode.AMBIGUOUS, False, True, 0.0
    option = Option("min_hypothesis_margin", 1.6, "The best candidate's inliers must outnumber those of the "
                    "strongest candidate contradicting its pose by this factor (perceptual aliasing guard; "
                    "0 turns it off).", "checks", value_range=(0.0, 100.0))

    def statistic(self, estimate: PoseEstimate, context: CheckContext) -> float:
        conflict = estimate.strongest_conflict
        return estimate.best_inliers / conflict if conflict else float("inf")

    def reason(self, statistic: float, limit: float) -> str:
        return (f"ambiguous: the best candidate pose has only {statistic:.2f} times the inliers of a conflicting "
                f"one (margin below {limit:g}; perceptual aliasing)")


class MinInliers(PoseCheck):
    name, code, is_minimum = "min_inliers", FailureCode.TOO_FEW_INLIERS, True
    option = Option("min_inliers", 40, "A pose with fewer PnP inliers is refused.", "checks",
                    value_range=(6, 100000))

    def statistic(self, estimate: PoseEstimate, context: CheckContext) -> float:
        return estimate.num_inliers

    def reason(self, statistic: float, limit: float) -> str:
        return f"only {statistic:.0f} inliers (minimum {limit:.0f})"


class MinInlierRatio(PoseCheck):
    name, code, is_minimum = "min_inlier_ratio", FailureCode.LOW_INLIER_RATIO, True
    option = Option("min_inlier_ratio", 0.2, "A pose whose inliers / correspondences is lower is refused.",
                    "checks", value_range=(0.0, 1.0))

    def statistic(self, estimate: PoseEstimate, context: CheckContext) -> float:
        return estimate.num_inliers / max(len(estimate.correspondences), 1)

    def reason(self, statistic: float, limit: float) -> str:
        return f"inlier ratio {statistic:.2f} below {limit:g}"


class ValidPose(PoseCheck):
    """A finite pose whose camera faces (nearly) all of its inliers."""

    name, code, option, is_minimum = "valid_pose", FailureCode.INVALID_POSE, None, True
    MIN_SHARE_IN_FRONT = 0.99

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf_limit = self.MIN_SHARE_IN_FRONT

    def statistic(self, estimate: PoseEstimate, context: CheckContext) -> float:
        pose = estimate.pose
        if not (np.all(np.isfinite(pose.R)) and np.all(np.isfinite(pose.t))):
            return -1.0
        depths = pose.transform(context.database.points_xyz[estimate.inlier_points])[:, 2]
        return float(np.mean(depths > 0)) if len(depths) else 1.0

    def reason(self, statistic: float, limit: float) -> str:
        if statistic < 0:
            return "the estimated pose is not finite"
        return "the estimated camera does not face its inlier points"


class NearMapFrames(PoseCheck):
    """The pose's distance to the nearest map frame that supplied its inliers, in scene depths.

    Local features do not match across very different viewpoints, so a true query camera sees
    the inlier points from near one of the frames that observed them. A camera several scene
    depths away from all of them comes from perceptual aliasing (repeated facades, lit windows
    at night). Scale-free: each distance is compared with that frame's median distance to the
    inlier points. A compressed map's candidate is a cluster: every frame of it counts.
    """

    name, code, off_value = "near_map_frames", FailureCode.FAR_FROM_MAP_FRAMES, 0.0
    option = Option("max_distance_to_candidate", 2.0, "A pose further than this many scene depths from every "
                    "map frame that supplied its inliers is refused (0 turns it off).", "checks",
                    value_range=(0.0, 1000.0))

    def statistic(self, estimate: PoseEstimate, context: CheckContext) -> float:
        xyz = context.database.points_xyz[estimate.inlier_points]
        ratios = []
        for i in estimate.agreeing:
            for center in context.database.candidate_centers(estimate.registered[i].index):
                depth = np.median(np.linalg.norm(xyz - center, axis=1))
                ratios.append(np.linalg.norm(estimate.pose.center - center) / max(depth, 1e-9))
        return min(ratios) if ratios else float("nan")

    def reason(self, statistic: float, limit: float) -> str:
        return f"the pose lies {statistic:.1f} scene depths from the map frames that support it (perceptual aliasing)"


class ReprojectionError(PoseCheck):
    """The median reprojection error of the final inliers.

    Correct 2D-3D matches of a true pose reproject within the keypoint noise; a pose assembled
    from look-alike structure explains its "inliers" only approximately, so their residuals
    spread over the whole RANSAC threshold. What "within the noise" means depends on the map and
    the query:
    - the limit is in the map's pixels: a query of finer angular resolution than the map frames
      sees the map points' triangulation noise magnified, so the limit grows by the ratio of the
      focal lengths;
    - a map whose own frames fit their triangulated points loosely (blur, rolling shutter, a
      rough calibration or ground truth) gets ``MAP_NOISE_FACTOR`` times its own median residual
      when that is more than the option (``LocalizationDatabase.own_residual_px``; a compressed
      map carries its source map's, measured at compression). True poses stayed within 1.4-2.2
      times that median on the real sets (KITTI 06, 7-Scenes, Strecha) and 3.9 times on synthetic
      night queries; poses of foreign images sat at 2.4-5.8 times it.
    """

    name, code, off_value = "reprojection_error", FailureCode.LOOSE_FIT, 0.0
    option = Option("max_median_reprojection_error_px", 4.0, "A pose whose inliers' median reprojection error "
                    "is above this many pixels (in the map's pixels; maps whose own frames fit their points "
                    "more loosely get 3 times their own median residual) is refused: aliased poses fit their "
                    "inliers loosely (0 turns it off; scale it with ransac_threshold_px).", "checks",
                    value_range=(0.0, 100.0))
    MAP_NOISE_FACTOR = 3.0

    def statistic(self, estimate: PoseEstimate, context: CheckContext) -> float:
        return estimate.median_residual_px

    def limit(self, estimate: PoseEstimate, context: CheckContext) -> float:
        cameras = [context.database.candidate_camera(estimate.registered[i].index) for i in estimate.agreeing]
        map_focal = np.median([c.focal for c in cameras])
        in_map_pixels = max(self.conf_limit, self.MAP_NOISE_FACTOR * context.database.own_residual_px)
        return in_map_pixels * max(1.0, estimate.camera.focal / max(float(map_focal), 1e-9))

    def reason(self, statistic: float, limit: float) -> str:
        return (f"median reprojection error {statistic:.1f} px of the inliers is above {limit:.1f} px "
                "(a loose fit: perceptual aliasing)")


# A map point hides an inlier when it projects within this fraction of the image size (8 px at
# 640x480, twice the feature noise) and is this much nearer to the camera (a margin for
# triangulation noise and thin structures).
OCCLUSION_RADIUS = 0.0125
OCCLUSION_DEPTH_RATIO = 0.7


class Occlusion(PoseCheck):
    """Share of the inliers that map points hide at the pose but not from the map frame that saw them.

    A true camera sees its inliers through free space. An aliased pose puts the camera where the
    map's surfaces stand between it and the matched points (seen: a foreign street of identical
    facades localized 3 m below the road, its inliers behind multi-view road points). But sparse
    points are not opaque surfaces: a z-buffer of splatted points "hides" many truly visible points
    too (on KITTI 14-32 % of a true pose's inliers: far points near the vanishing point behind
    nearer road, pole and vegetation points a few pixels away). That floor belongs to the map: the
    map frame that observed an inlier saw it, so whatever the z-buffer hides from that frame is
    the sparse geometry's error, not evidence. An inlier counts only when hidden at the pose and
    not from its supporting frame (the candidate frame it was matched in; for a compressed map's
    cluster, neither from its representative frame nor from the cluster frame nearest the pose,
    seen with the pose's orientation). The occluders are the multi-view points of every retrieved
    candidate, the local map around the pose.
    """

    name, code, off_value = "occlusion", FailureCode.OCCLUDED_INLIERS, 1.0
    option = Option("max_occluded_inliers", 0.15, "A pose is refused when more than this share of its inliers "
                    "would be hidden behind other map points seen from it, but not from the map frames that "
                    "observed them (free-space check against aliased poses; raise it for maps of scenes that "
                    "change a lot; 1 turns it off).", "checks", value_range=(0.0, 1.0))

    def statistic(self, estimate: PoseEstimate, context: CheckContext) -> float:
        database = context.database
        points = estimate.inlier_points
        if len(points) == 0:
            return float("nan")
        occluders = database.points_xyz[local_occluders(context)]
        xyz = database.points_xyz[points]
        camera = estimate.camera
        hidden = hidden_points(camera, estimate.pose, xyz, occluders,
                               OCCLUSION_RADIUS * max(camera.width, camera.height), OCCLUSION_DEPTH_RATIO)
        if not hidden.any():
            return 0.0
        # each inlier's supporting frame: the first agreeing candidate (best first) that holds it
        support = np.full(len(points), -1)
        for i in sorted(estimate.agreeing, key=lambda i: -len(estimate.registered[i].inlier_pairs)):
            candidate = estimate.registered[i]
            support[(support < 0) & np.isin(points, candidate.inlier_pairs[:, 1])] = candidate.index
        for index in np.unique(support[hidden & (support >= 0)]):
            rows = np.flatnonzero(hidden & (support == index))
            frame_camera = database.candidate_camera(int(index))
            hidden[rows] &= ~hidden_points(frame_camera, database.candidate_pose(int(index)), xyz[rows], occluders,
                                           OCCLUSION_RADIUS * max(frame_camera.width, frame_camera.height),
                                           OCCLUSION_DEPTH_RATIO)
            centers = database.candidate_centers(int(index))
            if len(centers) > 1 and hidden[rows].any():
                hidden[rows] &= ~hidden_points(camera, near_frame_view(estimate.pose, centers), xyz[rows], occluders,
                                               OCCLUSION_RADIUS * max(camera.width, camera.height),
                                               OCCLUSION_DEPTH_RATIO)
        return float(hidden.mean())

    def reason(self, statistic: float, limit: float) -> str:
        return (f"{100 * statistic:.0f} % of the inliers would be hidden behind map points at the estimated pose "
                f"but are seen from their map frames (limit {100 * limit:.0f} %; perceptual aliasing)")


def near_frame_view(pose: Pose, centers: np.ndarray) -> Pose:
    """The pose's orientation moved to the nearest of a cluster's frame centres (K, 3).

    A compressed map's cluster stores one representative frame's pose but every frame's centre.
    The frame that observed an inlier is most likely the cluster frame nearest the query (local
    features match across small viewpoint changes only), and its orientation is close to the
    query's; what the sparse z-buffer hides from that view is the map's own error, as for the
    representative frame.
    """
    nearest = centers[np.argmin(np.linalg.norm(centers - pose.center, axis=1))]
    return Pose(pose.R, -pose.R @ nearest)


def local_occluders(context: CheckContext) -> np.ndarray:
    """(M,) ids of the multi-view map points of every retrieved candidate (trusted occluders)."""
    local = np.unique(np.concatenate([context.candidate_point_ids(int(i)) for i in context.retrieved]))
    return local[np.asarray(context.database.points_multiview)[local]]


# Run in this order; the first that fails names the failure.
POSE_CHECKS: tuple[type[PoseCheck], ...] = (
    HypothesisMargin,
    MinInliers,
    MinInlierRatio,
    ValidPose,
    NearMapFrames,
    ReprojectionError,
    Occlusion,
)
