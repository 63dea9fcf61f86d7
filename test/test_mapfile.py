"""The map container refuses every kind of damaged file with one clear MapFileError."""

import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scenesqueezer_core.errors import MapFileError
from scenesqueezer_core.mapfile import read_map_file, write_map_file


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
