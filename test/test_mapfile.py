"""The map container refuses every kind of damaged file with one clear MapFileError."""

import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scenesqueezer_core.errors import MapFileError
from scenesqueezer_core.maps.compressed_map import CompressedMap
from scenesqueezer_core.maps.global_model import load_global_model
from scenesqueezer_core.maps.mapfile import read_map_file, write_map_file
from scenesqueezer_core.maps.quantizer import load_descriptor_quantizer
from scenesqueezer_core.types import Camera


@pytest.fixture()
def good_map(tmp_path):
    arrays = {"xyz": np.arange(30, dtype=np.float64).reshape(10, 3), "codes": np.arange(64, dtype=np.uint8).reshape(8, 8)}
    return write_map_file(tmp_path / "m.ssmap", "scene_map", {"feature_setup": "xfeat"}, arrays), arrays


def test_roundtrip_memory_mapped(good_map):
    path, arrays = good_map
    c = read_map_file(path, expected_kind="scene_map")
    assert c.meta == {"feature_setup": "xfeat"} and c.version == 1
    for k, v in arrays.items():
        assert np.array_equal(c.arrays[k], v) and c.arrays[k].dtype == v.dtype
    assert isinstance(c.arrays["xyz"].base, np.memmap) or isinstance(c.arrays["xyz"], np.memmap)


def test_missing_and_directory(tmp_path):
    with pytest.raises(MapFileError, match="does not exist"):
        read_map_file(tmp_path / "nope.ssmap")
    with pytest.raises(MapFileError, match="directory"):
        read_map_file(tmp_path)


def test_truncated(good_map):
    path, _ = good_map
    data = path.read_bytes()
    for cut in (0, 4, 20, len(data) - 10):
        path.write_bytes(data[:cut])
        with pytest.raises(MapFileError):
            read_map_file(path)


def test_bit_flip_detected_by_checksum(good_map):
    path, _ = good_map
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(MapFileError, match="checksum"):
        read_map_file(path)


def _rewrite_header(path, mutate):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    mutate(header)
    raw = json.dumps(header).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    # keep the data section where its offsets expect it
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])


def test_wrong_version_kind_and_foreign(good_map, tmp_path):
    path, _ = good_map
    _rewrite_header(path, lambda h: h["__metadata__"].update(version="99"))
    with pytest.raises(MapFileError, match="version 99"):
        read_map_file(path)
    _rewrite_header(path, lambda h: h["__metadata__"].update(version="1", kind="compressed_map"))
    with pytest.raises(MapFileError, match="expected a 'scene_map'"):
        read_map_file(path, expected_kind="scene_map")
    _rewrite_header(path, lambda h: h["__metadata__"].update(format="other"))
    with pytest.raises(MapFileError, match="not a SceneSqueezer map"):
        read_map_file(path)


def test_absurd_sizes_refused_without_allocating(good_map):
    path, _ = good_map
    _rewrite_header(path, lambda h: h["xyz"].update(shape=[10**12, 3]))
    with pytest.raises(MapFileError, match="outside the file|inconsistent"):
        read_map_file(path)
    path.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    with pytest.raises(MapFileError, match="truncated|corrupt"):
        read_map_file(path)


def test_pickle_is_never_loaded(tmp_path):
    import pickle

    path = tmp_path / "evil.ssmap"
    path.write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(MapFileError):
        read_map_file(path)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=400))
def test_fuzz_random_bytes_never_crash(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("fuzz") / "f.ssmap"
    path.write_bytes(blob)
    with pytest.raises(MapFileError):
        read_map_file(path)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=255))
def test_fuzz_byte_flips_of_a_real_map(tmp_path_factory, position, value):
    path = tmp_path_factory.mktemp("flip") / "m.ssmap"
    write_map_file(path, "scene_map", {"a": 1}, {"x": np.arange(40, dtype=np.float32)})
    data = bytearray(path.read_bytes())
    pos = position % len(data)
    if data[pos] == value:
        return
    data[pos] = value
    path.write_bytes(bytes(data))
    try:
        c = read_map_file(path)
    except MapFileError:
        return
    # a flip inside the JSON header whitespace or an unused manifest field may still be readable,
    # but then the arrays must be exactly the written ones (checksums)
    assert np.array_equal(c.arrays["x"], np.arange(40, dtype=np.float32))


