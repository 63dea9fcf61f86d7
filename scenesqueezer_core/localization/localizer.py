"""The localizer: a short composition of stages (seed section C).

    image -> extract -> retrieval (top-k candidates) -> matching (2D-3D, lazily, in retrieval order)
          -> pose estimation (RANSAC + PnP per candidate, agreement, final PnP) -> pose checks

Each stage is a module with its own conf sub-dict (conf.stage_conf); the checks are the named
policies of checks.POSE_CHECKS. One Localizer serves both map kinds through the
``LocalizationDatabase`` interface (maps/database.py).
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ImageError
from ..features import Features, load_feature_setup
from ..types import Camera, Pose
from .checks import POSE_CHECKS, CheckContext, Occlusion
from .conf import localizer_conf, stage_conf
from ..maps.database import LocalizationDatabase, load_database
from .matching import CandidateMatches, CandidateMatching
from .pose import CandidatePose, PoseEstimate, PoseEstimation
from .prior import CandidateGeometry, PosePrior
from .result import FailureCode, LocalizationResult, SearchKind
from .retrieval import make_retrieval


@dataclass
class ExtractedImage:
    """A query image after the extraction stage (``Localizer.extract``)."""

    query: Features  # its local features (keypoints in the pixels of ``camera``)
    camera: Camera  # the intrinsics after any downscaling to max_image_size
    seconds: float  # time the extraction took (image checks and downscaling included)


@dataclass
class CandidateWork:
    """One query's candidates matched and registered so far, by candidate index (a pose of None: the
    candidate did not register), so that a second search over the same candidates does not redo them."""

    matches: dict[int, CandidateMatches] = field(default_factory=dict)
    poses: dict[int, CandidatePose | None] = field(default_factory=dict)


class Localizer:
    def __init__(self, database: LocalizationDatabase, conf: dict[str, Any] | None = None, device: str = "auto"):
        self.conf = localizer_conf(conf)
        self.database = database
        self.extractor, default_matcher = load_feature_setup(database.feature_setup, device=device)
        self.retrieval = make_retrieval(database, stage_conf(self.conf, "retrieval"))
        self.matching = CandidateMatching(database, stage_conf(self.conf, "matching"), default_matcher, device)
        self.pose_estimation = PoseEstimation(database, stage_conf(self.conf, "pose"),
                                              early_exit_inliers=int(self.conf["early_exit_inliers"]))
        checks_conf = stage_conf(self.conf, "checks")
        self.checks = [check(checks_conf) for check in POSE_CHECKS]

    @classmethod
    def from_file(cls, map_path: str | os.PathLike, conf: dict[str, Any] | None = None, device: str = "auto") -> Localizer:
        return cls(load_database(map_path), conf, device)

    @property
    def matcher(self):
        return self.matching.matcher

    @property
    def map_points(self) -> np.ndarray:
        return np.asarray(self.database.points_xyz, dtype=np.float32)

    @property
    def map_colors(self) -> np.ndarray:
        return np.asarray(self.database.points_color, dtype=np.uint8)

    def localize(self, image: np.ndarray, camera: Camera, prior: PosePrior | None = None) -> LocalizationResult:
        """(H, W, 3) uint8 RGB (or (H, W) grey) image taken by ``camera`` -> result with pose or failure code.

        With a ``prior`` (prior.py: a predicted pose and its tolerance) the candidates near the
        prediction are searched first; the global search runs when that gives no pose agreeing
        with the prediction. ``result.search`` says which search the result comes from.
        """
        return self.localize_extracted(self.extract(image, camera), prior)

    def extract(self, image: np.ndarray, camera: Camera) -> ExtractedImage:
        """The first stage alone: check and downscale the image, extract its local features.

        Split from the rest so that a caller can extract the next frame while this one is
        registered (the node's two-stage pipeline). ImageError: the caller's image or camera.
        """
        t0 = time.perf_counter()
        image, camera = prepare_image(image, camera, int(self.conf["max_image_size"]))
        query = self.extractor.extract(image)
        return ExtractedImage(query, camera, time.perf_counter() - t0)

    def localize_extracted(self, extracted: ExtractedImage, prior: PosePrior | None = None) -> LocalizationResult:
        """Everything after extraction (``localize``): retrieval, matching, pose, checks. The result's
        ``total`` time is the extraction's plus this call's (not the wait between the two)."""
        timings = dict.fromkeys(("extract", "retrieve", "match", "pnp"), 0.0)
        timings["extract"] = extracted.seconds
        t_start = time.perf_counter() - extracted.seconds
        result = LocalizationResult(success=False, timings=timings)
        query, camera = extracted.query, extracted.camera
        # what the narrowed search matched and registered, the global search reads instead of redoing
        work = CandidateWork()

        if prior is not None and len(query) >= 4:
            t0 = time.perf_counter()
            near = self.candidates_near(prior.cam_from_world, prior)
            narrowed = self.retrieval(query, among=near, k=int(self.conf["prior_top_k"])) if len(near) else None
            timings["retrieve"] += time.perf_counter() - t0
            if narrowed is not None:
                attempt = LocalizationResult(success=False, timings=dict(timings), search=SearchKind.PRIOR)
                attempt = self._register(query, camera, narrowed, attempt, t_start, work)
                if attempt.success and attempt.cam_from_world is not None and prior.agrees(attempt.cam_from_world):
                    return attempt
                # keep the narrowed search's cost in the global result's timings and counts
                timings.update({k: v for k, v in attempt.timings.items() if k != "total"})
                result.num_candidates_matched = attempt.num_candidates_matched

        t0 = time.perf_counter()
        retrieved = self.retrieval(query)
        result.search = SearchKind.GLOBAL
        timings["retrieve"] += time.perf_counter() - t0
        if len(query) < 4:
            result.candidate_ids = retrieved.candidate_ids
            return _finish(result.fail(FailureCode.TOO_FEW_KEYPOINTS,
                                       f"only {len(query)} keypoints in the image (texture-less or blank)"), t_start)
        return self._register(query, camera, retrieved, result, t_start, work)

    def candidates_near(self, cam_from_world: Pose, prior: PosePrior) -> np.ndarray:
        """(n,) indices of the candidates the prior's narrowed search ranks for a camera predicted
        at ``cam_from_world``: a frame within ``prior_radius_m`` and a quarter of their points within
        ``prior_max_view_angle_deg`` of the predicted viewing direction, each widened by the prior's
        tolerance."""
        return self.candidate_geometry.near(cam_from_world, float(self.conf["prior_radius_m"]) + prior.tolerance_m,
                                            float(self.conf["prior_max_view_angle_deg"]) + prior.tolerance_deg)

    @functools.cached_property
    def candidate_geometry(self) -> CandidateGeometry:
        """Where the map's candidates are, for the prior's narrowing (built on its first use)."""
        return CandidateGeometry(self.database)

    def register(self, query, camera: Camera, indices: np.ndarray,
                 work: CandidateWork | None = None) -> tuple[list[CandidatePose], int]:
        """Match the candidates ``indices`` (k,) lazily, in order, and register each (RANSAC + PnP) until
        the pose stage's early exit: (the registered candidates, how many were matched; those in
        ``work``, this query's earlier searches, are reused and not counted). The matching time is
        ``self.matching.seconds``."""
        work = CandidateWork() if work is None else work
        known = set(work.matches)
        matched = 0

        def counted(matches):
            nonlocal matched
            for candidate in matches:
                matched += candidate.index not in known
                yield candidate

        registered = self.pose_estimation.register_candidates(
            query.keypoints, camera, counted(self.matching.matches(query, indices, work.matches)), work.poses)
        return registered, matched

    def _register(self, query, camera: Camera, retrieved, result: LocalizationResult,
                  t_start: float, work: CandidateWork) -> LocalizationResult:
        """Match ``retrieved`` candidates, estimate the pose, run the pose checks; time and count into ``result``."""
        timings = result.timings
        result.candidate_ids = retrieved.candidate_ids
        t0 = time.perf_counter()
        match_before = timings["match"]
        registered, matched = self.register(query, camera, retrieved.indices, work)
        result.num_candidates_matched += matched
        timings["match"] = match_before + self.matching.seconds  # matching runs lazily inside the registration loop
        if not registered:
            timings["pnp"] += time.perf_counter() - t0 - self.matching.seconds
            return _finish(result.fail(FailureCode.NO_CANDIDATE_REGISTERED,
                                       "no retrieved candidate could be registered (too few 2D-3D matches)"), t_start)
        estimate = self.pose_estimation.estimate(query.keypoints, camera, registered)
        timings["pnp"] += time.perf_counter() - t0 - self.matching.seconds
        return _finish(self.judge(estimate, retrieved.indices, result), t_start)

    def judge(self, estimate: PoseEstimate, retrieved_indices: np.ndarray,
              result: LocalizationResult) -> LocalizationResult:
        """Run every pose check on ``estimate`` and fill ``result``: the pose, or the first failed check.

        ``retrieved_indices`` (k,): the candidates retrieval returned for this query (the occlusion
        check's local map). The multi-camera rig (rig.py) judges each camera's share of a rig pose here.
        """
        registered = estimate.registered
        result.successful_candidates = [int(self.database.candidate_ids[registered[i].index]) for i in estimate.agreeing]
        result.num_correspondences = len(estimate.correspondences)
        result.num_inliers = estimate.num_inliers

        context = CheckContext(self.database, retrieved_indices, self.matching.candidate_point_ids)
        failed = None
        for check in self.checks:
            if check.needs_pose and estimate.pose is None:
                continue
            outcome = check(estimate, context)
            result.checks.append(outcome)
            if isinstance(check, Occlusion):
                result.occluded_inlier_share = outcome.statistic
            if not outcome.passed and failed is None:
                failed = (check, outcome)
        result.median_reprojection_error_px = estimate.median_residual_px
        if failed is not None:
            check, outcome = failed
            return result.fail(check.code, check.reason(outcome.statistic, outcome.limit))
        if estimate.pose is None:
            return result.fail(FailureCode.NO_FINAL_POSE, "final RANSAC+PnP found no pose")
        result.success = True
        result.cam_from_world = estimate.pose
        result.covariance = estimate.covariance
        return result


def _finish(result: LocalizationResult, t_start: float) -> LocalizationResult:
    result.timings["total"] = time.perf_counter() - t_start
    return result


def prepare_image(image: np.ndarray, camera: Camera, max_size: int) -> tuple[np.ndarray, Camera]:
    """Check shape/dtype and the camera's size; downscale huge images together with the intrinsics.

    (H, W) grey or (H, W, 3) RGB uint8 -> (H', W', 3) RGB uint8 and the camera of that size.
    """
    import cv2

    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ImageError(f"expected an (H, W, 3) uint8 RGB image, got shape {image.shape} dtype {image.dtype}")
    h, w = image.shape[:2]
    if h < 16 or w < 16:
        raise ImageError(f"image of {w}x{h} pixels is too small to localize")
    if (w, h) != (camera.width, camera.height):
        raise ImageError(
            f"image is {w}x{h} but the camera intrinsics are for {camera.width}x{camera.height}; "
            "send the matching CameraInfo or resize the image"
        )
    scale = max_size / max(h, w)
    if scale < 1.0:
        new_w, new_h = round(w * scale), round(h * scale)
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        camera = camera.scaled(new_w / w, new_h / h)
    return image, camera
