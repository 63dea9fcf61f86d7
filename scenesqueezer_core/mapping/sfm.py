"""Poses for datasets that have none: pycolmap incremental structure-from-motion.

Default COLMAP options fail on forward-moving robot sequences ("No good initial image pair"), so
the initial-pair thresholds are relaxed and images are matched sequentially (with loop detection
off) plus exhaustively on small sets.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pycolmap

from ..dataset import load_dataset
from ..errors import DatasetError
from ..types import Dataset

logger = logging.getLogger(__name__)


def run_sfm(image_dir: Path, work_dir: Path, single_camera: bool = True) -> Path:
    """Estimate poses of the images in ``image_dir``; returns the folder of the largest model."""
    work_dir.mkdir(parents=True, exist_ok=True)
    database = work_dir / "database.db"
    database.unlink(missing_ok=True)
    reader = pycolmap.ImageReaderOptions()
    pycolmap.extract_features(database, image_dir,
                              camera_mode=pycolmap.CameraMode.SINGLE if single_camera else pycolmap.CameraMode.AUTO,
                              reader_options=reader)
    num_images = len([p for p in image_dir.rglob("*") if p.is_file()])
    if num_images <= 60:
        pycolmap.match_exhaustive(database)
    else:
        options = pycolmap.SequentialPairingOptions()
        options.overlap = 15
        pycolmap.match_sequential(database, pairing_options=options)
    options = pycolmap.IncrementalPipelineOptions()
    options.mapper.init_max_forward_motion = 0.99
    options.mapper.init_min_tri_angle = 4.0
    options.mapper.init_min_num_inliers = 50
    out = work_dir / "models"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    models = pycolmap.incremental_mapping(database, image_dir, out, options=options)
    if not models:
        raise DatasetError(
            f"structure-from-motion found no model for the images in {image_dir}: they may not overlap "
            "enough; provide poses (sparse/ model) or denser images"
        )
    best = max(models, key=lambda k: models[k].num_reg_images())
    logger.info("SfM registered %d of %d images", models[best].num_reg_images(), num_images)
    best_dir = out / str(best)
    models[best].write(best_dir)
    return best_dir


def dataset_with_sfm_poses(root: Path, work_dir: Path) -> Dataset:
    """A Dataset for a folder with images/ only: poses come from SfM (arbitrary scale and frame)."""
    model_dir = run_sfm(root / "images", work_dir)
    return load_dataset(root, model_dir=model_dir)