def test_no_partial_file_on_failure(tmp_path):
    bad = {"x": np.array([object()], dtype=object)}
    with pytest.raises(TypeError):
        write_map_file(tmp_path / "m.ssmap", "scene_map", {}, bad)
    assert list(tmp_path.iterdir()) == []


# --- structure-aware fuzzing of a whole CompressedMap: every array replaced by random content ----
# The container's checksums are recomputed for the mutated arrays, so only the semantic checks of
# CompressedMap.load (shapes, dtypes, offsets, ids, finiteness, model hashes) stand in the way.

def _tiny_compressed_map():
    descriptor_model = load_descriptor_quantizer("xfeat")
    _, global_model = load_global_model("xfeat")
    rng = np.random.default_rng(0)
    c, p = 3, 12
    return CompressedMap(
        feature_setup="xfeat", cameras=[Camera.pinhole(300, 300, 160, 120, 320, 240)] * c,
        cluster_rotations=np.stack([np.eye(3)] * c), cluster_translations=np.zeros((c, 3)),
        cluster_global_codes=rng.integers(0, 256, (c, global_model.code_dim), dtype=np.uint8),
        cluster_point_offsets=np.array([0, 4, 8, 12], np.int64), cluster_point_ids=np.arange(12, dtype=np.int32),
        points_xyz=rng.normal(size=(p, 3)).astype(np.float32) + [0, 0, 5],
        points_codes=rng.integers(0, 256, (p, descriptor_model.code_dim), dtype=np.uint8),
        points_color=rng.integers(0, 256, (p, 3), dtype=np.uint8),
        cluster_frame_offsets=np.array([0, 1, 3, 4], np.int64), cluster_frame_centers=np.zeros((4, 3), np.float32),
        points_multiview_bits=np.packbits(np.arange(p) % 3 == 0),
        info={"models": {"descriptor_features": "xfeat", "descriptor_hash": descriptor_model.content_hash,
                         "global_features": "xfeat", "global_hash": global_model.content_hash}},
    )


_ARRAY_STRATEGY = st.tuples(
    st.sampled_from([np.uint8, np.int32, np.int64, np.float32, np.float64]),
    st.lists(st.integers(0, 5), min_size=0, max_size=3),
    st.sampled_from(["zeros", "ones", "negative", "huge", "nan", "random"]),
)


def _make_array(dtype, shape, fill, rng):
    shape = tuple(shape)
    values = {"zeros": 0, "ones": 1, "negative": -3, "huge": 2**31 - 1, "nan": np.nan, "random": None}[fill]
    if values is None:
        return rng.integers(-5, 300, size=shape).astype(dtype)
    if fill == "nan" and not np.issubdtype(dtype, np.floating):
        values = 7
    return np.full(shape, values).astype(dtype)


@settings(max_examples=80, deadline=None)
@given(name=st.sampled_from(["cluster_rotations", "cluster_translations", "cluster_global_codes",
                             "cluster_point_offsets", "cluster_point_ids", "points_xyz_block_corner",
                             "points_xyz_block_step", "points_xyz_fixed", "points_codes",
                             "points_color", "cluster_frame_offsets", "cluster_frame_centers",
                             "points_multiview_bits"]),
       spec=_ARRAY_STRATEGY, seed=st.integers(0, 2**16))
