"""Read and write the dataset format of ``../shared/data``.

A dataset folder holds::

    images/<name>            the photographs (names may contain sub-folders)
    sparse/                  a COLMAP model (text or binary) with known world-to-camera poses
    splits.json              {"mapping": [names], "query": [names], ...}
    rig.json                 optional: a multi-camera rig's cameras and which images form one rig frame
    depth/<stem>.npy         optional per-frame depth maps (synthetic scenes, for checks)

The COLMAP model is read with pycolmap, so text and binary models both work.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pycolmap

from .atomic import atomic_write_text
from .errors import CameraModelError, DatasetError, ImageError
from .types import CAMERA_MODELS, Camera, Dataset, Frame, Pose, Rig, RigCamera


def _find_model_dir(root: Path) -> Path | None:
    for candidate in (root / "sparse", root / "sparse" / "0"):
        if (candidate / "images.txt").exists() or (candidate / "images.bin").exists():
            return candidate
    return None


def load_dataset(root: str | os.PathLike, check_images: bool = True, model_dir: Path | None = None) -> Dataset:
    """Load a dataset folder into typed frames and splits.

    Raises DatasetError with the cause and the fix for a missing model, missing images, or splits
    that name unknown frames; CameraModelError for an unsupported camera model.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist; pass the folder that holds images/")
    image_dir = root / "images"
    if not image_dir.is_dir():
        raise DatasetError(f"{root} has no images/ folder; a dataset holds images/, sparse/, splits.json")
    model_dir = model_dir or _find_model_dir(root)
    if model_dir is None:
        raise DatasetError(
            f"{root} has no COLMAP model (sparse/images.txt or sparse/images.bin). Datasets without "
            "poses go through `scenesqueezer build-map`, which runs structure-from-motion first."
        )
    try:
        rec = pycolmap.Reconstruction(str(model_dir))
    except Exception as exc:  # pycolmap raises plain RuntimeError / ValueError
        raise DatasetError(f"cannot read the COLMAP model in {model_dir}: {exc}") from exc

    frames: dict[str, Frame] = {}
    for image in rec.images.values():
        colmap_camera = rec.cameras[image.camera_id]
        model_name = colmap_camera.model.name
        if model_name not in CAMERA_MODELS:
            raise CameraModelError(
                f"image {image.name} uses camera model {model_name}, which is not supported "
                f"(supported: {', '.join(CAMERA_MODELS)}); undistort the images with COLMAP first"
            )
        camera = Camera.from_pycolmap(colmap_camera)
        pose = Pose.from_rigid3d(image.cam_from_world()) if image.has_pose else None
        path = image_dir / image.name
        if check_images and not path.exists():
            raise DatasetError(
                f"image {image.name} is listed in {model_dir} but {path} does not exist; "
                "restore the file or remove it from the model"
            )
        frames[image.name] = Frame(image.name, camera, pose, path)
    if not frames:
        raise DatasetError(f"the COLMAP model in {model_dir} lists no images")

    splits = load_splits(root, frames)
    return Dataset(root=root, frames=dict(sorted(frames.items())), splits=splits)


def load_splits(root: Path, frames: dict[str, Frame]) -> dict[str, list[str]]:
    """Read splits.json; without one, every frame is in ``mapping``."""
    path = root / "splits.json"
    if not path.exists():
        return {"mapping": sorted(frames)}
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON ({exc}); fix or delete it") from exc
    if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
        raise DatasetError(f"{path} must map split names to lists of image names")
    splits: dict[str, list[str]] = {}
    for name, members in raw.items():
        unknown = [m for m in members if m not in frames]
        if unknown:
            raise DatasetError(
                f"split {name!r} in {path} names {len(unknown)} image(s) missing from the model, "
                f"e.g. {unknown[:3]}; make splits.json and sparse/images.txt agree"
            )
        if len(set(members)) != len(members):
            raise DatasetError(f"split {name!r} in {path} lists an image twice")
        splits[name] = list(members)
    if "mapping" in splits:
        for name, members in splits.items():
            if name.startswith("query"):
                overlap = set(members) & set(splits["mapping"])
                if overlap:
                    raise DatasetError(
                        f"splits {name!r} and 'mapping' in {path} share {len(overlap)} image(s), "
                        f"e.g. {sorted(overlap)[:3]}; a query must never be part of the map"
                    )
    return splits


