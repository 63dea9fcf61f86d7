"""Localizer: query image -> top-k candidates -> 2D-3D matches -> RANSAC+PnP per candidate -> final PnP.

One Localizer serves both map kinds through the ``LocalizationDatabase`` interface: for an
uncompressed SceneMap a candidate is a mapping frame (its triangulated keypoints); for a
CompressedMap a candidate is a co-visible cluster (its kept points projected into the cluster's
representative frame). Follows the seed's section C.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pycolmap

from .errors import ConfigError, ImageError, MapFileError
from .features import load_feature_setup
from .features.base import Features, merge_conf
from .geometry import occluded_share
from .retrieval import VladModel, top_k
from .types import Camera, Pose

DEFAULT_LOCALIZER_CONF: dict[str, Any] = {
    "top_k": 15,
    "ransac_threshold_px": 12.0,
    "min_candidate_inliers": 12,  # a candidate takes part in the final PnP only above this
    "min_candidate_agreement": 0.5,  # ... and if this share of its inliers fits the best candidate's pose
    "min_hypothesis_margin": 1.6,  # best candidate's inliers / strongest conflicting candidate's; 0: off
    "max_distance_to_candidate": 2.0,  # in scene depths of the inliers seen from the candidate frame; 0: off
    "max_occluded_inliers": 0.15,  # share of final inliers that map points would hide at the pose; 1: off
    # median reprojection error of the final inliers; 0: off. True poses stay near the keypoint noise
    # (1-3 px by day, up to 5 at night), aliased ones spread over the RANSAC threshold (docs/RELIABILITY.md)
    "max_median_reprojection_error_px": 4.0,
    "min_inliers": 40,  # never report a pose supported by fewer inliers
    "min_inlier_ratio": 0.2,  # inliers / correspondences of the final PnP
    "max_image_size": 1600,  # larger images are downscaled (intrinsics scaled alike)
    "early_exit_inliers": 200,  # stop matching candidates once this many inliers are found (0: off)
    "ransac_seed": 0,  # fixed so that offline and online evaluations agree exactly
    # pycolmap's 10000 spends most PnP time on candidates with hopeless matches; 2000 trials still
    # find a 12 % inlier set with 97 % probability (same poses on the benchmarks, 10 % faster)
    "ransac_max_trials": 2000,
    "precompute_candidates_max": 20000,  # prepare every candidate at load up to this many
}


# Occlusion check: a map point hides an inlier when it projects within this fraction of the image
# size (8 px at 640x480, twice the feature noise) and is this much nearer to the camera (a margin for
# triangulation noise and thin structures).
OCCLUSION_RADIUS = 0.0125
OCCLUSION_DEPTH_RATIO = 0.7
# Only multi-view points (SceneMap.multiview_points) count as occluders: on the Strecha castle 93-99 %
# of the points "hiding" the inliers of true poses were two-view points; without them < 1 % are hidden.


class LocalizationDatabase(Protocol):
    """What the localizer needs from a map."""

    feature_setup: str
    vlad: VladModel
    global_descriptors: np.ndarray  # (C, G) float32
    points_xyz: np.ndarray  # (P, 3) float64
    points_color: np.ndarray  # (P, 3) uint8
    points_multiview: np.ndarray  # (P,) bool: seen by >= 3 map frames (trusted occluders)
    candidate_ids: np.ndarray  # (C,) int64 ids reported in results (frame or cluster ids)
    file_bytes: int

    def candidate_features(self, index: int) -> tuple[Features, np.ndarray]:
        """(features of candidate ``index``, (N,) int64 point id of each feature)."""

    def candidate_pose(self, index: int) -> Pose:
        """cam_from_world of the frame a candidate's features live in (frame / representative)."""

    def candidate_camera(self, index: int) -> Camera:
        """Intrinsics of that frame."""

    def candidate_centers(self, index: int) -> np.ndarray:
        """(K, 3) camera centres of every map frame behind candidate ``index`` (a frame, or a cluster's frames)."""


