"""Retrieval stage: the query's global descriptor -> the top-k map candidates, best first."""

from __future__ import annotations

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

    Conf: ``top_k``.
    """

    name: ClassVar[str] = "vlad"

    def __init__(self, database: LocalizationDatabase, conf: dict[str, Any]) -> None:
        self.database, self.conf = database, conf

    def __call__(self, query: Features, among: np.ndarray | None = None, k: int | None = None) -> Retrieved:
        """(N, D) query descriptors -> the ``top_k`` candidates (``k`` if given), ranked among the
        (n,) candidate indices ``among`` only when given (the odometry prior's narrowed search)."""
        global_query = self.database.vlad.describe(query.descriptors)
        k = int(self.conf["top_k"]) if k is None else k
        if among is not None:
            among = np.asarray(among, dtype=np.int64)
            local_order, similarities = top_k(global_query, self.database.global_descriptors[among], k)
            order = among[local_order]
        else:
            order, similarities = top_k(global_query, self.database.global_descriptors, k)
        return Retrieved(order, similarities, [int(self.database.candidate_ids[i]) for i in order])


RETRIEVALS: dict[str, type[VladRetrieval]] = {VladRetrieval.name: VladRetrieval}


def make_retrieval(database: LocalizationDatabase, conf: dict[str, Any]) -> VladRetrieval:
    """The retrieval stage named by ``conf['retrieval']``."""
    name = conf["retrieval"]
    if name not in RETRIEVALS:
        raise ConfigError(f"unknown retrieval {name!r}; valid: {', '.join(RETRIEVALS)}")
    return RETRIEVALS[name](database, conf)
