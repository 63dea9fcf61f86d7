"""Matching stage: the query's local features against each retrieved candidate's map points.

The matcher is the map's feature setup default (``features.FEATURE_SETUPS``) unless the conf names
another. Candidates are matched lazily, in retrieval order, so that the pose stage's early exit
also saves the matching of the candidates it never reaches.
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

    def __init__(self, database: LocalizationDatabase, conf: dict[str, Any], default_matcher: Matcher,
                 device: str = "auto") -> None:
        self.database, self.conf = database, conf
        self.matcher = get_matcher(conf["matcher"], device=device) if conf["matcher"] else default_matcher
        self._cache: dict[int, tuple[Features, np.ndarray]] = {}
        self.seconds = 0.0  # matching time of the last ``matches`` iteration
        # Candidate features (projected kept points / triangulated keypoints) are prepared once at
        # load, so query latency and memory stay flat from the first frame on.
        if len(database.candidate_ids) <= int(conf["precompute_candidates_max"]):
            for index in range(len(database.candidate_ids)):
                self.candidate(index)

    def candidate(self, index: int) -> tuple[Features, np.ndarray]:
        """(features of candidate ``index``, (N,) int64 map point id of each)."""
        if index not in self._cache:
            self._cache[index] = self.database.candidate_features(index)
        return self._cache[index]

    def matches(self, query: Features, indices: np.ndarray) -> Iterator[CandidateMatches]:
        """Correspondences with each candidate of ``indices`` (k,), in that order, computed on demand."""
        self.seconds = 0.0
        for index in indices:
            features, point_ids = self.candidate(int(index))
            t0 = time.perf_counter()
            matches = self.matcher.match(query, features)
            self.seconds += time.perf_counter() - t0
            q_idx = matches.indices[:, 0]
            p_idx = point_ids[matches.indices[:, 1]]
            valid = p_idx >= 0
            yield CandidateMatches(int(index), q_idx[valid], p_idx[valid])

