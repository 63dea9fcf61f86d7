"""Training of product-quantizer codebooks (``maps.product_quantizer``): k-means with 256 centroids
in each of the M sub-spaces of L2-normalized descriptors (scipy.cluster.vq.kmeans2, a fixed seed),
so the same data and seed give the same codebooks. The k-means++ seeding runs on a sample of
KMEANS_SEEDING_SAMPLE descriptors (scipy's seeding costs k^2 N distances: minutes on 100k).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.cluster.vq import kmeans2

from ..errors import ConfigError
from ..maps.product_quantizer import CENTROIDS_PER_SUBSPACE, ProductQuantizer

KMEANS_ITERATIONS = 25
KMEANS_SEEDING_SAMPLE = 8192


def train_product_quantizer(descriptors: np.ndarray, code_bytes: int, features: str = "", seed: int = 0,
                            iterations: int = KMEANS_ITERATIONS) -> ProductQuantizer:
    """Codebooks for ``code_bytes`` sub-spaces from training descriptors ``(N, D)``; D % code_bytes == 0."""
    descriptors = np.asarray(descriptors, dtype=np.float64)
    if descriptors.ndim != 2 or len(descriptors) < CENTROIDS_PER_SUBSPACE:
        raise ConfigError(f"product quantizer training needs at least {CENTROIDS_PER_SUBSPACE} descriptors of shape "
                          f"(N, D), got {descriptors.shape}; pass more mapping images")
    dim = descriptors.shape[1]
    if code_bytes <= 0 or dim % code_bytes:
        raise ConfigError(f"{dim}-d descriptors cannot be cut into {code_bytes} equal sub-spaces; "
                          f"choose a code size that divides {dim}")
    unit = descriptors / np.linalg.norm(descriptors, axis=1, keepdims=True).clip(1e-12)
    sub_dim = dim // code_bytes
    rng = np.random.default_rng(seed)
    codebooks = np.empty((code_bytes, CENTROIDS_PER_SUBSPACE, sub_dim), np.float32)
    for m in range(code_bytes):
        part = unit[:, m * sub_dim:(m + 1) * sub_dim]
        sample = part[rng.choice(len(part), min(len(part), KMEANS_SEEDING_SAMPLE), replace=False)]
        seeds, _ = kmeans2(sample, CENTROIDS_PER_SUBSPACE, iter=1, minit="++", seed=rng)
        centroids, _ = kmeans2(part, seeds, iter=iterations, minit="matrix", seed=rng)
        codebooks[m] = centroids
    training: dict[str, Any] = {"descriptors": int(len(descriptors)), "seed": seed, "kmeans_iterations": iterations,
                                "method": f"scipy.cluster.vq.kmeans2 per sub-space, k-means++ seeds from {KMEANS_SEEDING_SAMPLE} descriptors"}
    return ProductQuantizer(codebooks, features=features, training=training)
