"""SceneSqueezer point-scoring network (seed section A), in one readable file.

Per cluster of m 3D points (shapes without a batch axis; one cluster is one sample)::

    observation keypoints (T)      -> KeypointEncoder: F = F~ + MLP(x^, p)           (T, C)
                                   -> mean pooling per point (Eq. 2)                 (m, C)   anchor features F_A
    verification keypoints (S)     -> KeypointEncoder                                (S, C)
      + geometric similarity M = 1/r (Eq. 3) of the k keypoints nearest to each
        point's projection into verification frame n                            -> (N, m, C) V_n^i
    anchor-verification fusion: multi-head attention, h = 4, C' = 64 (Eq. 4-6)   -> (m, C)   F_A^agg
    [normalized xyz (m, 3), F_A^agg, point statistics (m, P)]
                                      -> Point Transformer U-Net "score"         -> (m, 2)   d, log variance
                                      -> Point Transformer U-Net "kernel"        -> (m, 64)  kernel features
    tau = 0.1 + softplus(t)  (lower bound 0.1, seed section A)

The kernel is ``K_ij = exp(-||f_i - f_j||^2)`` on ``f = [g * u, s * xyz_norm]``: the U-Net's 64-d
output ``u`` and, because a kernel that starts as noise makes the QP's first steps meaningless, the
normalized position scaled by a learned ``s`` (at initialisation K is a spatial RBF like the
hand-crafted one; training can move it anywhere). ``K_ii = 1`` by construction.

Point Transformer (Zhao et al., ICCV 2021), plain PyTorch: vector self-attention over the k nearest
neighbours (``torch.cdist`` + ``topk``, in row chunks so memory stays O(chunk * n)), TransitionDown =
farthest point sampling (ratio 0.25) + kNN max-pooling, TransitionUp = 3-NN inverse-distance
interpolation + skip connection.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LearnedConfig", "SceneSqueezerNet", "knn", "farthest_point_sampling"]


@dataclass(frozen=True)
class LearnedConfig:
    descriptor_dim: int = 64  # C: the local feature's descriptor size (xfeat 64)
    fusion_dim: int = 64  # C' of seed Eq. 4
    heads: int = 4  # h of seed Eq. 6
    unet_dims: tuple[int, ...] = (32, 64, 128)  # channels per U-Net level (levels - 1 TransitionDowns)
    neighbours: int = 16  # k of the vector attention / pooling
    sample_ratio: float = 0.25  # TransitionDown keeps this fraction of the points
    kernel_dim: int = 64  # learned kernel features
    tau_min: float = 0.1
    point_stats_dim: int = 0  # per-point statistics concatenated to the U-Net inputs (learned.data; 0: none)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> LearnedConfig:
        known: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()
                                 if k in cls.__dataclass_fields__}
        return cls(**known)


def mlp(dims: list[int], last_activation: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2 or last_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


# ------------------------------------------------------------------------------------ neighbours
def knn(query: torch.Tensor, reference: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """(q, k) int64 indices of the k nearest reference points (query (q, 3), reference (r, 3)).

    Row chunks bound memory to (chunk, r) distances; k is capped at r.
    """
    k = min(k, reference.shape[0])
    out = []
    for s in range(0, query.shape[0], chunk):
        dist = torch.cdist(query[s:s + chunk], reference)  # (c, r)
        out.append(dist.topk(k, dim=1, largest=False).indices)
    return torch.cat(out) if out else torch.zeros(0, k, dtype=torch.long, device=query.device)


def farthest_point_sampling(xyz: torch.Tensor, count: int) -> torch.Tensor:
    """(count,) int64 indices of a farthest point sampling of xyz (n, 3), starting at point 0.

    Deterministic (no random start) so that inference gives the same result every time.
    """
    n = xyz.shape[0]
    count = max(1, min(count, n))
    chosen = torch.zeros(count, dtype=torch.long, device=xyz.device)
    dist = torch.full((n,), float("inf"), device=xyz.device)
    last = 0
    for c in range(1, count):
        dist = torch.minimum(dist, ((xyz - xyz[last]) ** 2).sum(dim=1))
        last = int(torch.argmax(dist))
        chosen[c] = last
    return chosen


# ------------------------------------------------------------------------------------ encoders
class KeypointEncoder(nn.Module):
    """F = F~ + MLP(x^, p): descriptor plus an encoding of normalized position and confidence (seed Eq. 1)."""

    def __init__(self, dim: int):
        super().__init__()
        self.encoder = mlp([3, 32, 64, dim])
        nn.init.zeros_(self.encoder[-1].bias)

    def forward(self, descriptors: torch.Tensor, xy_normalized: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        # descriptors (n, C), xy_normalized (n, 2) in (-1, 1), scores (n,)  ->  (n, C)
        return descriptors + self.encoder(torch.cat([xy_normalized, scores[:, None]], dim=1))


class AnchorVerificationFusion(nn.Module):
    """Multi-head attention of a point's anchor feature over its N verification features (seed Eq. 4-6).

    K = MLP_K(F_A^i) (1, C'), V = MLP_V(V_n^i) (N, C'), Q = MLP_Q(V_n^i) (N, C'); per head j the
    weights softmax(Q_j K_j^T / sqrt(N)) (N, 1) pool V_j over the frames; heads are concatenated and
    mapped by W^O. Frames where the point is not visible are masked; a point visible in none keeps its
    anchor feature (residual connection).
    """

    def __init__(self, dim: int, fusion_dim: int = 64, heads: int = 4):
        super().__init__()
        if fusion_dim % heads:
            raise ValueError(f"fusion_dim {fusion_dim} must be divisible by heads {heads}")
        self.heads, self.head_dim = heads, fusion_dim // heads
        self.mlp_k = mlp([dim, fusion_dim, fusion_dim])
        self.mlp_v = mlp([dim, fusion_dim, fusion_dim])
        self.mlp_q = mlp([dim, fusion_dim, fusion_dim])
        self.w_o = nn.Linear(fusion_dim, dim)

    def forward(self, anchor: torch.Tensor, verification: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        # anchor (m, C), verification (N, m, C), visible (N, m) bool  ->  (m, C)
        n_frames, m, _ = verification.shape
        if n_frames == 0:
            return anchor
        h, c = self.heads, self.head_dim
        key = self.mlp_k(anchor).view(m, 1, h, c)  # (m, 1, h, c)
        ver = verification.transpose(0, 1)  # (m, N, C)
        value = self.mlp_v(ver).view(m, n_frames, h, c)
        query = self.mlp_q(ver).view(m, n_frames, h, c)
        logits = (query * key).sum(-1) / math.sqrt(n_frames)  # (m, N, h)
        mask = visible.transpose(0, 1)[:, :, None]  # (m, N, 1)
        logits = logits.masked_fill(~mask, float("-inf"))
        any_visible = mask.any(dim=1, keepdim=True)  # (m, 1, 1)
        weights = torch.softmax(logits.masked_fill(~any_visible, 0.0), dim=1) * any_visible  # (m, N, h)
        pooled = (weights[..., None] * value).sum(dim=1)  # (m, h, c)
        return anchor + self.w_o(pooled.reshape(m, h * c))


# ------------------------------------------------------------------------------------ Point Transformer
class PointTransformerBlock(nn.Module):
    """Residual vector self-attention over k nearest neighbours (Zhao et al., Eq. 3)."""

    def __init__(self, dim: int, neighbours: int):
        super().__init__()
        self.k = neighbours
        self.linear_in = nn.Linear(dim, dim)
        self.to_q, self.to_k, self.to_v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.pos = mlp([3, dim, dim])  # delta = theta(p_i - p_j)
        self.attn = mlp([dim, dim, dim])  # gamma
        self.linear_out = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, xyz: torch.Tensor, feats: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        # xyz (n, 3), feats (n, D), neighbours (n, k)  ->  (n, D)
        x = self.linear_in(feats)
        q, k, v = self.to_q(x), self.to_k(x)[neighbours], self.to_v(x)[neighbours]  # (n, D), (n, k, D) x2
        delta = self.pos(xyz[:, None, :] - xyz[neighbours])  # (n, k, D)
        weights = torch.softmax(self.attn(q[:, None, :] - k + delta), dim=1)  # (n, k, D) per channel
        out = (weights * (v + delta)).sum(dim=1)  # (n, D)
        return self.norm(feats + self.linear_out(out))


class TransitionDown(nn.Module):
    """FPS keeps ceil(ratio n) points; each takes the max over its k neighbours' transformed features."""

    def __init__(self, dim_in: int, dim_out: int, ratio: float, neighbours: int):
        super().__init__()
        self.ratio, self.k = ratio, neighbours
        self.mlp = nn.Sequential(nn.Linear(dim_in + 3, dim_out), nn.LayerNorm(dim_out), nn.ReLU())

    def forward(self, xyz: torch.Tensor, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # xyz (n, 3), feats (n, D_in)  ->  xyz (n', 3), feats (n', D_out), n' = ceil(ratio n)
        keep = farthest_point_sampling(xyz.detach(), int(math.ceil(self.ratio * xyz.shape[0])))
        centres = xyz[keep]
        nbr = knn(centres.detach(), xyz.detach(), self.k)  # (n', k)
        grouped = torch.cat([xyz[nbr] - centres[:, None, :], feats[nbr]], dim=2)  # (n', k, 3 + D_in)
        return centres, self.mlp(grouped).max(dim=1).values


class TransitionUp(nn.Module):
    """Coarse features interpolated (3-NN, inverse distance) onto the fine points, plus the skip features."""

    def __init__(self, dim_coarse: int, dim_fine: int):
        super().__init__()
        self.coarse = nn.Sequential(nn.Linear(dim_coarse, dim_fine), nn.LayerNorm(dim_fine), nn.ReLU())
        self.fine = nn.Sequential(nn.Linear(dim_fine, dim_fine), nn.LayerNorm(dim_fine), nn.ReLU())

    def forward(self, xyz_coarse, feats_coarse, xyz_fine, feats_fine) -> torch.Tensor:
        # (n', 3), (n', D_c), (n, 3), (n, D_f)  ->  (n, D_f)
        nbr = knn(xyz_fine.detach(), xyz_coarse.detach(), 3)  # (n, <=3)
        dist = (xyz_fine[:, None, :] - xyz_coarse[nbr]).norm(dim=2).detach()  # (n, <=3)
        weight = 1.0 / (dist + 1e-8)
        weight = weight / weight.sum(dim=1, keepdim=True)
        up = (self.coarse(feats_coarse)[nbr] * weight[..., None]).sum(dim=1)  # (n, D_f)
        return up + self.fine(feats_fine)


class PointTransformerUNet(nn.Module):
    """Stem -> [PT block, TransitionDown] per level -> bottleneck PT -> [TransitionUp, PT block] -> linear head."""

    def __init__(self, dim_in: int, dim_out: int, dims: tuple[int, ...], neighbours: int, ratio: float):
        super().__init__()
        self.k = neighbours
        self.stem = nn.Sequential(nn.Linear(dim_in, dims[0]), nn.LayerNorm(dims[0]), nn.ReLU())
        self.enc_blocks = nn.ModuleList([PointTransformerBlock(d, neighbours) for d in dims])
        self.downs = nn.ModuleList([TransitionDown(dims[i], dims[i + 1], ratio, neighbours) for i in range(len(dims) - 1)])
        self.ups = nn.ModuleList([TransitionUp(dims[i + 1], dims[i]) for i in reversed(range(len(dims) - 1))])
        self.dec_blocks = nn.ModuleList([PointTransformerBlock(dims[i], neighbours) for i in reversed(range(len(dims) - 1))])
        self.head = nn.Linear(dims[0], dim_out)  # the one-layer MLP of seed section A

    def forward(self, xyz: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        # xyz (n, 3), feats (n, dim_in)  ->  (n, dim_out)
        x = self.stem(feats)
        skips = []
        for level, block in enumerate(self.enc_blocks):
            x = block(xyz, x, knn(xyz.detach(), xyz.detach(), self.k))
            if level < len(self.downs):
                skips.append((xyz, x))
                xyz, x = self.downs[level](xyz, x)
        for up, block in zip(self.ups, self.dec_blocks):
            fine_xyz, fine_x = skips.pop()
            x = up(xyz, x, fine_xyz, fine_x)
            xyz = fine_xyz
            x = block(xyz, x, knn(xyz.detach(), xyz.detach(), self.k))
        return self.head(x)


# ------------------------------------------------------------------------------------ whole network
class SceneSqueezerNet(nn.Module):
    """Cluster inputs (see ``learned.data.cluster_inputs``) -> d (m,), log variance (m,), kernel features, tau."""

    def __init__(self, config: LearnedConfig = LearnedConfig()):
        super().__init__()
        self.config = config
        c = config.descriptor_dim
        self.keypoint_encoder = KeypointEncoder(c)
        self.fusion = AnchorVerificationFusion(c, config.fusion_dim, config.heads)
        dim_in = 3 + c + config.point_stats_dim
        self.score_net = PointTransformerUNet(dim_in, 2, config.unet_dims, config.neighbours, config.sample_ratio)
        self.kernel_net = PointTransformerUNet(dim_in, config.kernel_dim, config.unet_dims, config.neighbours,
                                               config.sample_ratio)
        self.tau_raw = nn.Parameter(torch.tensor(0.0))
        # log of the gain on the learned kernel features and of the scale on positions (see module doc)
        self.kernel_log_gain = nn.Parameter(torch.tensor(math.log(0.1)))
        self.kernel_log_position_scale = nn.Parameter(torch.tensor(math.log(8.0)))

    @property
    def tau(self) -> torch.Tensor:
        return self.config.tau_min + F.softplus(self.tau_raw)

    def point_features(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """(m, C) fused anchor features of the cluster's points."""
        m = x["xyz_norm"].shape[0]
        obs = self.keypoint_encoder(x["obs_desc"], x["obs_xy"], x["obs_score"])  # (T, C)
        sums = torch.zeros(m, obs.shape[1], dtype=obs.dtype, device=obs.device).index_add_(0, x["obs_point"], obs)
        counts = torch.zeros(m, dtype=obs.dtype, device=obs.device).index_add_(
            0, x["obs_point"], torch.ones_like(x["obs_point"], dtype=obs.dtype))
        anchor = sums / counts.clamp(min=1.0)[:, None]  # (m, C) mean pooling, Eq. 2

        ver_kp = self.keypoint_encoder(x["ver_desc"], x["ver_xy"], x["ver_score"])  # (S, C)
        ver_kp = torch.cat([ver_kp, ver_kp.new_zeros(1, ver_kp.shape[1])])  # row S: padding for "no keypoint"
        weight = x["ver_weight"]  # (N, m, k) geometric similarity M = 1 / r, 0 = no keypoint
        total = weight.sum(dim=2)  # (N, m)
        ver = (ver_kp[x["ver_index"]] * weight[..., None]).sum(dim=2) / total.clamp(min=1e-12)[..., None]  # (N, m, C)
        return self.fusion(anchor, ver, total > 0)

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """x: cluster inputs as tensors -> {"d" (m,), "log_var" (m,), "kernel_features" (m, 67), "tau" ()}."""
        xyz = x["xyz_norm"]  # (m, 3) in [-1, 1]
        parts = [xyz, self.point_features(x)]
        if self.config.point_stats_dim:
            parts.append(x["point_stats"])  # (m, point_stats_dim)
        inputs = torch.cat(parts, dim=1)  # (m, 3 + C + point_stats_dim)
        score = self.score_net(xyz, inputs)  # (m, 2)
        learned = self.kernel_net(xyz, inputs)  # (m, 64)
        kernel_features = torch.cat([self.kernel_log_gain.exp() * learned,
                                     self.kernel_log_position_scale.exp() * xyz], dim=1)  # (m, 67)
        return {"d": score[:, 0], "log_var": score[:, 1], "kernel_features": kernel_features, "tau": self.tau}