@dataclass
class LocalizationResult:
    success: bool
    failure_reason: str = ""
    cam_from_world: Pose | None = None
    covariance: np.ndarray | None = None  # (6, 6) pycolmap covariance of cam_from_world
    num_inliers: int = 0
    num_correspondences: int = 0
    candidate_ids: list[int] = field(default_factory=list)
    successful_candidates: list[int] = field(default_factory=list)
    median_reprojection_error_px: float = float("nan")  # of the final inliers
    occluded_inlier_share: float = float("nan")  # final inliers map points would hide at the pose
    timings: dict[str, float] = field(default_factory=dict)  # seconds: extract, retrieve, match, pnp, total

    @property
    def inlier_ratio(self) -> float:
        return self.num_inliers / self.num_correspondences if self.num_correspondences else 0.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("cam_from_world")
        out["covariance"] = None if self.covariance is None else np.asarray(self.covariance).tolist()
        if self.cam_from_world is not None:
            out["qvec_wxyz"] = self.cam_from_world.qvec_wxyz.tolist()
            out["tvec"] = self.cam_from_world.t.tolist()
        return out


class Localizer:
    def __init__(self, database: LocalizationDatabase, conf: dict[str, Any] | None = None, device: str = "auto"):
        self.conf = merge_conf(DEFAULT_LOCALIZER_CONF, conf)
        _validate_conf(self.conf)
        self.database = database
        self.extractor, self.matcher = load_feature_setup(database.feature_setup, device=device)
        self._candidate_cache: dict[int, tuple[Features, np.ndarray]] = {}
        # Candidate features (projected kept points / triangulated keypoints) are prepared once at
        # load, so query latency and memory stay flat from the first frame on.
        if len(database.candidate_ids) <= int(self.conf["precompute_candidates_max"]):
            for index in range(len(database.candidate_ids)):
                self._candidate(index)

    @classmethod
    def from_file(cls, map_path: str | os.PathLike, conf: dict[str, Any] | None = None, device: str = "auto") -> Localizer:
        return cls(load_database(map_path), conf, device)

    @property
    def map_points(self) -> np.ndarray:
        return np.asarray(self.database.points_xyz, dtype=np.float32)

    @property
    def map_colors(self) -> np.ndarray:
        return np.asarray(self.database.points_color, dtype=np.uint8)

    def _candidate(self, index: int) -> tuple[Features, np.ndarray]:
        if index not in self._candidate_cache:
            self._candidate_cache[index] = self.database.candidate_features(index)
        return self._candidate_cache[index]

    def localize(self, image: np.ndarray, camera: Camera) -> LocalizationResult:
        conf = self.conf
        timings: dict[str, float] = {}
        t_start = time.perf_counter()
        image, camera = _prepare_image(image, camera, conf["max_image_size"])

        t0 = time.perf_counter()
        query = self.extractor.extract(image)
        timings["extract"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        global_query = self.database.vlad.describe(query.descriptors)
        order, _ = top_k(global_query, self.database.global_descriptors, int(conf["top_k"]))
        candidate_ids = [int(self.database.candidate_ids[i]) for i in order]
        timings["retrieve"] = time.perf_counter() - t0

        result = LocalizationResult(success=False, candidate_ids=candidate_ids, timings=timings)
        if len(query) < 4:
            return self._finish(result, t_start, f"only {len(query)} keypoints in the image (texture-less or blank)")

        t0 = time.perf_counter()
        candidates = [self._candidate(int(i)) for i in order]
        early_exit = int(conf["early_exit_inliers"])
        if early_exit:
            # matched lazily, in retrieval order, so that an early exit also saves the matching
            all_matches = _LazyMatches(self.matcher, query, [c[0] for c in candidates])
        else:
            all_matches = self.matcher.match_many(query, [c[0] for c in candidates])
        timings["match"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        colmap_camera = camera.to_pycolmap()
        inlier_pairs: list[np.ndarray] = []
        candidate_poses: list[Pose] = []
        candidate_labels: list[int] = []
        candidate_indices: list[int] = []
        total_inliers = 0
        for cand_index, ((_, point_ids), matches) in enumerate(zip(candidates, all_matches)):
            if len(matches) < 4:
                continue
            q_idx = matches.indices[:, 0]
            p_idx = point_ids[matches.indices[:, 1]]
            valid = p_idx >= 0
            q_idx, p_idx = q_idx[valid], p_idx[valid]
            if len(q_idx) < conf["min_candidate_inliers"]:
                continue
            est = self._pnp(query.keypoints[q_idx], self.database.points_xyz[p_idx], colmap_camera)
            if est is None or est["num_inliers"] < conf["min_candidate_inliers"]:
                continue
            mask = np.asarray(est["inlier_mask"], dtype=bool)
            inlier_pairs.append(np.stack([q_idx[mask], p_idx[mask]], axis=1))
            candidate_poses.append(Pose.from_rigid3d(est["cam_from_world"]))
            candidate_labels.append(candidate_ids[cand_index])
            candidate_indices.append(int(order[cand_index]))
            total_inliers += int(mask.sum())
            if conf["early_exit_inliers"] and total_inliers >= conf["early_exit_inliers"]:
                break
        if early_exit:  # the lazy matching ran inside the loop: keep the stage times apart
            timings["match"] += all_matches.seconds
            t0 += all_matches.seconds
        if not inlier_pairs:
            timings["pnp"] = time.perf_counter() - t0
            return self._finish(result, t_start, "no retrieved candidate could be registered (too few 2D-3D matches)")

        agreeing = self._agreeing_candidates(inlier_pairs, candidate_poses, query.keypoints, camera)
        result.successful_candidates = [candidate_labels[i] for i in agreeing]
        reason = self._conflicting_hypotheses_check(inlier_pairs, agreeing)
        if reason:
            timings["pnp"] = time.perf_counter() - t0
            return self._finish(result, t_start, reason)
        union = np.unique(np.concatenate([inlier_pairs[i] for i in agreeing]), axis=0)
        result.num_correspondences = len(union)
        est = self._pnp(query.keypoints[union[:, 0]], self.database.points_xyz[union[:, 1]], colmap_camera,
                        covariance=True)
        timings["pnp"] = time.perf_counter() - t0
        if est is None:
            return self._finish(result, t_start, "final RANSAC+PnP found no pose")
        result.num_inliers = int(est["num_inliers"])
        pose = Pose.from_rigid3d(est["cam_from_world"])
        mask = np.asarray(est["inlier_mask"], dtype=bool)
        projected = camera.project(pose.transform(self.database.points_xyz[union[mask, 1]]))
        residuals = np.linalg.norm(projected - query.keypoints[union[mask, 0]], axis=1)
        result.median_reprojection_error_px = float(np.median(residuals)) if len(residuals) else float("nan")
        result.occluded_inlier_share = self._occluded_share(pose, camera, union[mask, 1], [int(i) for i in order])
        reason = (self._sanity_check(pose, est, union)
                  or self._near_candidates_check(pose, [candidate_indices[i] for i in agreeing], union[mask, 1])
                  or self._residual_check(result.median_reprojection_error_px, camera,
                                          [candidate_indices[i] for i in agreeing])
                  or self._occlusion_check(result.occluded_inlier_share))
        if reason:
            return self._finish(result, t_start, reason)
        result.success = True
        result.cam_from_world = pose
        cov = est.get("covariance")
        result.covariance = None if cov is None else np.asarray(cov, dtype=np.float64)
        return self._finish(result, t_start, "")

    def _agreeing_candidates(self, inlier_pairs: list[np.ndarray], poses: list[Pose], keypoints: np.ndarray,
                             camera: Camera) -> list[int]:
        """Candidates whose inliers the best-supported candidate's pose also explains.

        Each candidate's RANSAC can "succeed" on wrong matches (dark or foreign images), and the
        union of such candidates lets the final PnP assemble a confident wrong pose from many weak
        ones. Only candidates consistent with the strongest one are merged (scale-free test: the
        share of a candidate's inliers that reproject within the RANSAC threshold under the
        reference pose).
        """
        best = int(np.argmax([len(p) for p in inlier_pairs]))
        reference = poses[best]
        threshold = float(self.conf["ransac_threshold_px"])
        keep = []
        for i, pairs in enumerate(inlier_pairs):
            if i == best:
                keep.append(i)
                continue
            cam_pts = reference.transform(self.database.points_xyz[pairs[:, 1]])
            front = cam_pts[:, 2] > 1e-6
            err = np.full(len(pairs), np.inf)
            err[front] = np.linalg.norm(camera.project(cam_pts[front]) - keypoints[pairs[front, 0]], axis=1)
            if np.mean(err < threshold) >= float(self.conf["min_candidate_agreement"]):
                keep.append(i)
        return keep

    def _conflicting_hypotheses_check(self, inlier_pairs: list[np.ndarray], agreeing: list[int]) -> str:
        """Reject when a candidate that contradicts the best pose is almost as well supported.

        RANSAC at a 12 px threshold finds 15-40 "inliers" among wrong matches of any candidate
        (night images, repeated facades), so inlier counts mean little on their own. What separates
        a true pose is its margin over the strongest contradicting hypothesis, as Lowe's ratio test
        does for descriptor matches. On the default synthetic scene every wrong night pose but one had
        a margin of at most 1.5, every correct one above 1.6 (docs/RELIABILITY.md).
        """
        margin = float(self.conf["min_hypothesis_margin"])
        conflicting = [len(p) for i, p in enumerate(inlier_pairs) if i not in agreeing]
        if margin <= 0 or not conflicting:
            return ""
        best = max(len(inlier_pairs[i]) for i in agreeing)
        if best < margin * max(conflicting):
            return (f"ambiguous: a conflicting candidate pose has {max(conflicting)} inliers against {best} for "
                    f"the best (margin below {margin:g}; perceptual aliasing)")
        return ""

    def _pnp(self, points2d: np.ndarray, points3d: np.ndarray, camera: pycolmap.Camera, covariance: bool = False):
        options = pycolmap.AbsolutePoseEstimationOptions()
        options.ransac.max_error = float(self.conf["ransac_threshold_px"])
        options.ransac.random_seed = int(self.conf["ransac_seed"])
        options.ransac.max_num_trials = int(self.conf["ransac_max_trials"])
        return pycolmap.estimate_and_refine_absolute_pose(
            np.asarray(points2d, dtype=np.float64), np.asarray(points3d, dtype=np.float64), camera,
            estimation_options=options, return_covariance=covariance,
        )

    def _sanity_check(self, pose: Pose, est: dict, union: np.ndarray) -> str:
        conf = self.conf
        if int(est["num_inliers"]) < conf["min_inliers"]:
            return f"only {int(est['num_inliers'])} inliers (minimum {conf['min_inliers']})"
        ratio = est["num_inliers"] / max(len(union), 1)
        if ratio < conf["min_inlier_ratio"]:
            return f"inlier ratio {ratio:.2f} below {conf['min_inlier_ratio']}"
        if not (np.all(np.isfinite(pose.R)) and np.all(np.isfinite(pose.t))):
            return "the estimated pose is not finite"
        mask = np.asarray(est["inlier_mask"], dtype=bool)
        depths = pose.transform(self.database.points_xyz[union[mask, 1]])[:, 2]
        if np.mean(depths > 0) < 0.99:
            return "the estimated camera does not face its inlier points"
        return ""

    def _residual_check(self, median_px: float, camera: Camera, candidate_indices: list[int]) -> str:
        """Reject a pose whose inliers it explains only loosely.

        Correct 2D-3D matches of a true pose reproject within the keypoint noise; a pose assembled
        from look-alike structure (another street with the same textures, lit windows at night)
        explains its "inliers" only approximately, so their residuals spread over the whole RANSAC
        threshold. Over 147 correct poses on six maps the median stayed at or below 4.0 px but for
        four night poses (up to 5.1 px); 16 of 16 poses of foreign images were above 4.0 px. The
        limit is in the map's pixels: a query of finer angular resolution than the map frames (a
        bigger image of the same view) sees the map points' triangulation noise magnified, so
        the limit grows by the ratio of the focal lengths.
        """
        limit = float(self.conf["max_median_reprojection_error_px"])
        if limit <= 0:
            return ""
        map_focal = np.median([self.database.candidate_camera(i).focal for i in candidate_indices])
        limit *= max(1.0, camera.focal / max(float(map_focal), 1e-9))
        if median_px > limit:
            return (f"median reprojection error {median_px:.1f} px of the inliers is above {limit:.1f} px "
                    "(a loose fit: perceptual aliasing)")
        return ""

    def _occlusion_check(self, share: float) -> str:
        limit = float(self.conf["max_occluded_inliers"])
        if share > limit:
            return (f"{100 * share:.0f} % of the inliers would be hidden behind map points at the estimated pose "
                    f"(limit {100 * limit:.0f} %; perceptual aliasing)")
        return ""

    def _near_candidates_check(self, pose: Pose, candidate_indices: list[int], inlier_points: np.ndarray) -> str:
        """Reject a pose far from every map frame that supplied its inliers.

        Local features do not match across very different viewpoints, so a true query camera sees
        the inlier points from near one of the frames that observed them. A camera several scene
        depths away from all of them comes from perceptual aliasing (repeated facades, lit windows
        at night). Scale-free: each distance is compared with that frame's median distance to the
        inlier points. A compressed map's candidate is a cluster: every frame of it counts.
        """
        factor = float(self.conf["max_distance_to_candidate"])
        if factor <= 0:
            return ""
        xyz = self.database.points_xyz[inlier_points]
        ratios = []
        for index in candidate_indices:
            for center in self.database.candidate_centers(index):
                depth = np.median(np.linalg.norm(xyz - center, axis=1))
                ratios.append(np.linalg.norm(pose.center - center) / max(depth, 1e-9))
        if ratios and min(ratios) > factor:
            return (f"the pose lies {min(ratios):.1f} scene depths from the map frames that support it "
                    "(perceptual aliasing)")
        return ""

    def _occluded_share(self, pose: Pose, camera: Camera, inlier_points: np.ndarray, retrieved: list[int]) -> float:
        """Share of the inliers that the map's own points would hide at ``pose`` (free-space check).

        A true camera sees its inliers through free space, so map points rarely project onto an
        inlier's pixel much nearer to the camera than the inlier itself (a few do, at occlusion
        boundaries and where the scene changed). An aliased pose puts the camera where the map's
        surfaces stand between it and the matched points (seen: a foreign street of identical
        facades localized 3 m below the road, 21 % of its inliers behind multi-view road points). The
        occluders are the multi-view points of every retrieved candidate, the local map around
        the pose; a compressed map has fewer, so the check is weaker there but never stricter.
        """
        local = np.unique(np.concatenate([self._candidate(i)[1] for i in retrieved]))
        local = local[np.asarray(self.database.points_multiview)[local]]
        return occluded_share(camera, pose, self.database.points_xyz[inlier_points], self.database.points_xyz[local],
                              OCCLUSION_RADIUS * max(camera.width, camera.height), OCCLUSION_DEPTH_RATIO)

    @staticmethod
    def _finish(result: LocalizationResult, t_start: float, reason: str) -> LocalizationResult:
        result.failure_reason = reason
        for key in ("extract", "retrieve", "match", "pnp"):
            result.timings.setdefault(key, 0.0)
        result.timings["total"] = time.perf_counter() - t_start
        return result


class _LazyMatches:
    """Sequence of Matches computed on first access (query against one candidate each)."""

    def __init__(self, matcher, query: Features, others: list[Features]):
        self.matcher, self.query, self.others = matcher, query, others
        self.seconds = 0.0

    def __iter__(self):
        for other in self.others:
            t0 = time.perf_counter()
            matches = self.matcher.match(self.query, other)
            self.seconds += time.perf_counter() - t0
            yield matches

    def __len__(self) -> int:
        return len(self.others)


def _validate_conf(conf: dict[str, Any]) -> None:
    if int(conf["top_k"]) < 1:
        raise ConfigError(f"top_k must be >= 1, got {conf['top_k']}")
    if not float(conf["ransac_threshold_px"]) > 0:
        raise ConfigError(f"ransac_threshold_px must be > 0, got {conf['ransac_threshold_px']}")
    if int(conf["min_inliers"]) < 6:
        raise ConfigError(f"min_inliers must be >= 6 (a pose from fewer is noise), got {conf['min_inliers']}")
    if not 0.0 <= float(conf["min_inlier_ratio"]) <= 1.0:
        raise ConfigError(f"min_inlier_ratio must be in [0, 1], got {conf['min_inlier_ratio']}")
    if not float(conf["max_median_reprojection_error_px"]) >= 0.0:
        raise ConfigError("max_median_reprojection_error_px must be >= 0 (0 turns the check off), "
                          f"got {conf['max_median_reprojection_error_px']}")
    if not 0.0 <= float(conf["max_occluded_inliers"]) <= 1.0:
        raise ConfigError(f"max_occluded_inliers must be in [0, 1] (1 turns the check off), got {conf['max_occluded_inliers']}")
    if not float(conf["min_hypothesis_margin"]) >= 0.0:
        raise ConfigError(f"min_hypothesis_margin must be >= 0 (0 turns the check off), got {conf['min_hypothesis_margin']}")
    if int(conf["ransac_max_trials"]) < 100:
        raise ConfigError(f"ransac_max_trials must be >= 100, got {conf['ransac_max_trials']}")


def _prepare_image(image: np.ndarray, camera: Camera, max_size: int) -> tuple[np.ndarray, Camera]:
    """Check shape/dtype and the camera's size; downscale huge images together with the intrinsics."""
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


def load_database(map_path: str | os.PathLike) -> LocalizationDatabase:
    """Open a SceneMap or a CompressedMap, whichever the file holds."""
    from .mapfile import read_map_file

    container = read_map_file(map_path, verify=False)  # kind sniffing only; full load verifies
    if container.kind == "scene_map":
        from .mapping.scene_map import SceneMap

        return SceneMapDatabase(SceneMap.load(map_path))
    if container.kind == "compressed_map":
        from .compression.compressed_map import CompressedMap

        return CompressedMap.load(map_path)
    raise MapFileError(f"map file {map_path} holds an unknown kind {container.kind!r}")


class SceneMapDatabase:
    """LocalizationDatabase over an uncompressed SceneMap: one candidate per mapping frame."""

    def __init__(self, scene_map) -> None:
        self.scene_map = scene_map
        self.feature_setup = scene_map.feature_setup
        self.vlad = scene_map.vlad
        self.global_descriptors = np.asarray(scene_map.global_descriptors)
        self.points_xyz = np.asarray(scene_map.points_xyz)
        self.points_color = np.asarray(scene_map.points_color)
        self.points_multiview = scene_map.multiview_points()
        self.candidate_ids = np.arange(scene_map.num_frames, dtype=np.int64)
        self.file_bytes = Path(scene_map.path).stat().st_size if scene_map.path else 0

    def candidate_pose(self, index: int) -> Pose:
        return self.scene_map.pose(index)

    def candidate_centers(self, index: int) -> np.ndarray:
        return self.scene_map.pose(index).center[None]

    def candidate_camera(self, index: int) -> Camera:
        return self.scene_map.cameras[index]

    def candidate_features(self, index: int) -> tuple[Features, np.ndarray]:
        feats = self.scene_map.frame_features(index)
        ids = np.asarray(self.scene_map.keypoint_point_ids[self.scene_map.frame_slice(index)])
        keep = ids >= 0
        return feats.subset(keep), ids[keep]


def localize_dataset(map_path: str | os.PathLike, dataset_dir: str | os.PathLike, output: str | os.PathLike,
                     split: str = "query", conf: dict[str, Any] | None = None, device: str = "auto",
                     progress: bool = True) -> dict[str, LocalizationResult]:
    """Localize every image of a split and write RESULTS.json (see evaluate.py for the format)."""
    from tqdm import tqdm

    from .dataset import load_dataset, read_image
    from .evaluate import write_results

    dataset = load_dataset(dataset_dir)
    localizer = Localizer.from_file(map_path, conf, device)
    results: dict[str, LocalizationResult] = {}
    for frame in tqdm(dataset.split(split), desc="localize", unit="img", disable=not progress or None):
        results[frame.name] = localizer.localize(read_image(frame.image_path), frame.camera)
    write_results(output, results, {
        "map": str(map_path), "map_bytes": Path(map_path).stat().st_size,
        "feature_setup": localizer.database.feature_setup, "conf": localizer.conf,
        "dataset": str(dataset_dir), "split": split,
    })
    return results
