"""The shipped global-descriptor model of a compressed map: a generic VLAD codebook + DSQ quantizer.

A per-map codebook with PCA whitening (what an uncompressed SceneMap stores) costs megabytes, more
than a whole compressed map; so compressed maps use a codebook and a 1024-byte DSQ quantizer trained
once per feature type on many scenes (`scripts/train_global_models.py`) and shipped in the package.
The VLAD has ``K * D = 1024`` dimensions (K = 16 words for 64-d XFeat, 8 for 128-d ALIKED / SIFT).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from safetensors.numpy import load_file, save_file

from ..atomic import atomic_path
from ..errors import MapFileError
from ..features import extractor_name
from ..features.weights import WEIGHTS_DIR
from ..retrieval import VladModel
from .quantizer import GlobalQuantizer

GLOBAL_DIM = 1024


def vlad_path(features: str) -> Path:
    return WEIGHTS_DIR / f"vlad_{extractor_name(features)}.safetensors"


def global_quantizer_path(features: str) -> Path:
    return WEIGHTS_DIR / f"global_{extractor_name(features)}.safetensors"


def save_vlad_codebook(path: Path, centroids: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        save_file({"centroids": np.ascontiguousarray(centroids, dtype=np.float32)}, str(tmp))


@functools.lru_cache(maxsize=None)
def load_global_model(features: str) -> tuple[VladModel, GlobalQuantizer]:
    """(generic VLAD model without PCA, GlobalQuantizer) for a feature setup or extractor name."""
    vpath, qpath = vlad_path(features), global_quantizer_path(features)
    if not vpath.is_file() or not qpath.is_file():
        raise MapFileError(
            f"no shipped global descriptor model for features '{features}' ({vpath.name}, {qpath.name}); "
            "run scripts/train_global_models.py for this feature type"
        )
    centroids = load_file(str(vpath))["centroids"]
    vlad = VladModel(centroids.astype(np.float32), np.zeros(0, np.float32), np.zeros((0, 0), np.float32))
    return vlad, GlobalQuantizer.from_safetensors(qpath)
