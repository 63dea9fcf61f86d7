"""SceneMap -> CompressedMap: clusters, per-cluster point selection, quantization, one file.

Per-cluster work is a pure function ``select_cluster(ClusterTask) -> ClusterSelection`` of the
cluster's arrays and the config, so it runs unchanged in-process, in a process pool (default) or on
another executor, and gives identical results whichever runs it.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..features import extractor_name
from ..features.base import merge_conf
from ..geometry import viewing_direction
from ..learned.data import cluster_inputs
from ..learned.inference import learned_weights_for, load_learned_model, score_cluster
from ..maps.compressed_map import CompressedMap
from ..maps.database import SceneMapDatabase
from ..maps.global_model import load_global_model
from ..maps.quantizer import load_descriptor_quantizer
from ..maps.scene_map import SceneMap
from ..selection.baselines import select_kcover, select_kcover_prioritized, select_random
from ..selection.clustering import cluster_frames
from ..selection.scores import handcrafted_scores, kernel_features
from ..selection.smo import solve_qp_smo

METHODS = ("qp", "random", "kc", "kcp", "learned")

DEFAULT_COMPRESS_CONF: dict[str, Any] = {
    "ratio": 0.015,  # nu: fraction of each cluster's points kept
    "method": "qp",
    "tau": 0.1,  # paper's lower bound; scores dominate with many points per cluster (see scores.py)
    "kernel_descriptor_weight": 0.0,
    "score_weights": (0.4, 0.2, 0.4),
    "kcover_k": None,  # K of K-cover; None: enough to spend the budget (see _kcover_k)
    "min_points_per_cluster": 30,  # a cluster never keeps fewer (small clusters still register)
    "max_smo_iter": 20000,
    "clustering": {},  # passed to selection.clustering.cluster_frames
    "learned_weights": None,  # method "learned": safetensors path; None = the shipped weights of the feature setup
    "seed": 0,
}


@dataclass
class ClusterTask:
    """Everything one cluster's selection needs (m points observed by the cluster's frames)."""

    cluster_index: int
    point_ids: np.ndarray  # (m,) int64 global point ids
    xyz: np.ndarray  # (m, 3) float64
    descriptors: np.ndarray  # (m, D) float32 mean observation descriptor
    track_lengths: np.ndarray  # (m,) int64
    errors: np.ndarray  # (m,) float32
    visibility: Any  # scipy.sparse csr (frames of the cluster, m)
    budget: int
    conf: dict[str, Any]
    learned_inputs: dict[str, np.ndarray] | None = None  # method "learned": learned.data.cluster_inputs arrays
    learned_weights: str | None = None  # method "learned": weights path (the worker loads it once, cached)


@dataclass
class ClusterSelection:
    cluster_index: int
    kept: np.ndarray  # (k,) int64 global point ids
    seconds: dict[str, float] = field(default_factory=dict)  # scores, qp


def _kcover_k(visibility, budget: int) -> int:
    """The K for which a K-cover of the cluster's frames roughly spends the budget."""
    num_frames = max(visibility.shape[0], 1)
    mean_track = max(float(visibility.sum()) / max(visibility.shape[1], 1), 1.0)
    return max(1, int(round(budget * mean_track / num_frames)))


def _qp_keep(d: np.ndarray, feats: np.ndarray, gamma: float, tau: float, budget: int, max_iter: int) -> np.ndarray:
    """(<= budget,) local indices the QP keeps, for d (m,) and kernel features (m, F), nu = budget / m."""
    result = solve_qp_smo(d, features=feats, gamma=gamma, tau=tau, nu=budget / len(d), max_iter=max_iter)
    kept = result.kept
    if len(kept) > budget:
        # Same byte budget as the baselines: the QP keeps at least nu*m points; keep the
        # budget's worth with the largest weights.
        kept = kept[np.argsort(-result.alpha[kept], kind="stable")[:budget]]
    return kept


