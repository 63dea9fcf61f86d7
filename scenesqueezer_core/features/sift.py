"""OpenCV SIFT with RootSIFT descriptors: the weight-free fallback."""

from __future__ import annotations

from typing import Any, ClassVar

import cv2
import numpy as np

from ..errors import ConfigError
from .base import Extractor, Features
from .images import check_rgb_image


class SiftExtractor(Extractor):
    """``cv2.SIFT`` keypoints; descriptors are RootSIFT (L1-normalise, square root) unless ``root: False``.

    RootSIFT descriptors are L2-normalised, so the Hellinger kernel becomes a dot product and the
    same mutual-nearest-neighbour matcher serves SIFT and the learned features.

    Conf:
        max_keypoints: keep at most this many keypoints, largest DoG response first.
        contrast_threshold, edge_threshold: OpenCV's detector thresholds.
        root: RootSIFT (True) or plain SIFT descriptors scaled to unit length (False).

    Pixel convention: OpenCV puts pixel centres at integers, so we return ``x + 0.5``.
    Scores are the DoG responses.
    """

    name = "sift"
    default_conf: ClassVar[dict[str, Any]] = {
        "max_keypoints": 4096,
        "contrast_threshold": 0.04,
        "edge_threshold": 10.0,
        "root": True,
    }
    descriptor_dim = 128

    def __init__(self, conf: dict[str, Any] | None = None, device: str = "auto") -> None:
        super().__init__(conf, device)
        if int(self.conf["max_keypoints"]) <= 0:
            raise ConfigError(f"sift max_keypoints must be positive, got {self.conf['max_keypoints']}")
        self.device = "cpu"  # OpenCV runs on the CPU whatever was asked
        self.sift = cv2.SIFT_create(
            nfeatures=int(self.conf["max_keypoints"]),
            contrastThreshold=float(self.conf["contrast_threshold"]),
            edgeThreshold=float(self.conf["edge_threshold"]),
            # Without it OpenCV doubles the image with a half-pixel shift: keypoints land 0.25 px too far.
            enable_precise_upscale=True,
        )

    def extract(self, image: np.ndarray) -> Features:
        image = check_rgb_image(image)
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        cv_keypoints, descriptors = self.sift.detectAndCompute(gray, None)
        height, width = gray.shape
        if not cv_keypoints:
            return Features(
                np.zeros((0, 2), np.float32), np.zeros(0, np.float32), np.zeros((0, 128), np.float32), (width, height)
            )
        scores = np.array([kp.response for kp in cv_keypoints], np.float32)
        # OpenCV may keep a few extra keypoints that tie on response: enforce the budget.
        keep = np.argsort(-scores, kind="stable")[: int(self.conf["max_keypoints"])]
        keypoints = np.array([cv_keypoints[i].pt for i in keep], np.float32) + np.float32(0.5)
        descriptors = descriptors[keep].astype(np.float32)
        if self.conf["root"]:
            descriptors /= np.maximum(descriptors.sum(axis=1, keepdims=True), 1e-12)
            descriptors = np.sqrt(descriptors)
        else:
            descriptors /= np.maximum(np.linalg.norm(descriptors, axis=1, keepdims=True), 1e-12)
        return Features(keypoints, scores[keep], descriptors, (width, height))