def write_colmap_text(model_dir: Path, frames: list[Frame]) -> None:
    """Write cameras.txt / images.txt / empty points3D.txt (one camera per frame)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    cam_lines = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
    img_lines = ["# Image list with two lines of data per image:",
                 "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME", "#   POINTS2D[] as (X, Y, POINT3D_ID)"]
    for idx, frame in enumerate(frames, start=1):
        cam = frame.camera
        params = " ".join(repr(float(p)) for p in cam.params)
        cam_lines.append(f"{idx} {cam.model} {cam.width} {cam.height} {params}")
        if frame.cam_from_world is None:
            raise DatasetError(f"frame {frame.name} has no pose; cannot write a known-poses model")
        q = frame.cam_from_world.qvec_wxyz
        t = frame.cam_from_world.t
        vals = " ".join(repr(float(v)) for v in (*q, *t))
        img_lines.append(f"{idx} {vals} {idx} {frame.name}")
        img_lines.append("")
    atomic_write_text(model_dir / "cameras.txt", "\n".join(cam_lines) + "\n")
    atomic_write_text(model_dir / "images.txt", "\n".join(img_lines) + "\n")
    atomic_write_text(model_dir / "points3D.txt", "# 3D point list (empty: poses only)\n")


def write_splits(root: Path, splits: dict[str, list[str]]) -> None:
    atomic_write_text(root / "splits.json", json.dumps(splits, indent=1) + "\n")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; ImageError naming the file when it cannot."""
    import cv2

    path = Path(path)
    if not path.exists():
        raise ImageError(f"image {path} does not exist")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise ImageError(f"image {path} cannot be decoded (corrupt or unsupported format)")
    return np.ascontiguousarray(bgr[:, :, ::-1])


# rig.json: a multi-camera rig's cameras and, per split, the images taken together:
#   {"cameras": [{"name": "front", "base_from_camera": {"qvec_wxyz": [4], "tvec": [3]}}, ...],
#    "frames": {"<split>": [[<image of camera 0>, <image of camera 1>, ...], ...]}}
# One row per rig frame, one image name per camera in the order of "cameras"; each image's own
# ground-truth pose is in the COLMAP model (cam_from_world), so base_from_world of a frame is
# base_from_camera @ cam_from_world of any of its images.
RIG_FILE = "rig.json"


def write_rig(root: Path, rig: Rig, frames: dict[str, list[list[str]]]) -> None:
    cameras = [{"name": c.name, "base_from_camera": {"qvec_wxyz": c.base_from_camera.qvec_wxyz.tolist(),
                                                     "tvec": c.base_from_camera.t.tolist()}} for c in rig.cameras]
    atomic_write_text(root / RIG_FILE, json.dumps({"cameras": cameras, "frames": frames}, indent=1) + "\n")


def load_rig(dataset: Dataset) -> tuple[Rig, dict[str, list[list[Frame]]]]:
    """The rig of a dataset (rig.json) and its frames per split: one list of Frames (one per camera)
    per rig frame. DatasetError naming the fix when the file is missing or names unknown images."""
    path = dataset.root / RIG_FILE
    if not path.exists():
        raise DatasetError(f"{dataset.root} has no {RIG_FILE}; generate the scene with a rig "
                           "(generate_scene(..., rig=True)) or write one (format: scenesqueezer_core/dataset.py)")
    try:
        raw = json.loads(path.read_text())
        rig = Rig(tuple(RigCamera(c["name"], Pose.from_qvec_tvec(c["base_from_camera"]["qvec_wxyz"],
                                                                    c["base_from_camera"]["tvec"]))
                        for c in raw["cameras"]))
        rows = {split: [list(row) for row in members] for split, members in raw["frames"].items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path} is malformed ({exc!r}); see the format in scenesqueezer_core/dataset.py") from exc
    frames: dict[str, list[list[Frame]]] = {}
    for split, members in rows.items():
        for row in members:
            unknown = [name for name in row if name not in dataset.frames]
            if len(row) != len(rig.cameras) or unknown:
                raise DatasetError(f"{path}: rig frame {row} of split {split!r} must name one image of the model "
                                   f"per camera ({len(rig.cameras)}); unknown: {unknown}")
        frames[split] = [[dataset.frames[name] for name in row] for row in members]
    return rig, frames
