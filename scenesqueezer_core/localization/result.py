"""What localizing one image produces: the pose or a failure code, and every check's measurement."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

from ..types import Pose


class FailureCode(IntEnum):
    """Why a frame got no pose. Mirrored as FAILURE_* constants in msg/LocalizationResult.msg (a test
    checks both agree); ``str(code)`` is the lower-case name used in reports and JSON."""

    NONE = 0
    # the localizer
    BAD_IMAGE = 1  # wrong shape / dtype / size for its intrinsics
    TOO_FEW_KEYPOINTS = 2  # texture-less or blank image
    NO_CANDIDATE_REGISTERED = 3  # no retrieved candidate gave a RANSAC pose
    AMBIGUOUS = 4  # check hypothesis_margin
    NO_FINAL_POSE = 5  # the final RANSAC + PnP found no pose
    TOO_FEW_INLIERS = 6  # check min_inliers
    LOW_INLIER_RATIO = 7  # check min_inlier_ratio
    INVALID_POSE = 8  # check valid_pose: not finite, or the camera does not face its inliers
    FAR_FROM_MAP_FRAMES = 9  # check near_map_frames
    LOOSE_FIT = 10  # check reprojection_error
    OCCLUDED_INLIERS = 11  # check occlusion
    # the odometry prior (prior.py)
    DISAGREES_WITH_PRIOR = 12  # the pose contradicts the odometry prediction, not yet confirmed
    # the node around it
    NO_MAP = 20  # no map loaded (missing, corrupt, not yet reloaded)
    NO_CAMERA_INFO = 21  # no CameraInfo received yet
    BAD_INPUT = 22  # the image message or CameraInfo could not be used
    STAMP_BACKWARDS = 23  # image stamp older than the previous one
    INTERNAL_ERROR = 24  # an unexpected exception; the frame was skipped
    NO_RESULT = 25  # a replay got no result from the node for a frame (dropped or lost)

    def __str__(self) -> str:
        return self.name.lower()


class SearchKind(IntEnum):
    """Which search gave the result: mirrored as SEARCH_* constants in msg/LocalizationResult.msg."""

    NONE = 0  # no search ran (the frame failed before retrieval)
    GLOBAL = 1  # retrieval over the whole map
    PRIOR = 2  # retrieval narrowed to the candidates near the odometry prediction (prior.py)

    def __str__(self) -> str:
        return self.name.lower()


@dataclass
class CheckOutcome:
    """One pose check's verdict on one estimate."""

    name: str  # the check's name (checks.POSE_CHECKS)
    statistic: float  # what it measured (NaN when it could not be measured)
    limit: float  # the threshold in force
    passed: bool


@dataclass
class LocalizationResult:
    success: bool
    failure_reason: str = ""  # one human sentence; empty on success
    failure_code: FailureCode = FailureCode.NONE
    cam_from_world: Pose | None = None
    covariance: np.ndarray | None = None  # (6, 6) pycolmap covariance of cam_from_world
    num_inliers: int = 0
    num_correspondences: int = 0
    candidate_ids: list[int] = field(default_factory=list)
    successful_candidates: list[int] = field(default_factory=list)
    median_reprojection_error_px: float = float("nan")  # of the final inliers
    occluded_inlier_share: float = float("nan")  # final inliers map points would hide at the pose
    checks: list[CheckOutcome] = field(default_factory=list)  # every pose check that ran, in order
    timings: dict[str, float] = field(default_factory=dict)  # seconds: extract, retrieve, match, pnp, total
    search: SearchKind = SearchKind.NONE  # the search the result comes from
    num_candidates_matched: int = 0  # candidates whose features were matched, over every search run

    @property
    def inlier_ratio(self) -> float:
        return self.num_inliers / self.num_correspondences if self.num_correspondences else 0.0

    def fail(self, code: FailureCode, reason: str) -> LocalizationResult:
        self.success, self.failure_code, self.failure_reason = False, code, reason
        return self

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("cam_from_world")
        out["failure_code"] = str(self.failure_code)
        out["search"] = str(self.search)
        out["covariance"] = None if self.covariance is None else np.asarray(self.covariance).tolist()
        if self.cam_from_world is not None:
            out["qvec_wxyz"] = self.cam_from_world.qvec_wxyz.tolist()
            out["tvec"] = self.cam_from_world.t.tolist()
        return out