def select_cluster(task: ClusterTask) -> ClusterSelection:
    conf = task.conf
    method = conf["method"]
    m = len(task.point_ids)
    seconds = {"scores": 0.0, "qp": 0.0}
    if task.budget >= m:
        return ClusterSelection(task.cluster_index, np.sort(task.point_ids), seconds)
    if method == "random":
        local = select_random(m, task.budget, seed=conf["seed"] + task.cluster_index)
    elif method in ("kc", "kcp"):
        k = conf["kcover_k"] or _kcover_k(task.visibility, task.budget)
        if method == "kc":
            local = select_kcover(task.visibility, task.budget, k)
        else:
            t0 = time.perf_counter()
            priority = handcrafted_scores(task.track_lengths, task.errors, task.descriptors,
                                          weights=tuple(conf["score_weights"]), seed=conf["seed"])
            seconds["scores"] = time.perf_counter() - t0
            local = select_kcover_prioritized(task.visibility, task.budget, k, priority)
    elif method == "qp":
        t0 = time.perf_counter()
        d = handcrafted_scores(task.track_lengths, task.errors, task.descriptors,
                               weights=tuple(conf["score_weights"]), seed=conf["seed"])
        feats, gamma = kernel_features(task.xyz, task.descriptors, descriptor_weight=conf["kernel_descriptor_weight"])
        seconds["scores"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        local = _qp_keep(d, feats, gamma, conf["tau"], task.budget, conf["max_smo_iter"])
        seconds["qp"] = time.perf_counter() - t0
    elif method == "learned":
        t0 = time.perf_counter()
        model, _ = load_learned_model(task.learned_weights)
        d, feats, tau = score_cluster(model, task.learned_inputs, seed=conf["seed"] + task.cluster_index)
        seconds["scores"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        local = _qp_keep(d, feats, 1.0, tau, task.budget, conf["max_smo_iter"])
        seconds["qp"] = time.perf_counter() - t0
    else:
        raise ConfigError(f"unknown compression method {method!r}; choose one of {', '.join(METHODS)}")
    local = np.asarray(local, dtype=np.int64)
    return ClusterSelection(task.cluster_index, np.sort(task.point_ids[local]), seconds)


def _tasks(scene_map: SceneMap, clusters, conf: dict[str, Any], point_desc: np.ndarray) -> list[ClusterTask]:
    vis = scene_map.visibility().tocsc()
    track_lengths = np.diff(scene_map.track_offsets)
    tasks = []
    for ci, cluster in enumerate(clusters):
        frames = np.asarray(cluster.frame_ids, dtype=np.int64)
        sub = vis[frames]  # (f, P) rows of the cluster's frames
        point_ids = np.flatnonzero(np.asarray(sub.sum(axis=0)).ravel() > 0)
        m = len(point_ids)
        if m == 0:
            continue
        budget = min(m, max(int(math.ceil(conf["ratio"] * m)), conf["min_points_per_cluster"]))
        learned_inputs = learned_weights = None
        if conf["method"] == "learned" and budget < m:
            learned_inputs = cluster_inputs(scene_map, frames, cluster.anchor, cluster.verification, point_ids)
            learned_weights = learned_weights_for(conf, scene_map.feature_setup)
        tasks.append(ClusterTask(
            cluster_index=ci, point_ids=point_ids, xyz=np.asarray(scene_map.points_xyz[point_ids]),
            descriptors=point_desc[point_ids], track_lengths=track_lengths[point_ids],
            errors=np.asarray(scene_map.points_error[point_ids]), visibility=sub[:, point_ids].tocsr(),
            budget=budget, conf=conf, learned_inputs=learned_inputs, learned_weights=learned_weights,
        ))
    return tasks


def run_selection(tasks: list[ClusterTask], executor: str = "process", workers: int | None = None,
                  address: str | None = None) -> list[ClusterSelection]:
    """Run select_cluster over tasks; results in task order whichever executor runs them."""
    if executor == "serial" or len(tasks) <= 1 or workers == 1:
        return [select_cluster(t) for t in tasks]
    if executor == "process":
        workers = workers or os.cpu_count() or 1
        # spawn, not fork: a process that already ran torch (the localizer, a benchmark, the ROS
        # node) deadlocks forked workers on its OpenMP thread pool (seen: bench_learned hung).
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            return list(pool.map(select_cluster, tasks))
    if executor == "ray":
        try:
            import ray
        except ImportError as exc:
            raise ConfigError("--executor ray needs the optional extra: pip install 'scenesqueezer[ray]' (or pip install ray)") from exc
        started_here = not ray.is_initialized()
        if started_here:
            # address None starts a local instance sized by --workers; a cluster brings its own CPUs
            ray.init(address=address, num_cpus=None if address else (workers or os.cpu_count() or 1),
                     include_dashboard=False, log_to_driver=False)
        try:
            remote = ray.remote(num_cpus=1)(select_cluster)
            return ray.get([remote.remote(t) for t in tasks])
        finally:
            if started_here:
                ray.shutdown()
    raise ConfigError(f"unknown executor {executor!r}; choose serial, process or ray")


def compress_map(map_path: str | os.PathLike, output: str | os.PathLike, conf: dict[str, Any] | None = None,
                 executor: str = "process", workers: int | None = None, address: str | None = None) -> dict[str, Any]:
    """Compress a SceneMap file into a CompressedMap file; returns a report (sizes, timings)."""
    conf = merge_conf(DEFAULT_COMPRESS_CONF, conf)
    if conf["method"] not in METHODS:
        raise ConfigError(f"unknown compression method {conf['method']!r}; choose one of {', '.join(METHODS)}")
    if not 0 < float(conf["ratio"]) <= 1:
        raise ConfigError(f"ratio must be in (0, 1], got {conf['ratio']}")
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    scene_map = SceneMap.load(map_path)
    extractor = extractor_name(scene_map.feature_setup)

    t0 = time.perf_counter()
    poses = [scene_map.pose(f) for f in range(scene_map.num_frames)]
    centers = np.stack([p.center for p in poses])
    directions = np.stack([viewing_direction(p) for p in poses])
    clusters = cluster_frames(scene_map.visibility(), centers, directions, **conf["clustering"])
    timings["clustering"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    point_desc = scene_map.point_descriptors()
    tasks = _tasks(scene_map, clusters, conf, point_desc)
    timings["prepare"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    selections = run_selection(tasks, executor, workers, address)
    timings["selection_wall"] = time.perf_counter() - t0
    timings["scores_d_K"] = sum(s.seconds["scores"] for s in selections)
    timings["qp"] = sum(s.seconds["qp"] for s in selections)

    t0 = time.perf_counter()
    kept_union = np.unique(np.concatenate([s.kept for s in selections])) if selections else np.zeros(0, np.int64)
    remap = np.full(scene_map.num_points, -1, dtype=np.int64)
    remap[kept_union] = np.arange(len(kept_union))
    descriptor_model = load_descriptor_quantizer(extractor)
    codes = descriptor_model.encode(point_desc[kept_union])
    vlad, global_model = load_global_model(extractor)
    task_by_cluster = {s.cluster_index: s for s in selections}
    used = [ci for ci in range(len(clusters)) if ci in task_by_cluster]
    reps = [int(clusters[ci].representative) for ci in used]
    global_raw = np.stack([vlad.describe(scene_map.frame_features(r).descriptors) for r in reps])
    global_codes = global_model.encode(global_raw)
    timings["quantization"] = time.perf_counter() - t0

    offsets = np.concatenate([[0], np.cumsum([len(task_by_cluster[ci].kept) for ci in used])]).astype(np.int64)
    cluster_point_ids = (np.concatenate([remap[task_by_cluster[ci].kept] for ci in used]).astype(np.int32)
                         if used else np.zeros(0, np.int32))
    cmap = CompressedMap(
        feature_setup=scene_map.feature_setup,
        cameras=[scene_map.cameras[r] for r in reps],
        cluster_rotations=np.stack([scene_map.rotations[r] for r in reps]),
        cluster_translations=np.stack([scene_map.translations[r] for r in reps]),
        cluster_global_codes=global_codes,
        cluster_point_offsets=offsets,
        cluster_point_ids=cluster_point_ids,
        points_xyz=np.asarray(scene_map.points_xyz[kept_union], dtype=np.float32),
        points_codes=codes,
        points_color=np.asarray(scene_map.points_color[kept_union], dtype=np.uint8),
        points_multiview_bits=np.packbits(scene_map.multiview_points()[kept_union]),
        cluster_frame_offsets=np.concatenate([[0], np.cumsum([len(clusters[ci].frame_ids) for ci in used])]).astype(np.int64),
        cluster_frame_centers=np.array([scene_map.pose(int(f)).center for ci in used for f in clusters[ci].frame_ids],
                                       dtype=np.float32).reshape(-1, 3),
        info={
            "source_map": str(map_path),
            "source_map_bytes": Path(map_path).stat().st_size,
            "source_points": scene_map.num_points,
            "source_residual_px": SceneMapDatabase(scene_map).own_residual_px,
            "conf": {k: v for k, v in conf.items()},
            "clusters": [{"frames": [int(f) for f in clusters[ci].frame_ids], "representative": int(clusters[ci].representative),
                          "points_observed": len(tasks[i].point_ids), "points_kept": len(task_by_cluster[ci].kept)}
                         for i, ci in enumerate(used)],
            "models": {"descriptor_features": extractor, "descriptor_hash": descriptor_model.content_hash,
                       "global_features": extractor, "global_hash": global_model.content_hash},
        },
    )
    t0 = time.perf_counter()
    out = cmap.save(output)
    timings["writing"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all
    report = size_report(cmap, Path(map_path).stat().st_size)
    report["timings"] = timings
    report["num_clusters"] = len(used)
    report["num_points_kept"] = int(len(kept_union))
    report["num_points_source"] = int(scene_map.num_points)
    report["path"] = str(out)
    return report


def size_report(cmap, source_bytes: int) -> dict[str, Any]:
    components = {
        "points_xyz": cmap.points_xyz.nbytes, "points_codes": cmap.points_codes.nbytes,
        "points_color": cmap.points_color.nbytes,
        "cluster_global_codes": cmap.cluster_global_codes.nbytes,
        "cluster_points": cmap.cluster_point_ids.nbytes + cmap.cluster_point_offsets.nbytes,
        "cluster_poses": cmap.cluster_rotations.nbytes + cmap.cluster_translations.nbytes,
    }
    file_bytes = cmap.file_bytes
    components["header_and_manifest"] = file_bytes - sum(components.values())
    num_points = max(len(cmap.points_xyz), 1)
    return {"file_bytes": file_bytes, "source_bytes": source_bytes,
            "ratio_to_uncompressed": file_bytes / max(source_bytes, 1),
            "bytes_per_point": file_bytes / num_points, "components": components}


def format_size_report(report: dict[str, Any]) -> str:
    lines = [f"compressed map {report['path']}: {report['file_bytes'] / 1e6:.3f} MB "
             f"({100 * report['ratio_to_uncompressed']:.2f} % of {report['source_bytes'] / 1e6:.2f} MB), "
             f"{report['num_points_kept']} of {report['num_points_source']} points in {report['num_clusters']} clusters, "
             f"{report['bytes_per_point']:.1f} bytes/point"]
    for name, nbytes in report["components"].items():
        lines.append(f"  {name:<22} {nbytes / 1e3:10.1f} kB")
    lines.append("  timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in report["timings"].items()))
    return "\n".join(lines)


def compress_map_cli(args) -> int:
    conf = {"ratio": args.ratio, "method": args.method, "seed": args.seed}
    report = compress_map(args.map_path, args.output, conf, executor=getattr(args, "executor", "process"),
                          workers=args.workers, address=getattr(args, "address", None))
    print(format_size_report(report))
    return 0
