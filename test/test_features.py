"""Feature extractors and matchers: offline loading, real two-view geometry, pixel convention, confs.

Everything runs on the CPU with the real packaged weights. Models are built once per module.
"""

from __future__ import annotations

import socket

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import cKDTree

from conftest import SHARED_DATA
from scenesqueezer_core.dataset import load_dataset, read_image
from scenesqueezer_core.errors import ConfigError, ImageError
from scenesqueezer_core.features import (
    EXTRACTORS,
    FEATURE_SETUPS,
    MATCHERS,
    Features,
    MutualNearestNeighbor,
    get_extractor,
    get_matcher,
    load_feature_setup,
)
from scenesqueezer_core.types import Camera, Pose

torch.set_num_threads(2)

# Neighbouring views of both scenes, downscaled to 640 px wide (intrinsics scaled to match).
PAIRS = [
    ("strecha_fountain_p11", "0004.jpg", "0005.jpg"),
    ("strecha_castle_p30", "0008.jpg", "0009.jpg"),
]
TEST_WIDTH = 640


def _load_view(scene: str, name: str) -> tuple[np.ndarray, Camera, Pose]:
    frame = load_dataset(SHARED_DATA / scene).frames[name]
    image = read_image(frame.image_path)
    height = round(image.shape[0] * TEST_WIDTH / image.shape[1])
    image = cv2.resize(image, (TEST_WIDTH, height), interpolation=cv2.INTER_AREA)
    camera = frame.camera.scaled(TEST_WIDTH / frame.camera.width, height / frame.camera.height)
    return image, camera, frame.cam_from_world


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def fundamental_from_poses(camera0: Camera, pose0: Pose, camera1: Camera, pose1: Pose) -> np.ndarray:
    """(3, 3) F with x1^T F x0 = 0 for COLMAP-convention pixels x0 in view 0 and x1 in view 1."""
    relative = pose1 @ pose0.inverse()
    essential = _skew(relative.t) @ relative.R
    return np.linalg.inv(camera1.K).T @ essential @ np.linalg.inv(camera0.K)


def symmetric_epipolar_error(points0: np.ndarray, points1: np.ndarray, F: np.ndarray) -> np.ndarray:
    """(N,) mean distance in pixels of each point to the epipolar line of its partner, both ways."""
    x0 = np.c_[points0, np.ones(len(points0))]
    x1 = np.c_[points1, np.ones(len(points1))]
    lines1, lines0 = x0 @ F.T, x1 @ F
    residual = np.abs(np.sum(x1 * lines1, axis=1))
    return 0.5 * (residual / np.hypot(*lines1[:, :2].T) + residual / np.hypot(*lines0[:, :2].T))


@pytest.fixture(scope="module")
def views():
    return {pair: (_load_view(pair[0], pair[1]), _load_view(pair[0], pair[2])) for pair in PAIRS}


@pytest.fixture(scope="module")
def extracted(views):
    """Features of every test view, per extractor name + conf of the setups (each extracted once)."""
    cache: dict[tuple, tuple[Features, Features]] = {}

    def get(setup: str, pair: tuple) -> tuple[Features, Features]:
        name, conf = FEATURE_SETUPS[setup]["extractor"]
        key = (name, tuple(sorted(conf.items())), pair)
        if key not in cache:
            extractor = get_extractor(name, conf, device="cpu")
            (image0, *_), (image1, *_) = views[pair]
            cache[key] = tuple(extractor.extract_batch([image0, image1]))
        return cache[key]

    return get


# ---------------------------------------------------------------- offline loading


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted during an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_network_guard_blocks_connections(no_network):
    with pytest.raises(OSError, match="network access"):
        socket.create_connection(("127.0.0.1", 9))
    with socket.socket() as sock, pytest.raises(OSError, match="network access"):
        sock.connect(("127.0.0.1", 9))


