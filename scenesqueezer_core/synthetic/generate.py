"""Write a synthetic scene as a dataset folder (the format of ``../shared/data``) with depth maps.

Layout::

    images/<name>.jpg      map_NNNNNN / day_NNNNNN / night_NNNNNN
    depth/<stem>.npy       (H, W) z-depth in metres, inf for sky
    sparse/                COLMAP text model, one PINHOLE camera per frame, exact poses
    splits.json            mapping, query_day, query_night, query (= day + night)
                           with ``rig``: query_day_rig, query_night_rig (every camera's images)
    rig.json               with ``rig``: the cameras and each rig frame's images (dataset.py)
    scene.json             preset, seed, camera, planes: enough to check any pixel

Rig (``rig=True``): each query pose also carries the cameras of ``RIG_CAMERAS``, turned about the
front camera's vertical (its -y axis) by their yaw: the front camera is the query itself (same name,
same image as without a rig), the others are ``<query stem>_<camera>.jpg`` with the front
camera's appearance (same seed). The rig's base frame is the front camera's optical frame.

Everything is a pure function of (preset, seed, num_frames, width, height, focal): the output does
not depend on the number of worker processes.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ..atomic import atomic_path
from ..dataset import write_colmap_text, write_rig, write_splits
from ..errors import ConfigError
from ..types import Camera, Frame, Pose, Rig, RigCamera
from .appearance import apply_appearance, sample_appearance
from .render import render
from .textures import TextureCache
from .trajectory import FrameSpec, mapping_trajectory, query_trajectory
from .world import FRAME_SPACING_M, PRESETS, World, build_world

GENERATOR_VERSION = 1
SPLIT_SEED = {"mapping": 1, "query_day": 2, "query_night": 3}
# A query rig: camera name and yaw (degrees, positive = to the left) about the front camera's vertical.
RIG_CAMERAS: tuple[tuple[str, float], ...] = (("front", 0.0), ("left", 60.0), ("right", -60.0))


def synthetic_rig() -> Rig:
    """The rig of RIG_CAMERAS; its base frame is the front camera's optical frame (x right, y down)."""
    from scipy.spatial.transform import Rotation

    # camera y points down: a yaw to the left turns about -y
    return Rig(tuple(RigCamera(name, Pose(Rotation.from_rotvec([0.0, -math.radians(yaw), 0.0]).as_matrix(),
                                          np.zeros(3))) for name, yaw in RIG_CAMERAS))


def rig_frame_specs(spec: FrameSpec, rig: Rig) -> list[FrameSpec]:
    """The rig's cameras at a query ``spec`` (the base): the first (front, identity extrinsics) keeps
    the query's name and pose."""
    stem = Path(spec.name).stem
    return [FrameSpec(spec.name if i == 0 else f"{stem}_{camera.name}.jpg", spec.split,
                      camera.base_from_camera.inverse() @ spec.cam_from_world, spec.arc)
            for i, camera in enumerate(rig.cameras)]


def default_camera(width: int = 640, height: int = 480, focal: float | None = None) -> Camera:
    """PINHOLE camera with the principal point at the image centre; focal 500 px at 640 wide."""
    focal = focal if focal is not None else 500.0 * width / 640.0
    return Camera.pinhole(focal, focal, width / 2.0, height / 2.0, width, height)


def plan_frames(world: World, num_frames: int, query_fraction: float, seed: int) -> list[FrameSpec]:
    """Mapping frames followed by day and night queries (each ``query_fraction`` of the map, >= 3)."""
    num_queries = max(3, round(query_fraction * num_frames))
    frames = mapping_trajectory(world.path, num_frames, FRAME_SPACING_M, seed)
    frames += query_trajectory(world.path, num_queries, FRAME_SPACING_M, seed, "query_day", "day")
    frames += query_trajectory(world.path, num_queries, FRAME_SPACING_M, seed, "query_night", "night")
    return frames


