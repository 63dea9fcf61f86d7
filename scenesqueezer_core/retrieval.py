"""Global image descriptors without downloaded weights: VLAD over local descriptors + PCA whitening.

AP-GeM / NetVLAD weights are not available offline, so we aggregate the local descriptors that the
map stores anyway (Jégou et al., "Aggregating local descriptors", CVPR 2010) with a codebook fitted
on the map, then PCA-whiten with a shrinkage so that maps with few frames stay well conditioned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.cluster.vq import kmeans2


@dataclass
class VladModel:
    """Codebook and whitening fitted on one map."""

    centroids: np.ndarray  # (K, D) float32
    pca_mean: np.ndarray  # (K*D,) float32
    pca_projection: np.ndarray  # (K*D, G) float32, includes the whitening scale

    @property
    def dim(self) -> int:
        return int(self.pca_projection.shape[1]) if self.pca_projection.size else int(self.centroids.size)

    def to_arrays(self, prefix: str = "vlad_") -> dict[str, np.ndarray]:
        return {f"{prefix}centroids": self.centroids, f"{prefix}pca_mean": self.pca_mean,
                f"{prefix}pca_projection": self.pca_projection}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "vlad_") -> VladModel:
        return cls(np.asarray(arrays[f"{prefix}centroids"]), np.asarray(arrays[f"{prefix}pca_mean"]),
                   np.asarray(arrays[f"{prefix}pca_projection"]))

    def raw_vlad(self, descriptors: np.ndarray) -> np.ndarray:
        """(N, D) local descriptors -> (K*D,) intra- and power-normalised VLAD."""
        k, dim = self.centroids.shape
        vlad = np.zeros((k, dim), dtype=np.float32)
        if len(descriptors):
            desc = np.asarray(descriptors, dtype=np.float32)
            # nearest centroid by dot product on normalised vectors == smallest L2 distance
            dists = (desc**2).sum(1, keepdims=True) - 2 * desc @ self.centroids.T + (self.centroids**2).sum(1)
            assign = np.argmin(dists, axis=1)
            np.add.at(vlad, assign, desc - self.centroids[assign])
        norms = np.linalg.norm(vlad, axis=1, keepdims=True)
        vlad = vlad / np.maximum(norms, 1e-12)  # intra-normalisation against bursty visual words
        vlad = vlad.reshape(-1)
        vlad = np.sign(vlad) * np.sqrt(np.abs(vlad))
        return vlad / max(float(np.linalg.norm(vlad)), 1e-12)

    def describe(self, descriptors: np.ndarray) -> np.ndarray:
        """(N, D) local descriptors -> (G,) L2-normalised global descriptor."""
        if self.pca_projection.size == 0:  # no whitening: the raw VLAD is the descriptor
            return self.raw_vlad(descriptors).astype(np.float32)
        g = (self.raw_vlad(descriptors) - self.pca_mean) @ self.pca_projection
        return (g / max(float(np.linalg.norm(g)), 1e-12)).astype(np.float32)


def fit_vlad(per_frame_descriptors: list[np.ndarray], num_clusters: int = 32, max_dim: int = 1024,
             max_samples: int = 100_000, seed: int = 0) -> VladModel:
    """Fit the codebook on a sample of map descriptors and the PCA-whitening on the frames' VLADs."""
    rng = np.random.default_rng(seed)
    pool = np.concatenate([d for d in per_frame_descriptors if len(d)], axis=0).astype(np.float32)
    if len(pool) > max_samples:
        pool = pool[rng.choice(len(pool), max_samples, replace=False)]
    num_clusters = int(min(num_clusters, max(1, len(pool) // 20)))
    centroids, _ = kmeans2(pool, num_clusters, minit="++", seed=seed, iter=20)
    centroids = centroids.astype(np.float32)
    model = VladModel(centroids, np.zeros(centroids.size, np.float32), np.eye(centroids.size, dtype=np.float32))
    raw = np.stack([model.raw_vlad(d) for d in per_frame_descriptors])
    mean = raw.mean(0)
    centered = raw - mean
    _, s, vt = np.linalg.svd(centered, full_matrices=False)
    keep = int(min(max_dim, vt.shape[0]))
    variances = s[:keep] ** 2 / max(len(raw) - 1, 1)
    # Shrinkage whitening: dividing by sqrt(var + mean var) keeps tiny-variance directions from
    # being blown up when a map has only a handful of frames.
    shrink = variances.mean() if keep else 1.0
    scale = 1.0 / np.sqrt(variances + shrink + 1e-12)
    projection = (vt[:keep].T * scale).astype(np.float32)
    return VladModel(centroids, mean.astype(np.float32), projection)


def top_k(query: np.ndarray, database: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine top-k: (G,) query, (M, G) database -> (indices (k,), similarities (k,)), best first."""
    sims = database @ query
    k = min(k, len(sims))
    idx = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
    order = idx[np.argsort(-sims[idx], kind="stable")]
    return order, sims[order]