def test_every_model_loads_and_runs_offline(no_network, views):
    """Fresh instances (not the per-process cache) so that the weights really load under the guard."""
    (image, *_), _ = views[PAIRS[0]]
    small = np.ascontiguousarray(image[:256, :320])
    features = {}
    for name, cls in EXTRACTORS.items():
        extractor = cls({"max_keypoints": 256}, device="cpu")
        features[name] = extractor.extract(small)
        assert 20 <= len(features[name]) <= 256, name
        assert features[name].descriptors.shape[1] == extractor.descriptor_dim
    pairs = {"mnn": "sift", "lightglue": "aliked", "lighterglue": "xfeat"}
    assert set(pairs) == set(MATCHERS)
    for name, extractor_name in pairs.items():
        f = features[extractor_name]
        matches = MATCHERS[name](device="cpu").match(f, f)
        # an image matched with itself: most keypoints match themselves
        assert len(matches) > 0.5 * len(f), name
        assert np.mean(matches.indices[:, 0] == matches.indices[:, 1]) > 0.9, name


# ---------------------------------------------------------------- real geometry


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: f"{p[0]}-{p[1][:4]}-{p[2][:4]}")
@pytest.mark.parametrize("setup", sorted(FEATURE_SETUPS))
def test_setup_matches_satisfy_ground_truth_epipolar_geometry(setup, pair, views, extracted):
    if setup in ("aliked", "xfeat-lighterglue") and pair != PAIRS[0]:
        pytest.skip("the learned matchers run on one pair only, to keep the CPU test time low")
    _, matcher = load_feature_setup(setup, device="cpu")
    (_, camera0, pose0), (_, camera1, pose1) = views[pair]
    features0, features1 = extracted(setup, pair)
    matches = matcher.match(features0, features1)
    F = fundamental_from_poses(camera0, pose0, camera1, pose1)
    errors = symmetric_epipolar_error(
        features0.keypoints[matches.indices[:, 0]], features1.keypoints[matches.indices[:, 1]], F
    )
    print(f"{setup} {pair}: {len(matches)} matches, median epipolar error {np.median(errors):.3f} px")
    assert len(matches) >= 150
    assert np.median(errors) < 2.0
    assert np.mean(errors < 4.0) > 0.7
    # the metric can fail: the same keypoints paired at random violate the geometry
    shuffled = np.random.default_rng(0).permutation(len(matches))
    random_errors = symmetric_epipolar_error(
        features0.keypoints[matches.indices[:, 0]], features1.keypoints[matches.indices[shuffled, 1]], F
    )
    assert np.median(random_errors) > 10.0


@pytest.mark.parametrize("name", sorted(EXTRACTORS))
def test_features_have_documented_shapes_and_types(name, extracted):
    setup = {"xfeat": "xfeat", "aliked": "aliked", "sift": "sift"}[name]
    features, _ = extracted(setup, PAIRS[0])
    width, height = features.image_size
    assert (width, height) == (TEST_WIDTH, 427)
    n = len(features)
    assert 200 < n <= FEATURE_SETUPS[setup]["extractor"][1]["max_keypoints"]
    assert features.keypoints.shape == (n, 2) and features.keypoints.dtype == np.float32
    assert features.scores.shape == (n,) and features.scores.dtype == np.float32
    assert features.descriptors.shape == (n, EXTRACTORS[name].descriptor_dim)
    assert features.descriptors.dtype == np.float32
    assert np.allclose(np.linalg.norm(features.descriptors, axis=1), 1, atol=1e-4)
    assert np.all((features.keypoints >= 0) & (features.keypoints <= [width, height]))


# ---------------------------------------------------------------- pixel convention


