"""The odometry prior: the camera pose predicted from the last accepted pose and the motion since.

    tracker = OdometryTracker(localizer.conf)
    tracker.seed(cam_from_world, odom_from_camera)              # an accepted pose or /initialpose
    result = tracker.localize(localizer, image, camera, odom_from_camera)   # each frame

With a prediction, the localizer first searches only the map candidates near it (a frame centre
close to the predicted one and the candidate's points in the predicted viewing cone,
``candidates_near``) and falls back to the global search when that gives no pose consistent with
the prediction. The tracker refuses a global pose that disagrees with the prediction beyond the
drift odometry allows (FailureCode.DISAGREES_WITH_PRIOR), unless the global search gives a
consistent pose twice in a row (a kidnapped robot).
Everything here is plain core code: the ROS node only feeds odometry from TF and /initialpose.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..maps.database import LocalizationDatabase
from ..types import Camera, Pose
from .result import FailureCode, LocalizationResult

if TYPE_CHECKING:  # the Localizer imports this module
    from .localizer import ExtractedImage, Localizer


def pose_difference(a: Pose, b: Pose) -> tuple[float, float]:
    """(distance between the camera centres in metres, rotation angle between them in degrees)."""
    cos = (np.trace(a.R @ b.R.T) - 1.0) / 2.0
    return float(np.linalg.norm(a.center - b.center)), float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


@dataclass(frozen=True)
class PosePrior:
    """A predicted cam_from_world and how far a localized pose may lie from it and still agree."""

    cam_from_world: Pose
    tolerance_m: float
    tolerance_deg: float

    def agrees(self, cam_from_world: Pose) -> bool:
        distance, angle = pose_difference(cam_from_world, self.cam_from_world)
        return distance <= self.tolerance_m and angle <= self.tolerance_deg


class CandidateGeometry:
    """Where each map candidate's frames are and where its points lie, for the prior's narrowing.

    The viewing test reads a candidate's points, not its frame's optical axis: a compressed map's
    candidate is a cluster of frames looking in many directions (the demo street's mapping frames
    turn +-50 deg), and its representative frame's axis refused the right cluster for about half of
    the day queries (69-127 deg from a camera that sees the cluster's points).
    """

    samples_per_candidate = 64  # evenly spread points of each candidate (enough for a share, cheap per frame)
    min_visible_share = 0.25  # a candidate is in view when this share of its sample lies inside the cone

    def __init__(self, database: LocalizationDatabase) -> None:
        count = len(database.candidate_ids)
        centers = [np.asarray(database.candidate_centers(i), dtype=np.float64).reshape(-1, 3) for i in range(count)]
        self.owner = np.concatenate([np.full(len(c), i) for i, c in enumerate(centers)]).astype(np.int64)  # (F,)
        self.centers = np.concatenate(centers) if centers else np.zeros((0, 3))  # (F, 3)
        self.samples = np.zeros((count, self.samples_per_candidate, 3))  # (C, S, 3) world points
        self.sampled = np.zeros((count, self.samples_per_candidate), dtype=bool)  # (C, S) which are real
        points_xyz = database.points_xyz
        for i in range(count):
            ids = np.unique(database.candidate_point_ids(i))
            if len(ids) > self.samples_per_candidate:
                ids = ids[np.linspace(0, len(ids) - 1, self.samples_per_candidate).astype(np.int64)]
            self.samples[i, : len(ids)] = points_xyz[ids]
            self.sampled[i, : len(ids)] = True

    def near(self, predicted: Pose, radius_m: float, max_angle_deg: float) -> np.ndarray:
        """(n,) indices of candidates with a frame within ``radius_m`` of the predicted camera centre
        and at least ``min_visible_share`` of their points within ``max_angle_deg`` of the predicted
        viewing direction (in front of the camera)."""
        if not len(self.samples):
            return np.zeros(0, np.int64)
        distance = np.full(len(self.samples), np.inf)
        np.minimum.at(distance, self.owner, np.linalg.norm(self.centers - predicted.center, axis=1))
        close = np.flatnonzero(distance <= radius_m)  # (c,) the viewing test only for these
        rays = self.samples[close] - predicted.center  # (c, S, 3)
        depth = rays @ predicted.R[2]  # (c, S) along the predicted optical axis
        inside = depth >= math.cos(math.radians(max_angle_deg)) * np.linalg.norm(rays, axis=2)
        inside &= (depth > 0) & self.sampled[close]
        share = inside.sum(axis=1) / np.maximum(self.sampled[close].sum(axis=1), 1)
        return close[share >= self.min_visible_share].astype(np.int64)


class OdometryTracker:
    """The last accepted pose and the odometry at that moment; predicts, narrows and judges.

    Conf (the localizer's ``prior`` stage): ``prior_tolerance_m``, ``prior_tolerance_deg``,
    ``prior_drift_m_per_m``, ``prior_drift_deg_per_m``. ``odom_from_camera`` is the camera's pose in
    the odometry frame (odom -> base -> camera from TF); None where there is no odometry.
    """

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self._anchor: tuple[Pose, Pose | None] | None = None  # (accepted cam_from_world, odom_from_camera then)
        self._travelled_m = 0.0  # odometry path length since the anchor
        self._last_odom: Pose | None = None
        # a global pose refused for disagreeing, with its odometry: confirmed by the next frame's
        self._unconfirmed: tuple[Pose, Pose] | None = None
        self.consecutive_agreeing = 0  # accepted poses in a row, each agreeing with the prediction

    @property
    def has_pose(self) -> bool:
        return self._anchor is not None

    def seed(self, cam_from_world: Pose, odom_from_camera: Pose | None) -> None:
        """Start predicting from this pose (an accepted localization, or the robot's /initialpose)."""
        self._anchor = (cam_from_world, odom_from_camera)
        self._travelled_m = 0.0
        self._last_odom = odom_from_camera
        self._unconfirmed = None

    def reset(self) -> None:
        self._anchor, self._last_odom, self._unconfirmed = None, None, None
        self._travelled_m, self.consecutive_agreeing = 0.0, 0

    def _advance(self, odom_from_camera: Pose | None) -> None:
        if odom_from_camera is not None and self._last_odom is not None:
            self._travelled_m += float(np.linalg.norm(odom_from_camera.t - self._last_odom.t))
        self._last_odom = odom_from_camera if odom_from_camera is not None else self._last_odom

    def prior(self, odom_from_camera: Pose | None) -> PosePrior | None:
        """The prediction for a frame whose camera has ``odom_from_camera``; None without an accepted
        pose or without odometry at both ends."""
        if self._anchor is None or odom_from_camera is None or self._anchor[1] is None:
            return None
        anchor_pose, anchor_odom = self._anchor
        return self._predict(anchor_pose, anchor_odom, odom_from_camera, self._travelled_m)

    def _predict(self, cam_from_world: Pose, odom_then: Pose, odom_now: Pose, travelled_m: float) -> PosePrior:
        # world_from_cam_now = world_from_cam_then @ cam_then_from_cam_now (the odometry motion)
        motion = odom_then.inverse() @ odom_now
        predicted = (cam_from_world.inverse() @ motion).inverse()
        conf = self.conf
        return PosePrior(predicted,
                         float(conf["prior_tolerance_m"]) + float(conf["prior_drift_m_per_m"]) * travelled_m,
                         float(conf["prior_tolerance_deg"]) + float(conf["prior_drift_deg_per_m"]) * travelled_m)

    def localize(self, localizer: Localizer, image: np.ndarray, camera: Camera,
                 odom_from_camera: Pose | None) -> LocalizationResult:
        """Localize one frame with the prior when there is one; accept or refuse the pose; track it."""
        return self.localize_extracted(localizer, localizer.extract(image, camera), odom_from_camera)

    def localize_extracted(self, localizer: Localizer, extracted: ExtractedImage,
                           odom_from_camera: Pose | None) -> LocalizationResult:
        """``localize`` on a frame whose features ``localizer.extract`` gave (the node's pipeline)."""
        return self.track(odom_from_camera, lambda prior: localizer.localize_extracted(extracted, prior=prior))

    def track(self, odom_from_camera: Pose | None,
              localize: Callable[[PosePrior | None], LocalizationResult]) -> LocalizationResult:
        """One frame of the tracked frame (a camera, or a rig's base): ``localize`` with this frame's
        prior (None without one) gives the result; the pose is accepted, or refused when it
        disagrees with the prediction (``DISAGREES_WITH_PRIOR``) until confirmed; tracked."""
        self._advance(odom_from_camera)
        prior = self.prior(odom_from_camera)
        result = localize(prior)
        pose = result.cam_from_world if result.success else None
        if pose is None:
            self.consecutive_agreeing = 0
            self._unconfirmed = None
            return result
        if prior is not None and not prior.agrees(pose):
            unconfirmed, self._unconfirmed = self._unconfirmed, None
            confirmed = (unconfirmed is not None and odom_from_camera is not None
                         and self._predict(*unconfirmed, odom_from_camera, 0.0).agrees(pose))
            if not confirmed:
                assert odom_from_camera is not None  # a prior needs odometry
                self._unconfirmed = (pose, odom_from_camera)
                distance, angle = pose_difference(pose, prior.cam_from_world)
                self.consecutive_agreeing = 0
                result.cam_from_world, result.covariance = None, None
                return result.fail(
                    FailureCode.DISAGREES_WITH_PRIOR,
                    f"pose lies {distance:.2f} m / {angle:.1f} deg from the odometry prediction (allowed "
                    f"{prior.tolerance_m:.2f} m / {prior.tolerance_deg:.1f} deg); refused unless the next "
                    "frame's global search confirms it (kidnapped robot), or send /initialpose")
            self.consecutive_agreeing = 0  # a jump: agreement starts again from here
        self._count_agreement(pose, prior)
        self.seed(pose, odom_from_camera)
        return result

    def _count_agreement(self, pose: Pose, prior: PosePrior | None) -> None:
        """Consecutive poses that agree: with the odometry prediction, or without odometry with the
        previous pose itself (a robot standing still)."""
        if prior is None and self._anchor is not None and self._anchor[1] is None:
            prior = PosePrior(self._anchor[0], float(self.conf["prior_tolerance_m"]),
                              float(self.conf["prior_tolerance_deg"]))
        if prior is not None and prior.agrees(pose) and self.consecutive_agreeing > 0:
            self.consecutive_agreeing += 1
        else:
            self.consecutive_agreeing = 1
