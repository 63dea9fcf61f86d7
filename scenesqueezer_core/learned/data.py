"""Network inputs of one cluster, and training samples (inputs + query labels) built from scenes.

``cluster_inputs`` is shared by training and by ``compress --method learned`` so that the network
sees the same kind of arrays in both. Shapes (m cluster points, T observations, N verification
frames, S keypoints of those frames, k neighbours, D descriptor size)::

    xyz (m, 3) float64           xyz_norm (m, 3) float32, in [-1, 1] (robust per-cluster normalisation)
    obs_point (T,) int64         obs_desc (T, D), obs_xy (T, 2) in (-1, 1), obs_score (T,) float32
    ver_desc (S, D), ver_xy (S, 2), ver_score (S,) float32
    ver_index (N, m, k) int64 into the S keypoints (S = "no keypoint")
    ver_weight (N, m, k) float32 geometric similarity M = 1 / max(r, 1 px), 0 = no keypoint within radius
    point_stats (m, 5) float32     what mean pooling cannot tell: log1p(track length in the map) / 4,
                                   log1p(observations in the cluster) / 4, and the cluster-wide percentile
                                   ranks of track length, -reprojection error and descriptor
                                   distinctiveness (the hand-crafted score's terms)

Training labels from query frames with ground-truth poses (synthetic ``query_day``/``query_night``,
or for real data the cluster's held-out frames): every query's features are matched to the cluster
points' mean descriptors with the feature setup's matcher; a match is correct when the point's
projection with the query's true pose lands within ``threshold_px`` of the matched keypoint::

    n_visible (m,)   queries the point projects into (in front, inside the image)
    n_correct (m,)   queries that matched it correctly;  n_wrong (m,) wrongly
    match_query (M,), match_point (M,), match_correct (M,)   every match (for the pose loss)
    target (m,) = (n_correct - n_wrong) / max(n_visible, 1)   in [-1, 1], the distinctiveness label
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from ..atomic import atomic_path
from ..dataset import load_dataset, read_image
from ..errors import ConfigError
from ..features import load_feature_setup
from ..features.base import Features
from ..geometry import project
from ..maps.scene_map import SceneMap
from ..selection.clustering import cluster_frames
from ..selection.scores import score_terms

__all__ = ["cluster_inputs", "cluster_point_ids", "point_statistics", "query_labels", "build_training_samples",
           "load_sample", "subsample", "INPUT_KEYS", "POINT_STATS_DIM"]

INPUT_KEYS = ("xyz_norm", "obs_point", "obs_desc", "obs_xy", "obs_score", "ver_desc", "ver_xy", "ver_score",
              "ver_index", "ver_weight", "point_stats")
POINT_STATS_DIM = 5


def cluster_point_ids(scene_map: SceneMap, frame_ids: np.ndarray, vis_csc=None) -> np.ndarray:
    """(m,) int64 ascending ids of the points observed by any of the frames (as compress's tasks)."""
    vis = vis_csc if vis_csc is not None else scene_map.visibility().tocsc()
    sub = vis[np.asarray(frame_ids, dtype=np.int64)]
    return np.flatnonzero(np.asarray(sub.sum(axis=0)).ravel() > 0).astype(np.int64)


def normalize_positions(xyz: np.ndarray) -> np.ndarray:
    """(m, 3) -> (m, 3) float32 in [-1, 1]: centred on the median, divided by the 95th percentile of
    |offset| (far outliers are clipped instead of squashing every other point to the centre)."""
    centred = xyz - np.median(xyz, axis=0)
    scale = float(np.percentile(np.abs(centred), 95)) if len(xyz) else 1.0
    return np.clip(centred / max(scale, 1e-9), -1.0, 1.0).astype(np.float32)


def _normalized_xy(keypoints: np.ndarray, width: int, height: int) -> np.ndarray:
    size = np.array([width, height], dtype=np.float32)
    return (2.0 * np.asarray(keypoints, np.float32) / size - 1.0).astype(np.float32)


def cluster_inputs(scene_map: SceneMap, frame_ids: np.ndarray, anchor: int, verification: np.ndarray,
                   point_ids: np.ndarray, max_verification: int = 8, neighbours: int = 4,
                   radius_px: float = 16.0) -> dict[str, np.ndarray]:
    """Network inputs of one cluster (see module docstring for the arrays)."""
    point_ids = np.asarray(point_ids, dtype=np.int64)
    frame_ids = np.asarray(frame_ids, dtype=np.int64)
    m = len(point_ids)
    xyz = np.asarray(scene_map.points_xyz[point_ids], dtype=np.float64)

    # Observations of the cluster's points in the cluster's frames.
    owner = np.repeat(np.arange(scene_map.num_points), np.diff(scene_map.track_offsets))
    frames_of_obs = np.asarray(scene_map.track_frames, dtype=np.int64)
    keep = np.isin(owner, point_ids) & np.isin(frames_of_obs, frame_ids)
    flat = scene_map.keypoint_offsets[frames_of_obs[keep]] + np.asarray(scene_map.track_keypoints)[keep]
    widths = np.array([c.width for c in scene_map.cameras], np.float32)
    heights = np.array([c.height for c in scene_map.cameras], np.float32)
    f_obs = frames_of_obs[keep]
    kp = np.asarray(scene_map.keypoints[flat], np.float32)
    obs_xy = np.stack([2 * kp[:, 0] / widths[f_obs] - 1, 2 * kp[:, 1] / heights[f_obs] - 1], axis=1)

    # Verification frames: those sharing most points with the anchor first.
    verification = np.asarray(verification, dtype=np.int64)
    if len(verification) == 0:
        verification = frame_ids[frame_ids != anchor]
    vis = scene_map.visibility()
    anchor_points = vis[anchor].indices
    shared = np.array([np.isin(vis[f].indices, anchor_points).sum() for f in verification])
    chosen = verification[np.argsort(-shared, kind="stable")[:max_verification]]

    ver_desc, ver_xy, ver_score, ver_index, ver_weight = [], [], [], [], []
    offset = 0
    for f in chosen:
        feats = scene_map.frame_features(int(f))
        cam = scene_map.cameras[int(f)]
        pixels, depth = project(cam, scene_map.pose(int(f)), xyz)
        inside = (depth > 0) & np.all(np.isfinite(pixels), axis=1)
        inside &= (pixels[:, 0] >= 0) & (pixels[:, 0] < cam.width) & (pixels[:, 1] >= 0) & (pixels[:, 1] < cam.height)
        idx = np.full((m, neighbours), -1, dtype=np.int64)
        w = np.zeros((m, neighbours), dtype=np.float32)
        if len(feats) and inside.any():
            k = min(neighbours, len(feats))
            dist, nn = cKDTree(feats.keypoints).query(pixels[inside], k=k, distance_upper_bound=radius_px)
            dist, nn = dist.reshape(-1, k), nn.reshape(-1, k)
            valid = np.isfinite(dist)
            idx[np.flatnonzero(inside)[:, None], np.arange(k)] = np.where(valid, nn + offset, -1)
            w[np.flatnonzero(inside)[:, None], np.arange(k)] = np.where(valid, 1.0 / np.maximum(dist, 1.0), 0.0)
        ver_desc.append(feats.descriptors)
        ver_xy.append(_normalized_xy(feats.keypoints, cam.width, cam.height))
        ver_score.append(feats.scores)
        ver_index.append(idx)
        ver_weight.append(w)
        offset += len(feats)
    dim = scene_map.descriptors.shape[1]
    obs_point = np.searchsorted(point_ids, owner[keep]).astype(np.int64)
    obs_desc = np.asarray(scene_map.descriptors[flat], np.float32)
    ver_index_arr = np.stack(ver_index) if ver_index else np.zeros((0, m, neighbours), np.int64)
    ver_index_arr[ver_index_arr < 0] = offset  # the padding row the network appends
    return {
        "xyz": xyz,
        "xyz_norm": normalize_positions(xyz),
        "obs_point": obs_point,
        "obs_desc": obs_desc,
        "obs_xy": obs_xy.astype(np.float32),
        "obs_score": np.asarray(scene_map.keypoint_scores[flat], np.float32),
        "ver_desc": np.concatenate(ver_desc).astype(np.float32) if ver_desc else np.zeros((0, dim), np.float32),
        "ver_xy": np.concatenate(ver_xy).astype(np.float32) if ver_xy else np.zeros((0, 2), np.float32),
        "ver_score": np.concatenate(ver_score).astype(np.float32) if ver_score else np.zeros(0, np.float32),
        "ver_index": ver_index_arr,
        "ver_weight": np.stack(ver_weight) if ver_weight else np.zeros((0, m, neighbours), np.float32),
        "point_stats": point_statistics(np.diff(np.asarray(scene_map.track_offsets))[point_ids],
                                        np.asarray(scene_map.points_error[point_ids]), obs_point, obs_desc, m),
    }


def point_statistics(track_lengths: np.ndarray, errors: np.ndarray, obs_point: np.ndarray, obs_desc: np.ndarray,
                     m: int) -> np.ndarray:
    """(m, POINT_STATS_DIM) float32 per-point statistics (see module docstring) of a whole cluster."""

    counts = np.bincount(obs_point, minlength=m).astype(np.float64)
    # a sum, not a mean: distinctiveness L2-normalises the descriptors, and a sum points where the mean does
    desc_sum = np.zeros((m, obs_desc.shape[1]), np.float64)
    np.add.at(desc_sum, obs_point, obs_desc)
    terms = score_terms(track_lengths, errors, desc_sum.astype(np.float32)) if m else np.zeros((3, 0))
    return np.column_stack([np.log1p(track_lengths) / 4.0, np.log1p(counts) / 4.0, terms.T]).astype(np.float32)


def subsample(inputs: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    """Inputs restricted to the points ``keep`` (k,) (ascending local indices); other arrays follow."""
    keep = np.asarray(keep, dtype=np.int64)
    m = len(inputs["xyz_norm"])
    remap = np.full(m, -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    obs = remap[inputs["obs_point"]] >= 0
    out = dict(inputs)
    for key in ("xyz", "xyz_norm", "point_stats", "target", "n_visible", "n_correct", "n_wrong"):
        if key in inputs:
            out[key] = inputs[key][keep]
    out["obs_point"] = remap[inputs["obs_point"][obs]]
    for key in ("obs_desc", "obs_xy", "obs_score"):
        out[key] = inputs[key][obs]
    out["ver_index"] = inputs["ver_index"][:, keep]
    out["ver_weight"] = inputs["ver_weight"][:, keep]
    if "match_point" in inputs:
        mk = remap[inputs["match_point"]] >= 0
        out["match_point"] = remap[inputs["match_point"][mk]]
        out["match_query"] = inputs["match_query"][mk]
        out["match_correct"] = inputs["match_correct"][mk]
    return out


def query_labels(xyz: np.ndarray, point_descriptors: np.ndarray, queries: list[tuple[Features, Any, Any]],
                 matcher, threshold_px: float = 8.0) -> dict[str, np.ndarray]:
    """Per-point match statistics from queries [(features, cam_from_world Pose, Camera)] (see module doc)."""
    m = len(xyz)
    n_visible = np.zeros(m, np.int32)
    n_correct = np.zeros(m, np.int32)
    n_wrong = np.zeros(m, np.int32)
    mq, mp, mc = [], [], []
    points = Features(np.zeros((m, 2), np.float32), np.ones(m, np.float32),
                      np.asarray(point_descriptors, np.float32), (1, 1))
    for q, (feats, pose, cam) in enumerate(queries):
        pixels, depth = project(cam, pose, xyz)
        inside = (depth > 0) & np.all(np.isfinite(pixels), axis=1)
        inside &= (pixels[:, 0] >= 0) & (pixels[:, 0] < cam.width) & (pixels[:, 1] >= 0) & (pixels[:, 1] < cam.height)
        n_visible += inside
        if len(feats) == 0:
            continue
        matches = matcher.match(feats, points)
        qi, pi = matches.indices[:, 0], matches.indices[:, 1]
        err = np.linalg.norm(pixels[pi] - feats.keypoints[qi], axis=1)
        correct = (depth[pi] > 0) & np.isfinite(err) & (err < threshold_px)
        np.add.at(n_correct, pi[correct], 1)
        np.add.at(n_wrong, pi[~correct], 1)
        mq.append(np.full(len(pi), q, np.int32))
        mp.append(pi.astype(np.int64))
        mc.append(correct)
    target = (n_correct - n_wrong) / np.maximum(n_visible, 1)
    return {
        "n_visible": n_visible, "n_correct": n_correct, "n_wrong": n_wrong,
        "target": np.clip(target, -1, 1).astype(np.float32),
        "match_query": np.concatenate(mq) if mq else np.zeros(0, np.int32),
        "match_point": np.concatenate(mp) if mp else np.zeros(0, np.int64),
        "match_correct": np.concatenate(mc) if mc else np.zeros(0, bool),
        "num_queries": np.array(len(queries), np.int64),
    }


def build_training_samples(dataset_dir: str | os.PathLike, map_path: str | os.PathLike, out_dir: str | os.PathLike,
                           query_splits: tuple[str, ...] = ("query_day", "query_night"),
                           min_cluster_frames: int = 20, max_queries: int = 16, min_visible_points: int = 50,
                           threshold_px: float = 8.0, device: str = "cpu", prefix: str | None = None) -> list[Path]:
    """One ``.npz`` per co-visible cluster of the map (inputs + labels); returns their paths.

    Queries: frames of ``query_splits`` present in the dataset (the cluster's held-out frames when
    none of those splits exists, e.g. the Strecha ``mapping`` split), those into which at least
    ``min_visible_points`` cluster points project, at most ``max_queries`` per cluster.
    """

    scene_map = SceneMap.load(map_path)
    dataset = load_dataset(dataset_dir)
    extractor, matcher = load_feature_setup(scene_map.feature_setup, device)
    poses = [scene_map.pose(f) for f in range(scene_map.num_frames)]
    clusters = cluster_frames(scene_map.visibility(), np.stack([p.center for p in poses]),
                              np.stack([p.R[2] for p in poses]), min_cluster_frames=min_cluster_frames)
    query_frames = [f for s in query_splits if s in dataset.splits for f in dataset.split(s)]
    query_feats = [extractor.extract(read_image(f.image_path)) for f in query_frames]
    point_desc = scene_map.point_descriptors()
    vis_csc = scene_map.visibility().tocsc()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = prefix or Path(map_path).stem
    paths = []
    for ci, cluster in enumerate(clusters):
        point_ids = cluster_point_ids(scene_map, cluster.frame_ids, vis_csc)
        if len(point_ids) < 64:
            continue
        xyz = np.asarray(scene_map.points_xyz[point_ids], np.float64)
        if query_frames:
            candidates = []
            for frame, feats in zip(query_frames, query_feats):
                pixels, depth = project(frame.camera, frame.cam_from_world, xyz)
                cam = frame.camera
                inside = (depth > 0) & (pixels[:, 0] >= 0) & (pixels[:, 0] < cam.width) \
                    & (pixels[:, 1] >= 0) & (pixels[:, 1] < cam.height)
                if inside.sum() >= min_visible_points:
                    candidates.append((int(inside.sum()), (feats, frame.cam_from_world, cam)))
            candidates.sort(key=lambda c: -c[0])
            queries = [c[1] for c in candidates[:max_queries]]
            source = "+".join(query_splits)
        else:
            queries = [(scene_map.frame_features(int(f)), scene_map.pose(int(f)), scene_map.cameras[int(f)])
                       for f in cluster.held_out]
            source = "held_out"
        if not queries:
            continue
        inputs = cluster_inputs(scene_map, cluster.frame_ids, cluster.anchor, cluster.verification, point_ids)
        labels = query_labels(xyz, point_desc[point_ids], queries, matcher, threshold_px)
        meta = {"map": str(map_path), "dataset": str(dataset_dir), "cluster": ci, "queries": source,
                "num_frames": len(cluster.frame_ids), "feature_setup": scene_map.feature_setup}
        path = out_dir / f"{prefix}_c{ci:03d}.npz"
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                arrays: dict[str, Any] = {"meta": np.array(json.dumps(meta)), **inputs, **labels}
                np.savez(fh, **arrays)
        paths.append(path)
    return paths


def load_sample(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A training sample written by build_training_samples (arrays; ``meta`` as a dict)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            sample = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"training sample {path} is unreadable ({exc}); rebuild it with "
                          "scripts/train_learned.py --build-samples") from exc
    sample["meta"] = json.loads(str(sample["meta"]))
    return sample
