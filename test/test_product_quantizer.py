"""Product quantization of descriptors and the compact geometry of compressed maps: the math as
properties (nearest centroids, fixed-point error bound, packed ids), training on real XFeat
descriptors, and the shipped codebooks on a held-out real image pair."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from scenesqueezer_core.compression.product_quantizer_training import train_product_quantizer
from scenesqueezer_core.compression.quantizer_training import evaluate_descriptor_quantizer
from scenesqueezer_core.errors import ConfigError, MapFileError
from scenesqueezer_core.maps.descriptor_codes import load_descriptor_codec
from scenesqueezer_core.maps.packed_geometry import (
    XYZ_BLOCK_POINTS,
    XYZ_MAX_LEVEL,
    PackedPoints,
    dequantize_points,
    max_quantization_error,
    quantize_points,
    smallest_unsigned,
    spatial_order,
)
from scenesqueezer_core.maps.product_quantizer import ProductQuantizer, load_product_quantizer
from scenesqueezer_core.maps.scene_map import SceneMap


def _random_quantizer(seed: int, code_bytes: int, dim: int = 64) -> ProductQuantizer:
    rng = np.random.default_rng(seed)
    return ProductQuantizer(rng.normal(size=(code_bytes, 256, dim // code_bytes)).astype(np.float32) * 0.2)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), code_bytes=st.sampled_from([8, 16, 32]), count=st.integers(1, 40))
def test_encode_picks_the_nearest_centroid_of_every_subspace(seed, code_bytes, count):
    model = _random_quantizer(seed, code_bytes)
    rng = np.random.default_rng(seed + 1)
    descriptors = rng.normal(size=(count, 64)).astype(np.float32)
    codes = model.encode(descriptors)
    assert codes.dtype == np.uint8 and codes.shape == (count, code_bytes)
    unit = descriptors / np.linalg.norm(descriptors, axis=1, keepdims=True)
    sub = unit.reshape(count, code_bytes, -1)
    every = np.linalg.norm(sub[:, :, None, :] - model.codebooks[None], axis=3)  # (n, M, 256)
    chosen = np.take_along_axis(every, codes[:, :, None].astype(np.int64), axis=2)[..., 0]
    # the reconstruction error is the smallest any code of this codebook can give (per sub-space)
    assert np.all(chosen <= every.min(axis=2) + 1e-5)
    error = np.linalg.norm(model.reconstruct(codes) - unit, axis=1) ** 2
    assert np.allclose(error, (every.min(axis=2) ** 2).sum(axis=1), atol=1e-4)
    decoded = model.decode(codes)
    assert decoded.dtype == np.float32 and np.allclose(np.linalg.norm(decoded, axis=1), 1.0, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), code_bytes=st.sampled_from([8, 16, 32]))
def test_codes_of_codebook_vectors_come_back_exactly(seed, code_bytes):
    model = _random_quantizer(seed, code_bytes)
    codes = np.random.default_rng(seed).integers(0, 256, (20, code_bytes), dtype=np.uint8)
    vectors = model.reconstruct(codes)
    # encode sees the normalized vector; scaling every sub-space keeps its nearest centroid only when the
    # codebook is scale-free, so compare against normalized codebooks
    unit_model = ProductQuantizer(model.codebooks / np.linalg.norm(vectors, axis=1).max())
    scaled = unit_model.reconstruct(codes)
    norms = np.linalg.norm(scaled, axis=1)
    recovered = unit_model.encode(scaled)
    exact = np.isclose(norms, 1.0, atol=1e-6)
    assert np.array_equal(recovered[exact], codes[exact])
    assert np.array_equal(model.reconstruct(codes), model.codebooks[np.arange(code_bytes)[None], codes].reshape(20, 64))


@settings(max_examples=60, deadline=None)
@given(points=arrays(np.float64, st.tuples(st.integers(1, 700), st.just(3)),
                     elements=st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)),
       order=st.booleans())
def test_fixed_point_coordinates_stay_within_the_stated_bound(points, order):
    if order:
        points = points[spatial_order(points)]
    corner, step, fixed = quantize_points(points)
    assert fixed.dtype == np.uint16 and corner.dtype == step.dtype == np.float32
    assert corner.shape == step.shape == (-(-len(points) // XYZ_BLOCK_POINTS), 3)
    decoded = dequantize_points(corner, step, fixed)
    bound = max_quantization_error(corner, step, fixed)
    assert np.all(np.abs(decoded.astype(np.float64) - points) <= bound)
    # the bound is half a step of the block's extent / 65535, up to float32 rounding
    block_of = np.arange(len(points)) // XYZ_BLOCK_POINTS
    extent = np.zeros_like(corner, dtype=np.float64)
    magnitude = np.zeros_like(corner, dtype=np.float64)  # float32 rounding is relative to the block's coordinates
    for block in range(len(corner)):
        inside = points[block_of == block]
        extent[block] = inside.max(axis=0) - inside.min(axis=0)
        magnitude[block] = np.abs(inside).max(axis=0)
    slack = 4 * np.spacing(magnitude[block_of].astype(np.float32)).astype(np.float64)
    assert np.all(bound <= 0.5 * extent[block_of] / XYZ_MAX_LEVEL * (1 + 1e-5) + slack + 1e-30)


@settings(max_examples=40, deadline=None)
@given(points=arrays(np.float64, st.tuples(st.integers(1, 700), st.just(3)),
                     elements=st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)),
       data=st.data())
def test_packed_points_decode_exactly_the_rows_asked_for(points, data):
    """A loaded map's coordinates stay packed (PackedPoints); every way the stages index them gives
    the very values of decoding the whole array."""
    corner, step, fixed = quantize_points(points)
    packed, decoded = PackedPoints(corner, step, fixed), dequantize_points(corner, step, fixed)
    count = len(points)
    rows = np.asarray(data.draw(st.lists(st.integers(0, count - 1), max_size=50)), dtype=np.int64)
    mask = np.asarray(data.draw(st.lists(st.booleans(), min_size=count, max_size=count)), dtype=bool)
    start, stop = sorted(data.draw(st.tuples(st.integers(0, count), st.integers(0, count))))
    row = data.draw(st.integers(-count, count - 1))
    assert packed.shape == decoded.shape and len(packed) == count and packed.dtype == decoded.dtype
    assert np.array_equal(packed[rows], decoded[rows]) and packed[rows].shape == (len(rows), 3)
    assert np.array_equal(packed[mask], decoded[mask])
    assert np.array_equal(packed[start:stop], decoded[start:stop])
    assert np.array_equal(packed[row], decoded[row])
    assert np.array_equal(np.asarray(packed), decoded) and np.asarray(packed, dtype=np.float64).dtype == np.float64
    assert np.array_equal(packed[-rows - 1], decoded[-rows - 1])  # negative ids count from the end, as numpy's
    with pytest.raises(IndexError):
        packed[np.array([count])]
    with pytest.raises(TypeError, match="rows only"):
        packed[0, 1]


@given(values=arrays(np.int64, st.integers(0, 50), elements=st.integers(0, 2**33)))
def test_ids_pack_into_the_smallest_unsigned_dtype_losslessly(values):
    packed = smallest_unsigned(values)
    assert packed.dtype.kind == "u" and np.array_equal(packed.astype(np.int64), values)
    top = int(values.max()) if values.size else 0
    assert packed.dtype.itemsize == next(size for size, limit in ((1, 2**8), (2, 2**16), (4, 2**32), (8, 2**64))
                                         if top < limit)


def test_non_finite_points_are_refused():
    with pytest.raises(ValueError, match="not finite"):
        quantize_points(np.array([[0.0, np.nan, 1.0]]))


def _real_descriptors(small_street_map) -> np.ndarray:
    return np.asarray(SceneMap.load(small_street_map).descriptors, dtype=np.float32)


def test_training_on_real_descriptors_is_seeded_and_more_bytes_reconstruct_better(small_street_map):
    descriptors = _real_descriptors(small_street_map)[:6000]
    first = train_product_quantizer(descriptors, 8, features="xfeat", seed=3, iterations=8)
    again = train_product_quantizer(descriptors, 8, features="xfeat", seed=3, iterations=8)
    assert first.content_hash == again.content_hash
    wider = train_product_quantizer(descriptors, 16, features="xfeat", seed=3, iterations=8)
    unit = descriptors / np.linalg.norm(descriptors, axis=1, keepdims=True)
    cosine = {m.code_dim: float((m.decode(m.encode(descriptors)) * unit).sum(1).mean()) for m in (first, wider)}
    assert 0.8 < cosine[8] < cosine[16], cosine
    with pytest.raises(ConfigError, match="sub-spaces"):
        train_product_quantizer(descriptors, 7)


def test_codebook_file_round_trip_and_corruption(tmp_path):
    model = _random_quantizer(0, 16)
    path = model.to_safetensors(tmp_path / "pq.safetensors")
    loaded = ProductQuantizer.from_safetensors(path)
    assert loaded.content_hash == model.content_hash and np.array_equal(loaded.codebooks, model.codebooks)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # a flipped bit inside the codebooks
    path.write_bytes(bytes(data))
    with pytest.raises(MapFileError, match="corrupt"):
        ProductQuantizer.from_safetensors(path)
    with pytest.raises(MapFileError, match="train-quantizer"):
        load_product_quantizer("xfeat", 5)


def test_shipped_codebooks_keep_matches_on_a_held_out_real_pair():
    """Fountain-P11's two query images (never in the codebooks' training data): the share of raw/raw
    mutual-NN matches found again between the raw query and the decoded map. Measured 0.70 (pq16)
    and above 0.9 (pq32) when the codebooks were trained; more bytes agree more, DSQ (64 B) most."""
    from conftest import SHARED_DATA
    from scenesqueezer_core.compression.train_quantizer import consecutive_pairs, extract_features

    folder = SHARED_DATA / "strecha_fountain_p11"
    if not folder.is_dir():
        pytest.skip(f"shared data {folder} is not here")
    (_, f0, f1), = consecutive_pairs(extract_features(folder, "xfeat", "query"))
    agreement = {codes: evaluate_descriptor_quantizer(load_descriptor_codec("xfeat", codes), f0.descriptors,
                                                      f1.descriptors)["mnn_agreement_map"]
                 for codes in ["pq8", "pq16", "pq32", "dsq"]}
    assert agreement["pq8"] < agreement["pq16"] < agreement["pq32"] < agreement["dsq"] + 0.02, agreement
    assert agreement["pq32"] >= 0.85 and agreement["pq16"] >= 0.6 and agreement["pq8"] >= 0.3, agreement