def test_fuzz_compressed_map_arrays_fail_cleanly(tmp_path_factory, name, spec, seed):
    """Every array of the file (as CompressedMap.save lays it out) replaced by random content."""
    cmap = _tiny_compressed_map()
    arrays = cmap.file_arrays()
    arrays[name] = _make_array(*spec, np.random.default_rng(seed))
    path = tmp_path_factory.mktemp("cfuzz") / "m.sqz"
    try:
        write_map_file(path, "compressed_map", cmap._manifest(), arrays)
    except (TypeError, ValueError):  # numpy / safetensors refuse some arrays before anything is written
        assert not path.exists()
        return
    try:
        loaded = CompressedMap.load(path)
    except MapFileError as exc:
        assert str(exc) and "\n" not in str(exc).strip()
        return
    # accepted: then everything the localizer touches must be usable
    for cluster in range(loaded.num_clusters):
        ids = loaded.cluster_points(cluster)
        assert ids.size == 0 or (ids.min() >= 0 and ids.max() < len(loaded.points_xyz))
        assert np.all(np.isfinite(loaded.candidate_centers(cluster)))
        assert np.all(np.isfinite(loaded.candidate_features(cluster)[0].descriptors))
    assert np.all(np.isfinite(loaded.points_xyz))


@settings(max_examples=40, deadline=None)
@given(key=st.sampled_from(["feature_setup", "cameras", "info", "models"]),
       value=st.one_of(st.none(), st.integers(-2, 2), st.text(max_size=8), st.lists(st.integers(0, 3), max_size=3),
                       st.dictionaries(st.text(max_size=4), st.integers(0, 3), max_size=2)))
def test_fuzz_compressed_map_manifest_fails_cleanly(tmp_path_factory, key, value):
    path = tmp_path_factory.mktemp("mfuzz") / "m.sqz"
    _tiny_compressed_map().save(path)

    def mutate(header):
        meta = json.loads(header["__metadata__"]["meta"]) if "meta" in header["__metadata__"] else None
        assert meta is not None, "the manifest layout changed; update this test"
        if key == "models":
            meta["info"]["models"] = value
        else:
            meta[key] = value
        header["__metadata__"]["meta"] = json.dumps(meta)

    _rewrite_header(path, mutate)
    try:
        CompressedMap.load(path)
    except MapFileError:
        return
    pytest.fail(f"a manifest with {key} = {value!r} was accepted")


def test_compressed_map_without_frame_centres_falls_back_to_the_representative(tmp_path):
    cmap = _tiny_compressed_map()
    cmap.cluster_rotations = cmap.cluster_rotations.copy()
    cmap.cluster_translations = np.array([[0.0, 0, 0], [1, 2, 3], [0, 0, -4]])
    cmap.cluster_frame_offsets = cmap.cluster_frame_centers = None  # as written before these arrays existed
    loaded = CompressedMap.load(cmap.save(tmp_path / "old.sqz"))
    assert loaded.cluster_frame_centers is None
    assert np.allclose(loaded.candidate_centers(1), [[-1, -2, -3]])  # centre = -R^T t with R = I

    cmap = _tiny_compressed_map()
    cmap.cluster_frame_centers = None  # one of the pair alone is a damaged file
    cmap.save(tmp_path / "half.sqz")
    with pytest.raises(MapFileError, match="only one of"):
        CompressedMap.load(tmp_path / "half.sqz")
    full = CompressedMap.load(_tiny_compressed_map().save(tmp_path / "new.sqz"))
    assert [len(full.candidate_centers(i)) for i in range(3)] == [1, 2, 1]


def test_compressed_map_multiview_bits_round_trip_and_fallback(tmp_path):
    """The multi-view flags (trusted occluders) survive the file; a map written before them has none,
    so the localizer's occlusion check finds no occluders instead of trusting every point."""

    loaded = CompressedMap.load(_tiny_compressed_map().save(tmp_path / "new.sqz"))
    assert np.array_equal(loaded.points_multiview, np.arange(12) % 3 == 0)
    old = _tiny_compressed_map()
    old.points_multiview_bits = None
    loaded = CompressedMap.load(old.save(tmp_path / "old.sqz"))
    assert loaded.points_multiview.shape == (12,) and not loaded.points_multiview.any()
    wrong = _tiny_compressed_map()
    wrong.points_multiview_bits = np.zeros(1, np.uint8)  # 8 flags for 12 points
    with pytest.raises(MapFileError, match="points_multiview_bits"):
        CompressedMap.load(wrong.save(tmp_path / "short.sqz"))