def _blob_image(centres: np.ndarray, width: int, height: int, sigma: float = 3.0) -> np.ndarray:
    """(H, W, 3) uint8: bright Gaussian blobs whose centres are given in COLMAP pixel coordinates."""
    ys, xs = np.mgrid[0:height, 0:width] + 0.5  # COLMAP coordinates of pixel centres
    image = np.full((height, width), 40.0)
    for cx, cy in centres:
        image += 180 * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
    return np.repeat(np.clip(image, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_sift_finds_blobs_at_their_subpixel_centres(seed):
    """Absolute test of the COLMAP convention: a 0.5 px (convention) or 0.25 px (upscaling) slip fails it."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(np.arange(40, 300, 40), np.arange(40, 220, 40)), -1).reshape(-1, 2)
    centres = grid + rng.uniform(-0.5, 0.5, grid.shape)
    features = get_extractor("sift", {"max_keypoints": 1024}, "cpu").extract(_blob_image(centres, 320, 240))
    distance, _ = cKDTree(features.keypoints).query(centres)
    assert np.all(distance < 0.2)
    assert np.median(distance) < 0.05


def test_sift_keypoints_are_mirror_consistent(views):
    """x -> W - x maps a mirrored image's keypoints onto the original's exactly in COLMAP coordinates."""
    (image, *_), _ = views[PAIRS[0]]
    image = np.ascontiguousarray(image[:416])
    width = image.shape[1]
    extractor = get_extractor("sift", {"max_keypoints": 1024}, "cpu")
    original, mirrored = extractor.extract_batch([image, np.ascontiguousarray(image[:, ::-1])])
    mapped = np.c_[width - mirrored.keypoints[:, 0], mirrored.keypoints[:, 1]]
    distance, index = cKDTree(mapped).query(original.keypoints)
    close = distance < 1.0
    assert close.mean() > 0.8
    assert np.abs(np.median(mapped[index[close]] - original.keypoints[close], axis=0)).max() < 0.05


def test_learned_extractors_shift_library_keypoints_to_colmap_convention(views):
    """XFeat/ALIKED detect on learned (not sub-pixel exact) maps, so pin the documented boundary shift.

    The 656 x 420 image is not a multiple of 32: XFeat resizes it, so its shift is half a resized pixel.
    """
    (image, *_), _ = views[PAIRS[0]]
    image = np.ascontiguousarray(cv2.resize(image, (656, 420), interpolation=cv2.INTER_AREA))
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255

    xfeat = get_extractor("xfeat", {"max_keypoints": 512}, "cpu")
    raw = xfeat.model.detectAndCompute(tensor)[0]["keypoints"].numpy()
    ours = xfeat.extract(image).keypoints
    np.testing.assert_allclose(ours, raw + 0.5 * np.array([656 / 640, 420 / 416]), atol=1e-4)

    aliked = get_extractor("aliked", {"max_keypoints": 512, "model_name": "aliked-t16"}, "cpu")
    with torch.inference_mode():
        raw = aliked.model(tensor)[0].keypoints.numpy()
    np.testing.assert_allclose(aliked.extract(image).keypoints, raw + 0.5, atol=1e-4)


# ---------------------------------------------------------------- matchers


@st.composite
def descriptor_sets(draw):
    """A query set and up to 4 other sets of unit descriptors, some with planted exact correspondences."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    dim = draw(st.sampled_from([8, 64]))
    n_query = draw(st.integers(0, 40))

    def unit(n):
        d = rng.normal(size=(n, dim)).astype(np.float32)
        return d / np.linalg.norm(d, axis=1, keepdims=True)

    def features(descriptors):
        n = len(descriptors)
        return Features(rng.uniform(0, 100, (n, 2)).astype(np.float32), np.ones(n, np.float32), descriptors, (100, 100))

    query_desc = unit(n_query)
    others = []
    for _ in range(draw(st.integers(1, 4))):
        n_other = draw(st.integers(0, 50))
        desc = unit(n_other)
        n_planted = min(n_query, n_other, draw(st.integers(0, 20)))
        desc[:n_planted] = query_desc[:n_planted]
        others.append(features(rng.permutation(desc)))
    return features(query_desc), others


@settings(max_examples=40, deadline=None)
@given(descriptor_sets(), st.sampled_from([None, 0.8]), st.sampled_from([None, 0.5]))
def test_mnn_batched_equals_pairwise_and_is_mutual(data, ratio, min_similarity):
    query, others = data
    matcher = get_matcher("mnn", {"ratio_threshold": ratio, "min_similarity": min_similarity}, "cpu")
    batched = matcher.match_many(query, others)
    assert len(batched) == len(others)
    for other, together in zip(others, batched):
        alone = matcher.match(query, other)
        np.testing.assert_array_equal(together.indices, alone.indices)
        np.testing.assert_allclose(together.scores, alone.scores, atol=1e-6)
        if len(alone) == 0:
            continue
        # one-to-one, and each pair is the nearest neighbour both ways
        assert len(np.unique(alone.indices[:, 0])) == len(alone) == len(np.unique(alone.indices[:, 1]))
        similarity = query.descriptors @ other.descriptors.T
        assert np.all(similarity[alone.indices[:, 0]].max(1) <= alone.scores + 1e-5)
        assert np.all(similarity[:, alone.indices[:, 1]].max(0) <= alone.scores + 1e-5)
        if min_similarity is not None:
            assert np.all(alone.scores >= min_similarity)
        # planted identical descriptors are always found (similarity 1, ratio 0)
        planted = np.flatnonzero(np.isclose(similarity.max(1), 1, atol=1e-5))
        assert set(planted) <= set(alone.indices[:, 0])


def reference_mnn(query: np.ndarray, other: np.ndarray, ratio: float | None, min_similarity: float | None) -> np.ndarray:
    """The documented mnn rule in plain numpy, one set at a time: (M, 2) (query, feature) pairs.

    A feature's best query is the first with the highest similarity; feature p matches query q when
    q is p's best query and no feature of the set is more similar to q (ties: the first such p).
    """
    if len(query) == 0 or len(other) == 0:
        return np.zeros((0, 2), np.int64)
    similarity = other.astype(np.float32) @ query.astype(np.float32).T  # (N, Nq)
    best_query = similarity.argmax(1)
    pairs = []
    for q in range(len(query)):
        column = similarity[:, q]
        tied = np.flatnonzero((best_query == q) & (column == column.max()))
        if len(tied) == 0:
            continue
        p = tied[0]
        score = column[p]
        if ratio is not None and len(other) > 1:
            second = np.delete(column, p).max()
            best_distance = np.sqrt(max(2 - 2 * score, 0))
            if not best_distance < ratio * np.sqrt(max(2 - 2 * second, 0)):
                continue
        if min_similarity is not None and score < min_similarity:
            continue
        pairs.append((q, p))
    return np.array(pairs, np.int64).reshape(-1, 2)


def plain_features(descriptors: np.ndarray) -> Features:
    n = len(descriptors)
    return Features(np.zeros((n, 2), np.float32), np.ones(n, np.float32), descriptors, (100, 100))


@st.composite
def shared_descriptor_sets(draw):
    """A query and up to 5 sets drawn from one pool of keyed descriptors, so that sets share features
    (as a compressed map's clusters share points). Descriptors are small multiples of 1/8: every dot
    product is exact in float32, and ties (equal descriptors, equal products) are frequent."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    dim = draw(st.sampled_from([4, 8]))
    pool = rng.integers(-2, 3, size=(draw(st.integers(1, 60)), dim)).astype(np.float32) / 8
    query = rng.integers(-2, 3, size=(draw(st.integers(0, 30)), dim)).astype(np.float32) / 8
    n_planted = min(len(query), len(pool), draw(st.integers(0, 10)))
    pool[:n_planted] = query[:n_planted]
    keys = []
    for _ in range(draw(st.integers(1, 5))):
        keys.append(rng.permutation(len(pool))[: draw(st.integers(0, len(pool)))].astype(np.int64))
    return query, pool, keys


@settings(max_examples=60, deadline=None)
@given(shared_descriptor_sets(), st.sampled_from([None, 0.8]), st.sampled_from([None, 0.1]))
def test_mnn_one_pass_equals_the_rule_set_by_set(data, ratio, min_similarity):
    """match_many over all sets at once (with and without shared keys) = the rule applied to each set alone."""
    query_desc, pool, keys = data
    matcher = get_matcher("mnn", {"ratio_threshold": ratio, "min_similarity": min_similarity}, "cpu")
    query, others = plain_features(query_desc), [plain_features(pool[k]) for k in keys]
    shared = matcher.match_many(query, others, keys)
    separate = matcher.match_many(query, others)
    assert len(shared) == len(separate) == len(others)
    for other, together, alone in zip(others, shared, separate):
        expected = reference_mnn(query.descriptors, other.descriptors, ratio, min_similarity)
        np.testing.assert_array_equal(together.indices, expected)
        np.testing.assert_array_equal(alone.indices, expected)
        np.testing.assert_array_equal(matcher.match(query, other).indices, expected)
        np.testing.assert_array_equal(together.scores, (query.descriptors[expected[:, 0]]
                                                        * other.descriptors[expected[:, 1]]).sum(1))


def test_mnn_batches_that_overflow_one_pass_give_the_same_matches():
    rng = np.random.default_rng(3)
    unit = rng.normal(size=(300, 16)).astype(np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    query = plain_features(unit[:100])
    others = [plain_features(unit[rng.permutation(300)[:n]]) for n in (50, 120, 0, 80)]
    matcher = MutualNearestNeighbor({"min_similarity": 0.5}, "cpu")
    whole = matcher.match_many(query, others)
    small = MutualNearestNeighbor({"min_similarity": 0.5}, "cpu")
    small.max_batch_elements = 100 * 130  # one set per pass at most (plus the empty one)
    for a, b in zip(whole, small.match_many(query, others)):
        np.testing.assert_array_equal(a.indices, b.indices)
    assert sum(len(m) for m in whole) > 100  # the planted copies at least


@pytest.mark.parametrize("setup", ["xfeat", "sift"])
def test_mnn_one_pass_on_real_descriptors(setup, extracted):
    """Real features of two photographs: the second image's features split into overlapping sets
    (shared keys) and matched in one pass give the plain per-set mutual nearest neighbours."""
    query, other = extracted(setup, PAIRS[0])
    _, matcher = load_feature_setup(setup, device="cpu")
    rng = np.random.default_rng(0)
    keys = [np.sort(rng.permutation(len(other))[: len(other) // 2]) for _ in range(4)]
    sets = [other.subset(k) for k in keys]
    batched = matcher.match_many(query, sets, keys)
    total = 0
    for features, matches in zip(sets, batched):
        expected = reference_mnn(query.descriptors, features.descriptors, matcher.conf["ratio_threshold"],
                                 matcher.conf["min_similarity"])
        np.testing.assert_array_equal(matches.indices, expected)
        total += len(matches)
    assert total > 200


def test_mnn_ratio_test_keeps_a_subset():
    rng = np.random.default_rng(1)
    desc = rng.normal(size=(300, 32)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    noisy = desc + rng.normal(size=desc.shape).astype(np.float32) / np.sqrt(32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    f0 = Features(np.zeros((300, 2), np.float32), np.ones(300, np.float32), desc, (10, 10))
    f1 = Features(np.zeros((300, 2), np.float32), np.ones(300, np.float32), noisy, (10, 10))
    plain = get_matcher("mnn", {}, "cpu").match(f0, f1)
    strict = get_matcher("mnn", {"ratio_threshold": 0.7}, "cpu").match(f0, f1)
    assert 0 < len(strict) < len(plain)
    assert {tuple(r) for r in strict.indices} <= {tuple(r) for r in plain.indices}


@pytest.mark.parametrize("setup", ["aliked", "xfeat-lighterglue"])
def test_learned_matcher_takes_projected_points_outside_the_image(setup, extracted):
    """Map points projected into a frame can fall outside it: they are skipped, indices stay correct."""
    _, matcher = load_feature_setup(setup, device="cpu")
    features0, features1 = extracted(setup, PAIRS[0])
    features0 = features0.subset(np.arange(400))  # keep the test fast
    features1 = features1.subset(np.arange(400))
    reference = matcher.match(features0, features1)
    width, height = features1.image_size
    outside = np.array([[-5, 10], [width + 3, 10], [10, height + 1], [np.nan, 4]], np.float32)
    # "projected" set: no image, unit scores, extra points outside, shuffled order
    order = np.random.default_rng(0).permutation(len(features1) + len(outside))
    projected = Features(
        np.r_[features1.keypoints, outside][order],
        np.ones(len(order), np.float32),
        np.r_[features1.descriptors, features1.descriptors[:4]][order],
        features1.image_size,
    )
    [matches] = matcher.match_many(features0, [projected])
    assert np.all(order[matches.indices[:, 1]] < len(features1))  # never an outside point
    restored = np.c_[matches.indices[:, 0], order[matches.indices[:, 1]]]
    overlap = {tuple(r) for r in restored} & {tuple(r) for r in reference.indices}
    assert len(overlap) > 0.8 * len(reference) > 50


def test_matchers_reject_mismatched_descriptors(extracted):
    xfeat0, _ = extracted("xfeat", PAIRS[0])
    sift0, _ = extracted("sift", PAIRS[0])
    with pytest.raises(ConfigError, match="64-d descriptors with 128-d"):
        get_matcher("mnn", device="cpu").match(xfeat0, sift0)
    with pytest.raises(ConfigError, match="takes 128-d descriptors"):
        get_matcher("lightglue", device="cpu").match(xfeat0, xfeat0)


# ---------------------------------------------------------------- registry and confs


def test_models_are_cached_per_name_conf_and_device():
    a = get_extractor("sift", {"max_keypoints": 100, "root": True}, "cpu")
    assert get_extractor("sift", {"root": True, "max_keypoints": 100}, "cpu") is a
    assert get_extractor("sift", {"max_keypoints": 101}, "cpu") is not a
    extractor, matcher = load_feature_setup("xfeat", "cpu")
    assert load_feature_setup("xfeat", "cpu") == (extractor, matcher)


def test_unknown_names_and_options_raise_config_error():
    with pytest.raises(ConfigError, match="unknown feature setup 'superpoint'.*aliked, sift, xfeat"):
        load_feature_setup("superpoint")
    with pytest.raises(ConfigError, match="unknown extractor 'orb'.*aliked, sift, xfeat"):
        get_extractor("orb")
    with pytest.raises(ConfigError, match="unknown matcher 'superglue'.*lighterglue, lightglue, mnn"):
        get_matcher("superglue")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['top_k'\]"):
        get_extractor("xfeat", {"top_k": 10}, "cpu")
    with pytest.raises(ConfigError, match="unknown option"):
        get_matcher("lightglue", {"min_conf": 0.2}, "cpu")
    with pytest.raises(ConfigError, match="model_name"):
        get_extractor("aliked", {"model_name": "aliked-x99"}, "cpu")
    with pytest.raises(ConfigError, match="ratio_threshold"):
        get_matcher("mnn", {"ratio_threshold": 1.5}, "cpu")
    with pytest.raises(ConfigError, match="max_keypoints"):
        get_extractor("sift", {"max_keypoints": 0}, "cpu")


@pytest.mark.parametrize("bad", [np.zeros((64, 64), np.uint8), np.zeros((64, 64, 3), np.float32), "image.png"])
def test_bad_images_raise_image_error(bad):
    with pytest.raises(ImageError):
        get_extractor("sift", device="cpu").extract(bad)