def render_frame(world: World, camera: Camera, spec: FrameSpec, cache: TextureCache, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 photo and (H, W) float32 depth of one planned frame."""
    index = int(spec.name.split("_")[1].split(".")[0])
    rng = np.random.default_rng([seed, SPLIT_SEED[spec.split], index])
    appearance = sample_appearance(spec.split, world, rng)
    result = render(world, camera, spec.cam_from_world, cache)
    return apply_appearance(result, world, appearance, rng), result.depth


def render_query_images(preset: str, seed: int, split: str = "query_day", count: int = 3, width: int = 640,
                        height: int = 480, num_frames: int = 12) -> list[tuple[np.ndarray, Camera]]:
    """Up to ``count`` (H, W, 3) uint8 photos of one query split of a world, with their camera, rendered in
    memory (no scene folder): foreign images for pose safety tests. A world planned for ``num_frames``
    mapping frames has max(3, round(0.25 * num_frames)) queries per split."""
    world = build_world(preset, seed, num_frames)
    camera = default_camera(width, height)
    specs = [s for s in plan_frames(world, num_frames, 0.25, seed) if s.split == split][:count]
    cache = TextureCache(world)
    return [(render_frame(world, camera, spec, cache, seed)[0], camera) for spec in specs]


# Per-process state of the render workers (set once by _init_worker, then reused by every chunk).
_WORKER: dict = {}


def _init_worker(world: World, camera: Camera, seed: int, out_dir: str, depth_dtype: str, threads: int) -> None:
    cv2.setNumThreads(threads)
    _WORKER.update(world=world, camera=camera, seed=seed, out_dir=Path(out_dir), depth_dtype=depth_dtype,
                   cache=TextureCache(world))


def _render_chunk(specs: list[FrameSpec]) -> int:
    w = _WORKER
    for spec in specs:
        image, depth = render_frame(w["world"], w["camera"], spec, w["cache"], w["seed"])
        stem = Path(spec.name).stem
        if not cv2.imwrite(str(w["out_dir"] / "images" / spec.name), image[:, :, ::-1],
                           [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f"cannot write {w['out_dir'] / 'images' / spec.name}; check disk space and permissions")
        np.save(w["out_dir"] / "depth" / f"{stem}.npy", depth.astype(w["depth_dtype"]))
    return len(specs)


def generate_scene(out_dir: str | os.PathLike, preset: str = "street", seed: int = 0, num_frames: int = 200,
                   width: int = 640, height: int = 480, focal: float | None = None,
                   query_fraction: float = 0.2, num_workers: int | None = None,
                   depth_dtype: str = "float16",
                   progress: bool | Callable[[int, int], None] = False, rig: bool = False) -> Path:
    """Render a synthetic scene into ``out_dir`` (replaced atomically) and return its path.

    ``num_frames`` mapping frames about 0.7 m apart; ``query_fraction * num_frames`` (at least 3)
    day and as many night queries. ``depth_dtype`` "float16" halves the disk use (about 1 cm
    resolution at 10 m); "float32" keeps full precision. ``progress``: True prints a counter, a
    callable gets (frames done, total) after each chunk; an exception it raises aborts the run and
    leaves nothing behind. ``rig``: every query is also seen by the side cameras of RIG_CAMERAS
    (splits query_*_rig, rig.json).
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown scene preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    if not 2 <= int(num_frames) <= 100_000:
        raise ConfigError(f"num_frames must be between 2 and 100000, got {num_frames}")
    if width < 16 or height < 16:
        raise ConfigError(f"image size must be at least 16x16, got {width}x{height}")
    if not 0.0 < query_fraction <= 1.0:
        raise ConfigError(f"query_fraction must be in (0, 1], got {query_fraction}")
    if depth_dtype not in ("float16", "float32"):
        raise ConfigError(f"depth_dtype must be 'float16' or 'float32', got {depth_dtype!r}")
    num_workers = int(num_workers or min(2, os.cpu_count() or 1))
    if num_workers < 1:
        raise ConfigError(f"num_workers must be at least 1, got {num_workers}")

    world = build_world(preset, seed, num_frames)
    camera = default_camera(width, height, focal)
    specs = plan_frames(world, int(num_frames), query_fraction, seed)
    query_rig = synthetic_rig() if rig else None
    rig_rows: dict[str, list[list[str]]] = {}
    if query_rig is not None:
        with_rig = []
        for spec in specs:
            views = rig_frame_specs(spec, query_rig) if spec.split != "mapping" else [spec]
            with_rig += views
            if spec.split != "mapping":
                rig_rows.setdefault(f"{spec.split}_rig", []).append([v.name for v in views])
        specs = with_rig
    out_dir = Path(out_dir)
    with atomic_path(out_dir, is_dir=True) as tmp:
        (tmp / "images").mkdir()
        (tmp / "depth").mkdir()
        # Contiguous chunks along the path keep each worker's texture cache warm.
        chunk = max(1, min(12, math.ceil(len(specs) / (4 * num_workers))))
        chunks = [specs[i:i + chunk] for i in range(0, len(specs), chunk)]
        init_args = (world, camera, int(seed), str(tmp), depth_dtype, 1 if num_workers > 1 else 2)
        done = 0
        if num_workers == 1:
            _init_worker(*init_args)
            try:
                for part in chunks:
                    done += _render_chunk(part)
                    _report(progress, done, len(specs))
            finally:
                _WORKER.clear()
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(num_workers, mp_context=context, initializer=_init_worker,
                                     initargs=init_args) as pool:
                for count in pool.map(_render_chunk, chunks):
                    done += count
                    _report(progress, done, len(specs))
        frames = [Frame(s.name, camera, s.cam_from_world, tmp / "images" / s.name) for s in specs]
        write_colmap_text(tmp / "sparse", frames)
        rig_names = {name for rows in rig_rows.values() for row in rows for name in row[1:]}
        splits = {split: [s.name for s in specs if s.split == split and s.name not in rig_names]
                  for split in ("mapping", "query_day", "query_night")}
        splits["query"] = splits["query_day"] + splits["query_night"]
        splits.update({split: [name for row in rows for name in row] for split, rows in rig_rows.items()})
        write_splits(tmp, splits)
        if query_rig is not None:
            write_rig(tmp, query_rig, rig_rows)
        scene = {
            "generator_version": GENERATOR_VERSION,
            "num_frames": int(num_frames),
            "query_fraction": query_fraction,
            "camera": {"model": camera.model, "width": camera.width, "height": camera.height,
                       "params": camera.params.tolist()},
            "depth": {"dtype": depth_dtype, "kind": "z-depth in metres, inf for sky"},
            **world.to_json(),
        }
        (tmp / "scene.json").write_text(json.dumps(scene, indent=1) + "\n")
    return out_dir


def _report(progress: bool | Callable[[int, int], None], done: int, total: int) -> None:
    if callable(progress):
        progress(done, total)
    elif progress:
        print(f"\rrendered {done}/{total} frames", end="\n" if done == total else "", flush=True)
