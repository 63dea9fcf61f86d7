"""One interface for local feature extractors and matchers (hloc-style small model classes).

Keypoints are in COLMAP pixel convention: the image's top-left corner is (0, 0) and the centre of
pixel (col i, row j) is (i + 0.5, j + 0.5). Extractors whose native convention puts pixel centres at
integers add 0.5 before returning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from ..errors import ConfigError
from .images import extract_in_batches


@dataclass
class Features:
    """Local features of one image (or of map points projected into a frame)."""

    keypoints: np.ndarray  # (N, 2) float32, COLMAP pixel convention
    scores: np.ndarray  # (N,) float32 detection confidence
    descriptors: np.ndarray  # (N, D) float32 (L2-normalised for the learned features)
    image_size: tuple[int, int]  # (width, height) of the image the keypoints live in

    def __len__(self) -> int:
        return len(self.keypoints)

    def subset(self, index: np.ndarray) -> Features:
        return Features(self.keypoints[index], self.scores[index], self.descriptors[index], self.image_size)


@dataclass
class Matches:
    """Correspondences between two Features: rows of (index in first, index in second)."""

    indices: np.ndarray  # (M, 2) int64
    scores: np.ndarray  # (M,) float32, higher is better

    def __len__(self) -> int:
        return len(self.indices)


def merge_conf(default: dict[str, Any], conf: dict[str, Any] | None, what: str = "option") -> dict[str, Any]:
    """Overlay a user conf on a default conf; unknown keys are an error (naming them a ``what``), not ignored."""
    conf = dict(conf or {})
    unknown = sorted(set(conf) - set(default))
    if unknown:
        raise ConfigError(f"unknown {what}(s) {unknown}; valid options: {sorted(default)}")
    return {**default, **conf}


def resolve_device(device: str = "auto") -> str:
    """'auto' picks CUDA when present, else CPU; an explicit 'cuda' without CUDA falls back to CPU."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        import warnings

        warnings.warn("CUDA requested but not available: running on the CPU", stacklevel=2)
        return "cpu"
    return device


class Extractor:
    """Base class: ``extract(image (H, W, 3) uint8 RGB) -> Features``."""

    name: ClassVar[str]
    default_conf: ClassVar[dict[str, Any]] = {}
    descriptor_dim: int

    def __init__(self, conf: dict[str, Any] | None = None, device: str = "auto") -> None:
        self.conf = merge_conf(self.default_conf, conf)
        self.device = resolve_device(device)

    def extract(self, image: np.ndarray) -> Features:
        raise NotImplementedError

    def extract_batch(self, images: list[np.ndarray]) -> list[Features]:
        return [self.extract(im) for im in images]


class BatchedExtractor(Extractor):
    """An extractor whose network runs on batches of same-size images (``conf["batch_size"]`` of them).

    Subclasses implement ``_run_batch(batch (B, 3, H, W) tensor on the device, width, height) ->
    list[Features]`` in original pixels; ``features.images.extract_in_batches`` checks the images and
    groups them by size.
    """

    def extract(self, image: np.ndarray) -> Features:
        return self.extract_batch([image])[0]

    def extract_batch(self, images: list[np.ndarray]) -> list[Features]:
        return extract_in_batches(images, int(self.conf["batch_size"]), self.device, self._run_batch)

    def _run_batch(self, batch, width: int, height: int) -> list[Features]:
        raise NotImplementedError


class Matcher:
    """Base class: ``match(features0, features1) -> Matches``."""

    name: ClassVar[str]
    default_conf: ClassVar[dict[str, Any]] = {}

    def __init__(self, conf: dict[str, Any] | None = None, device: str = "auto") -> None:
        self.conf = merge_conf(self.default_conf, conf)
        self.device = resolve_device(device)

    def match(self, features0: Features, features1: Features) -> Matches:
        raise NotImplementedError

    def match_many(self, query: Features, others: list[Features],
                   shared_ids: list[np.ndarray] | None = None) -> list[Matches]:
        """Match one query against several feature sets (batched where the model allows).

        ``shared_ids``: optional (N_b,) int64 key per feature of each set; equal keys mean equal
        descriptors, which a matcher may compare with the query once. Matchers that see more than
        the descriptors (keypoint layout) ignore it.
        """
        return [self.match(query, other) for other in others]
