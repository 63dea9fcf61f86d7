"""Matching stage: the query's local features against each retrieved candidate's map points.

The matcher is the map's feature setup default (``features.FEATURE_SETUPS``) unless the conf names
another. Candidates are matched in retrieval order, in chunks that double in size (1, 2, 4, ...
candidates), each chunk in one batched pass (``Matcher.match_many``): a query that the pose stage's
early exit stops after the first candidates pays for little more than those, and one that needs
every candidate (most failures) pays for a few passes instead of one per candidate.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..features import Features, Matcher, get_matcher
from ..maps.database import LocalizationDatabase


@dataclass
class CandidateMatches:
    """2D-3D correspondences of the query with one candidate."""

    index: int  # candidate index into the database
    query_indices: np.ndarray  # (M,) int64 query keypoint of each correspondence
    point_ids: np.ndarray  # (M,) int64 map point of each correspondence


class CandidateMatching:
    """Conf: ``matcher``, ``precompute_candidates_max``."""

    first_chunk = 1  # candidates in the first batched pass; each further pass doubles the chunk

    def __init__(self, database: LocalizationDatabase, conf: dict[str, Any], default_matcher: Matcher,
                 device: str = "auto") -> None:
        self.database, self.conf = database, conf
        self.matcher = get_matcher(conf["matcher"], device=device) if conf["matcher"] else default_matcher
        self._cache: dict[int, tuple[Features, np.ndarray]] = {}
        self.seconds = 0.0  # matching time of the last ``matches`` iteration
        # A map that decodes its codes on demand keeps at most a compact store of its own (DSQ codes:
        # 16-bit, each point once; product codes: nothing); a copy here would hold every cluster
        # decoded in float32 (4 to 32 times its codes). Other maps' candidate features are
        # prepared once at load, so query latency stays flat from the first frame on.
        self.keeps_candidates = not database.decodes_on_demand
        if len(database.candidate_ids) <= int(conf["precompute_candidates_max"]):
            for index in range(len(database.candidate_ids)):  # on-demand maps: fills their own store
                self.candidate(index)
        self.points_share_descriptors = bool(database.points_share_descriptors)

    def candidate(self, index: int) -> tuple[Features, np.ndarray]:
        """(features of candidate ``index``, (N,) int64 map point id of each)."""
        if not self.keeps_candidates:
            return self.database.candidate_features(index)
        if index not in self._cache:
            self._cache[index] = self.database.candidate_features(index)
        return self._cache[index]

    def candidate_point_ids(self, index: int) -> np.ndarray:
        """(N,) int64 map point ids of candidate ``index``'s features (``candidate(index)[1]``)."""
        if index in self._cache:
            return self._cache[index][1]
        return self.database.candidate_point_ids(index)

    def matches(self, query: Features, indices: np.ndarray,
                done: dict[int, CandidateMatches] | None = None) -> Iterator[CandidateMatches]:
        """Correspondences with each candidate of ``indices`` (k,), in that order, computed a chunk at a time.

        ``done``: this query's candidates matched before (the prior's narrowed search, then the
        global one): read from it instead of matched again, and filled with every new candidate.
        """
        self.seconds = 0.0
        done = {} if done is None else done
        order = [int(index) for index in indices]
        position, size = 0, self.first_chunk
        while position < len(order):
            if order[position] not in done:
                chunk = [index for index in order[position:] if index not in done][:size]
                size *= 2
                t0 = time.perf_counter()
                prepared = [self.candidate(index) for index in chunk]
                shared_ids = [point_ids for _, point_ids in prepared] if self.points_share_descriptors else None
                all_matches = self.matcher.match_many(query, [features for features, _ in prepared], shared_ids)
                self.seconds += time.perf_counter() - t0
                for index, (_, point_ids), matches in zip(chunk, prepared, all_matches):
                    q_idx = matches.indices[:, 0]
                    p_idx = point_ids[matches.indices[:, 1]]
                    valid = p_idx >= 0
                    done[index] = CandidateMatches(index, q_idx[valid], p_idx[valid])
            yield done[order[position]]
            position += 1
