"""A multi-camera rig: one pose of the rig's base from every camera's 2D-3D matches together.

    rig = Rig((RigCamera("front", Pose.identity()), RigCamera("left", base_from_left), ...))
    result = RigLocalizer(localizer, rig).localize([front_rgb, left_rgb, ...], [front_cam, left_cam, ...])
    result.success, result.base_from_world, result.cameras["left"].checks

Each camera's image goes through the single-camera stages as today (extract, retrieve, match,
RANSAC + PnP per candidate). Then:

1. pycolmap's generalized absolute pose (LO-RANSAC + refinement over several cameras with known
   ``cam_from_rig``) on the union of every camera's candidate inliers picks the rig pose that the
   most matches of all cameras together support;
2. per camera, the candidates whose inliers that rig pose explains are the agreeing ones (as the
   single-camera final PnP merges those agreeing with its best candidate); the rest conflict;
3. the generalized estimate is refined again on the agreeing candidates' inliers only;
4. each camera's share (its pose ``cam_from_base @ base_from_world``, its correspondences and
   inliers) goes through every single-camera pose check (Localizer.judge).

The rig pose is published only when at least one camera passes every check at the rig-derived
camera pose, on its own inliers, against the same limits a single camera faces: the rig never
publishes a pose that the single-camera checks refuse for every camera. What the rig adds is that
each camera gets its chance (a side camera facing a facade localizes when the front camera faces an
empty road or a dark scene), and that the passing camera's pose is the better-constrained pose
of all cameras' inliers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pycolmap

from ..errors import ConfigError
from ..types import Camera, Pose, Rig
from .localizer import ExtractedImage, Localizer
from .pose import CandidatePose, PoseEstimate
from .prior import PosePrior
from .result import FailureCode, LocalizationResult, SearchKind


@dataclass
class RigLocalizationResult(LocalizationResult):
    """The rig's result. ``cam_from_world`` is the pose of the rig's *base* (``base_from_world``,
    with its covariance); the counts are totals over the cameras; ``checks`` are the passing (else
    the best) camera's, named ``<camera>/<check>``. ``cameras`` holds each camera's share: its pose
    derived from the rig pose, its inliers and every check's verdict on them."""

    cameras: dict[str, LocalizationResult] = field(default_factory=dict)
    passing_cameras: list[str] = field(default_factory=list)  # cameras whose checks all passed

    @property
    def base_from_world(self) -> Pose | None:
        return self.cam_from_world


@dataclass
class _CameraQuery:
    """One camera's image after the single-camera stages up to the per-candidate RANSAC."""

    camera: Camera  # after downscaling
    keypoints: np.ndarray  # (N, 2)
    retrieved: np.ndarray  # (k,) candidate indices
    candidate_ids: list[int]
    registered: list[CandidatePose]
    num_candidates_matched: int


