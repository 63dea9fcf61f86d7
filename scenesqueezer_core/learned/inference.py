"""Learned scores for ``compress --method learned``: d, kernel features and tau of one cluster.

The network was trained on random subsets of at most 1000 points of a cluster (the training QP is
dense); its Point Transformer neighbourhoods depend on point density, so at inference a cluster is
scored in random chunks of the same size (a fixed permutation: the result is deterministic), all
sharing the cluster-wide position normalisation, so every point sees the density it was trained on.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..features import extractor_name
from ..features.weights import WEIGHTS_DIR
from .data import subsample
from .networks import LearnedConfig, SceneSqueezerNet
from .train import to_tensors

__all__ = ["default_weights_path", "load_learned_model", "score_cluster"]

def default_weights_path(feature_setup: str) -> Path:
    """Shipped weights for a feature setup's extractor (e.g. ``weights/learned_xfeat.safetensors``)."""
    return WEIGHTS_DIR / f"learned_{extractor_name(feature_setup)}.safetensors"


@functools.lru_cache(maxsize=4)
def load_learned_model(path: str) -> tuple[SceneSqueezerNet, dict[str, Any]]:
    """(model in eval mode on CPU, info dict) from a safetensors file; cached per path (one load per worker)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise ConfigError(f"learned selection weights {path} not found; train them with `scenesqueezer train` "
                          "(see scenesqueezer_core/weights/LEARNED_MODEL_CARD.md) or pass conf learned_weights=PATH")
    try:
        with safe_open(path, framework="pt") as fh:
            metadata = fh.metadata() or {}
        config = LearnedConfig.from_dict(json.loads(metadata["config"]))
        model = SceneSqueezerNet(config)
        model.load_state_dict(load_file(path))
    except (KeyError, ValueError, RuntimeError, OSError) as exc:
        raise ConfigError(f"learned selection weights {path} are not a SceneSqueezer model ({exc}); "
                          "re-export them with `scenesqueezer train`") from exc
    model.eval()
    return model, json.loads(metadata.get("info", "{}"))


@torch.no_grad()
def score_cluster(model: SceneSqueezerNet, inputs: dict[str, np.ndarray], chunk: int = 1000,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """(d (m,) float64, kernel features (m, F) float64 for gamma = 1, tau) of one cluster's inputs."""

    m = len(inputs["xyz_norm"])
    if inputs["obs_desc"].shape[1] != model.config.descriptor_dim:
        raise ConfigError(f"learned model expects {model.config.descriptor_dim}-d descriptors, the map has "
                          f"{inputs['obs_desc'].shape[1]}-d; use weights trained for this feature setup")
    order = np.random.default_rng(seed).permutation(m)
    num_chunks = max(1, int(np.ceil(m / chunk)))
    d = np.zeros(m)
    feats = None
    for part in np.array_split(order, num_chunks):
        keep = np.sort(part)
        out = model(to_tensors(subsample(inputs, keep), "cpu"))
        d[keep] = out["d"].double().numpy()
        kf = out["kernel_features"].double().numpy()
        if feats is None:
            feats = np.zeros((m, kf.shape[1]))
        feats[keep] = kf
    return d, feats, float(model.tau)


def learned_weights_for(conf: dict[str, Any], feature_setup: str) -> str:
    """The weights path compress uses (conf ``learned_weights`` or the shipped default), checked up front."""
    path = os.fspath(conf.get("learned_weights") or default_weights_path(feature_setup))
    if not Path(path).is_file():
        raise ConfigError(f"learned selection weights {path} not found (feature setup {feature_setup!r}); "
                          "train them with `scenesqueezer train` and pass conf learned_weights=PATH, "
                          "or use a feature setup with shipped weights (xfeat)")
    return path
