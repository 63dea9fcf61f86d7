"""Retrieval stage: the query's global descriptor -> the top-k map candidates, best first."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError
from ..features import Features
from ..retrieval import top_k
from ..maps.database import LocalizationDatabase


@dataclass
class Retrieved:
    indices: np.ndarray  # (k,) int64 candidate indices into the database, best first
    similarities: np.ndarray  # (k,) float32 cosine similarity of each
    candidate_ids: list[int]  # the database's ids of those candidates (frame or cluster ids)


class VladRetrieval:
    """The map's own VLAD codebook + whitening over the query's local descriptors, cosine top-k.

    Conf: ``top_k``, ``top_k_share``, ``max_similarity_gap``.
    """

    name: ClassVar[str] = "vlad"

    def __init__(self, database: LocalizationDatabase, conf: dict[str, Any]) -> None:
        self.database, self.conf = database, conf

    def __call__(self, query: Features, among: np.ndarray | None = None, k: int | None = None) -> Retrieved:
        """(N, D) query descriptors -> the ``top_k`` candidates (``k`` if given), ranked among the
        (n,) candidate indices ``among`` only when given (the odometry prior's narrowed search)."""
        global_query = self.database.vlad.describe(query.descriptors)
        if among is not None:
            k = int(self.conf["top_k"]) if k is None else k
            among = np.asarray(among, dtype=np.int64)
            local_order, similarities = top_k(global_query, self.database.global_descriptors[among], k)
            order = among[local_order]
        elif k is not None:
            order, similarities = top_k(global_query, self.database.global_descriptors, k)
        else:  # the global search, narrowed by the map's size and the similarity gap
            k = narrowed_top_k(self.conf, len(self.database.candidate_ids))
            order, similarities = top_k(global_query, self.database.global_descriptors, k)
            keep = within_similarity_gap(similarities, float(self.conf["max_similarity_gap"]))
            order, similarities = order[keep], similarities[keep]
        return Retrieved(order, similarities, [int(self.database.candidate_ids[i]) for i in order])


def narrowed_top_k(conf: dict[str, Any], num_candidates: int) -> int:
    """``top_k``, capped at ``top_k_share`` of the map's candidates (rounded up).

    A compressed map has few candidates, each a cluster of many frames: the same top-k that picks
    a neighbourhood among 200 frames picks nearly every one of 17 clusters.
    """
    return max(1, min(int(conf["top_k"]), math.ceil(float(conf["top_k_share"]) * num_candidates)))


def within_similarity_gap(similarities: np.ndarray, max_gap: float) -> np.ndarray:
    """(k,) bool: the candidates (similarities best first) that trail the best by at most ``max_gap``."""
    if len(similarities) == 0:
        return np.zeros(0, bool)
    return similarities >= similarities[0] - max_gap


RETRIEVALS: dict[str, type[VladRetrieval]] = {VladRetrieval.name: VladRetrieval}


def make_retrieval(database: LocalizationDatabase, conf: dict[str, Any]) -> VladRetrieval:
    """The retrieval stage named by ``conf['retrieval']``."""
    name = conf["retrieval"]
    if name not in RETRIEVALS:
        raise ConfigError(f"unknown retrieval {name!r}; valid: {', '.join(RETRIEVALS)}")
    return RETRIEVALS[name](database, conf)