class RigLocalizer:
    """Localizes a rig with a single-camera ``Localizer`` (its map, stages, conf and checks)."""

    def __init__(self, localizer: Localizer, rig: Rig) -> None:
        self.localizer, self.rig = localizer, rig
        self.cams_from_rig = [c.base_from_camera.inverse() for c in rig.cameras]

    def localize(self, images: Sequence[np.ndarray], cameras: Sequence[Camera],
                 prior: PosePrior | None = None) -> RigLocalizationResult:
        """One (H, W, 3) uint8 image and its intrinsics per rig camera, in the rig's order -> one rig pose.

        With a ``prior`` (a predicted pose of the rig's *base*, e.g. OdometryTracker's for the base
        frame) each camera searches the candidates near its own predicted pose first, as a single
        camera does (``prior_top_k`` of them, within ``prior_radius_m`` and
        ``prior_max_view_angle_deg`` plus the prior's tolerance); the global search runs when that
        gives no rig pose agreeing with the prediction. ``result.search`` says which one it is.
        """
        if len(images) != len(self.rig.cameras) or len(cameras) != len(self.rig.cameras):
            raise ConfigError(f"the rig has {len(self.rig.cameras)} cameras ({', '.join(self.rig.names)}) but "
                              f"got {len(images)} images and {len(cameras)} cameras; pass one of each per camera")
        t_start = time.perf_counter()
        timings = dict.fromkeys(("extract", "retrieve", "match", "pnp"), 0.0)
        extracted = [self.localizer.extract(image, camera) for image, camera in zip(images, cameras)]
        timings["extract"] = sum(e.seconds for e in extracted)
        if prior is not None:
            near = [self.localizer.candidates_near(cam_from_rig @ prior.cam_from_world, prior)
                    for cam_from_rig in self.cams_from_rig]
            if any(len(n) for n in near):
                attempt = self._estimate(extracted, dict(timings), SearchKind.PRIOR, t_start, near,
                                         int(self.localizer.conf["prior_top_k"]))
                if attempt.success and attempt.cam_from_world is not None and prior.agrees(attempt.cam_from_world):
                    return attempt
                timings = {k: v for k, v in attempt.timings.items() if k != "total"}
        return self._estimate(extracted, timings, SearchKind.GLOBAL, t_start)

    def _estimate(self, extracted: list[ExtractedImage], timings: dict[str, float], search: SearchKind,
                  t_start: float, among: list[np.ndarray] | None = None, k: int | None = None) -> RigLocalizationResult:
        """The rig pose from every camera's extracted features: retrieval (``among`` each camera's
        candidate subset, ``k`` of them, when the prior narrows it), matching, generalized pose, checks."""
        result = RigLocalizationResult(success=False, timings=timings, search=search)
        queries = [self._register(e, timings, None if among is None else among[i], k) for i, e in enumerate(extracted)]
        result.candidate_ids = [i for q in queries for i in q.candidate_ids]
        result.num_candidates_matched = sum(q.num_candidates_matched for q in queries)
        if not any(q.registered for q in queries):
            few = [name for name, q in zip(self.rig.names, queries) if len(q.keypoints) < 4]
            if len(few) == len(queries):
                return _failed(result, FailureCode.TOO_FEW_KEYPOINTS,
                               "fewer than 4 keypoints in every camera's image (texture-less or blank)", t_start)
            return _failed(result, FailureCode.NO_CANDIDATE_REGISTERED, "no retrieved candidate of any camera "
                           "could be registered (too few 2D-3D matches)", t_start)

        t0 = time.perf_counter()
        all_pairs = [_union([c.inlier_pairs for c in q.registered]) for q in queries]
        hypothesis = self._generalized_pose(queries, all_pairs)
        agreeing: list[list[int]] = [[] for _ in queries]
        if hypothesis is not None:
            rig_hypothesis = Pose.from_rigid3d(hypothesis["rig_from_world"])
            agreeing = [self._agreeing(q, rig_hypothesis, i) for i, q in enumerate(queries)]
        union = [_union([q.registered[j].inlier_pairs for j in agree]) for q, agree in zip(queries, agreeing)]
        final = self._generalized_pose(queries, union, covariance=True) if any(map(len, union)) else None
        timings["pnp"] += time.perf_counter() - t0
        if final is None:
            return _failed(result, FailureCode.NO_FINAL_POSE, "the generalized RANSAC+PnP over every camera's "
                           "matches found no rig pose", t_start)
        rig_from_world = Pose.from_rigid3d(final["rig_from_world"])
        mask = np.asarray(final["inlier_mask"], dtype=bool)

        offset = 0
        residuals = []
        for i, (name, query) in enumerate(zip(self.rig.names, queries)):
            share = LocalizationResult(success=False, search=search, candidate_ids=query.candidate_ids)
            estimate = PoseEstimate(query.camera, query.keypoints, query.registered, agreeing[i])
            estimate.correspondences = union[i]
            estimate.inlier_mask = mask[offset:offset + len(union[i])]
            offset += len(union[i])
            estimate.pose = self.cams_from_rig[i] @ rig_from_world
            inliers = estimate.correspondences[estimate.inlier_mask]
            points = self.localizer.database.points_xyz[inliers[:, 1]]
            estimate.residuals_px = np.linalg.norm(
                query.camera.project(estimate.pose.transform(points)) - query.keypoints[inliers[:, 0]], axis=1)
            residuals.append(estimate.residuals_px)
            if not agreeing[i]:
                share.fail(FailureCode.NO_CANDIDATE_REGISTERED,
                           "no candidate of this camera agrees with the rig pose" if query.registered
                           else "no retrieved candidate could be registered (too few 2D-3D matches)")
            else:
                self.localizer.judge(estimate, query.retrieved, share)
            result.cameras[name] = share

        result.passing_cameras = [name for name, share in result.cameras.items() if share.success]
        result.num_inliers = int(mask.sum())
        result.num_correspondences = len(mask)
        all_residuals = np.concatenate(residuals)
        result.median_reprojection_error_px = float(np.median(all_residuals)) if len(all_residuals) else float("nan")
        # the passing camera with the most inliers speaks for the rig (else the camera with the most inliers)
        ranked = sorted(result.cameras, key=lambda n: (result.cameras[n].success, result.cameras[n].num_inliers),
                        reverse=True)
        lead = result.cameras[ranked[0]]
        result.checks = [type(c)(f"{ranked[0]}/{c.name}", c.statistic, c.limit, c.passed) for c in lead.checks]
        result.occluded_inlier_share = lead.occluded_inlier_share
        result.successful_candidates = [i for n in ranked if result.cameras[n].success
                                        for i in result.cameras[n].successful_candidates]
        if not result.passing_cameras:
            return _failed(result, lead.failure_code, "no camera of the rig passes the pose checks at the rig "
                           f"pose; camera {ranked[0]!r}: {lead.failure_reason}", t_start)
        result.success = True
        result.cam_from_world = rig_from_world
        covariance = final.get("covariance")
        result.covariance = None if covariance is None else np.asarray(covariance, dtype=np.float64)
        return _finish(result, t_start)

    def _register(self, extracted: ExtractedImage, timings: dict[str, float], among: np.ndarray | None = None,
                  k: int | None = None) -> _CameraQuery:
        """One camera: retrieve (``among`` a candidate subset when given), match and RANSAC + PnP per
        candidate (the Localizer's stages)."""
        localizer = self.localizer
        query, camera = extracted.query, extracted.camera
        if among is not None and not len(among):  # the prior puts no candidate near this camera
            return _CameraQuery(camera, query.keypoints, np.zeros(0, np.int64), [], [], 0)
        t0 = time.perf_counter()
        retrieved = localizer.retrieval(query) if among is None else localizer.retrieval(query, among=among, k=k)
        timings["retrieve"] += time.perf_counter() - t0
        if len(query) < 4:
            return _CameraQuery(camera, query.keypoints, retrieved.indices, retrieved.candidate_ids, [], 0)
        t0 = time.perf_counter()
        registered, matched = localizer.register(query, camera, retrieved.indices)
        timings["match"] += localizer.matching.seconds  # matching runs lazily inside the registration loop
        timings["pnp"] += time.perf_counter() - t0 - localizer.matching.seconds
        return _CameraQuery(camera, query.keypoints, retrieved.indices, retrieved.candidate_ids, registered, matched)

    def _agreeing(self, query: _CameraQuery, rig_from_world: Pose, camera_index: int) -> list[int]:
        """Indices of the camera's registered candidates whose inliers the rig pose explains."""
        cam_from_world = self.cams_from_rig[camera_index] @ rig_from_world
        estimation = self.localizer.pose_estimation
        return [j for j, candidate in enumerate(query.registered)
                if estimation.explains(cam_from_world, candidate, query.keypoints, query.camera)]

    def _generalized_pose(self, queries: list[_CameraQuery], pairs: list[np.ndarray], covariance: bool = False):
        """pycolmap's generalized RANSAC + refinement over every camera's (C_i, 2) (keypoint, map point)
        pairs -> its dict (rig_from_world, inlier_mask in the order of the cameras' pairs) or None."""
        conf = self.localizer.pose_estimation.conf
        options = pycolmap.RANSACOptions()
        options.max_error = float(conf["ransac_threshold_px"])  # pixels, as the single-camera PnP
        options.random_seed = int(conf["ransac_seed"])
        options.max_num_trials = int(conf["ransac_max_trials"])
        points2d = np.concatenate([q.keypoints[p[:, 0]] for q, p in zip(queries, pairs)]).astype(np.float64)
        points3d = self.localizer.database.points_xyz[np.concatenate([p[:, 1] for p in pairs])].astype(np.float64)
        if len(points2d) < 6:
            return None
        camera_idxs = np.concatenate([np.full(len(p), i) for i, p in enumerate(pairs)]).tolist()
        return pycolmap.estimate_and_refine_generalized_absolute_pose(
            points2d, points3d, camera_idxs, [c.to_rigid3d() for c in self.cams_from_rig],
            [q.camera.to_pycolmap(i + 1) for i, q in enumerate(queries)], estimation_options=options,
            return_covariance=covariance)


def _union(pairs: list[np.ndarray]) -> np.ndarray:
    """(C, 2) unique (query keypoint, map point) rows of several (I, 2) arrays."""
    return np.unique(np.concatenate(pairs), axis=0) if pairs else np.zeros((0, 2), np.int64)


def _failed(result: RigLocalizationResult, code: FailureCode, reason: str, t_start: float) -> RigLocalizationResult:
    result.fail(code, reason)
    return _finish(result, t_start)


def _finish(result: RigLocalizationResult, t_start: float) -> RigLocalizationResult:
    result.timings["total"] = time.perf_counter() - t_start
    return result
