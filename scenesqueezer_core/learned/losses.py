"""Training losses: distinctiveness regression L_d and a differentiable pose-loss surrogate L_xi.

L_d (main paper Eq. 6, as DESIGN.md summarises it): per-point regression of the query-match label
``y`` (``learned.data``: (correct - wrong) / visible queries) with a learned per-point uncertainty,
the Gaussian negative log-likelihood ``0.5 (exp(-s) (d - y)^2 + s)`` (s = log variance).

L_xi (main paper Eq. 7; surrogate, documented here because it is not the paper's exact loss): the
paper runs RANSAC with H = 64 hypotheses of 4 correspondences sampled according to ``a`` and penalises
hypotheses with few inliers at 12 px. We replace the sampled hypotheses by their expectation: for
query q with matches to the cluster points (correct = reprojection with the true pose within the
label threshold, which is below 12 px, so a correct match is an inlier of the true pose), a
correspondence drawn with probability proportional to ``a`` among the query's matched points is
correct with probability ::

    p_q = sum_{i correct} a_i / (sum_{i matched} a_i + 4 C)         C = 1 / (nu m)

(the ``4 C`` term stands for the minimal sample: a selection with fewer than about four matched points
cannot make a hypothesis, so p_q stays small until it has them). A hypothesis is all-inlier with
probability p_q^4, and at least one of H is with ``P_q = 1 - (1 - p_q^4)^H``; the loss is the mean of
``-log(P_q + eps)``. It is smooth in ``a`` and rewards putting the QP's mass on points that queries
of other conditions match correctly — what the sampled loss rewards in expectation — without
sampling noise and without a differentiable PnP.
"""

from __future__ import annotations

import torch

__all__ = ["distinctiveness_loss", "pose_loss", "pose_success_probability"]


def distinctiveness_loss(d: torch.Tensor, log_var: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """() mean Gaussian NLL of targets (m,) under predictions d (m,) with log variances (m,)."""
    log_var = log_var.clamp(-6.0, 6.0)
    return (0.5 * (torch.exp(-log_var) * (d - target) ** 2 + log_var)).mean()


def pose_success_probability(alpha: torch.Tensor, match_query: torch.Tensor, match_point: torch.Tensor,
                             match_correct: torch.Tensor, num_queries: int, nu: float,
                             hypotheses: int = 64, sample_size: int = 4) -> torch.Tensor:
    """(num_queries,) probability that at least one of ``hypotheses`` a-weighted minimal samples is all-correct.

    alpha (m,) QP solution; match_* (M,) one entry per query-point match (query index, point index, correct).
    """
    C = 1.0 / (nu * alpha.shape[0])
    a = alpha[match_point]  # (M,)
    matched = torch.zeros(num_queries, dtype=alpha.dtype, device=alpha.device).index_add(0, match_query, a)
    correct = torch.zeros(num_queries, dtype=alpha.dtype, device=alpha.device).index_add(
        0, match_query, a * match_correct.to(alpha.dtype))
    p = correct / (matched + sample_size * C)
    return 1.0 - (1.0 - p ** sample_size) ** hypotheses


def pose_loss(alpha: torch.Tensor, match_query: torch.Tensor, match_point: torch.Tensor, match_correct: torch.Tensor,
              num_queries: int, nu: float, hypotheses: int = 64) -> torch.Tensor:
    """() mean over queries of -log P_q (see module docstring); 0 when there are no queries."""
    if num_queries == 0:
        return alpha.sum() * 0.0
    success = pose_success_probability(alpha, match_query, match_point, match_correct, num_queries, nu, hypotheses)
    return -torch.log(success + 1e-4).mean()
