"""The on-disk container of every map: a safetensors file with a versioned, checksummed manifest.

Why safetensors: it holds raw little-endian arrays behind a JSON header, so loading executes no
code (no pickle), arrays can be memory-mapped in place, and the format is readable by many tools.
We write with the ``safetensors`` library and read the header ourselves so that we can bound every
size before allocating, verify per-array CRC32 checksums, and hand out ``np.memmap`` views.

Manifest (``__metadata__`` of the header, all strings)::

    format      "scenesqueezer"
    kind        "scene_map" | "compressed_map"
    version     integer as string: the layout of the kind's arrays (FORMAT_VERSIONS[kind])
    checksums   JSON {array name: crc32}
    meta        JSON object (feature setup, cameras, config, ...)
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..errors import MapFileError

FORMAT_NAME = "scenesqueezer"
# The newest layout of each kind's arrays; a reader reads every version from 1 up to it.
# compressed_map 2: fixed-point coordinates, packed ids, optional colours, product-quantized codes.
FORMAT_VERSIONS = {"scene_map": 1, "compressed_map": 2}
MAX_HEADER_BYTES = 64 * 1024 * 1024  # a map's manifest is kilobytes; refuse absurd headers
_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U8": np.uint8, "U16": np.uint16, "U32": np.uint32, "U64": np.uint64,
    "BOOL": np.bool_,
}


@dataclass
class MapContainer:
    kind: str
    version: int
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]
    path: Path | None = None

    @property
    def file_bytes(self) -> int:
        return self.path.stat().st_size if self.path else 0


def _crc(array: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(array).view(np.uint8).reshape(-1).data) & 0xFFFFFFFF


def _serializable(kind: str, meta: dict[str, Any], arrays: dict[str, np.ndarray],
                  version: int | None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    for name, arr in arrays.items():
        if arr.dtype == object:
            raise TypeError(f"array {name} has dtype object; maps hold numeric arrays only")
    metadata = {
        "format": FORMAT_NAME,
        "kind": kind,
        "version": str(FORMAT_VERSIONS[kind] if version is None else version),
        "checksums": json.dumps({k: _crc(v) for k, v in arrays.items()}),
        "meta": json.dumps(meta),
    }
    return arrays, metadata


def write_map_file(path: str | os.PathLike, kind: str, meta: dict[str, Any], arrays: dict[str, np.ndarray],
                   version: int | None = None) -> Path:
    """Write arrays + manifest atomically (as layout ``version``, default the kind's newest); returns the path."""
    from safetensors.numpy import save_file

    path = Path(path)
    arrays, metadata = _serializable(kind, meta, arrays, version)
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata=metadata)
    return path


def map_file_bytes(kind: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> int:
    """The size in bytes that write_map_file would give these arrays and manifest (nothing is written)."""
    from safetensors.numpy import save

    arrays, metadata = _serializable(kind, meta, arrays, None)
    return len(save(arrays, metadata=metadata))


def read_map_file(path: str | os.PathLike, expected_kind: str | None = None, verify: bool = True,
                  mmap: bool = True) -> MapContainer:
    """Read a map file. Every failure is a MapFileError that names the cause and the fix."""
    path = Path(path)
    if not path.exists():
        raise MapFileError(f"map file {path} does not exist; build one with `scenesqueezer build-map` "
                           "or `scenesqueezer compress`")
    if path.is_dir():
        raise MapFileError(f"map path {path} is a directory; pass the map file itself")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise MapFileError(f"map file {path} is truncated ({size} bytes); rebuild it")
        (header_len,) = struct.unpack("<Q", head)
        if header_len > MAX_HEADER_BYTES or header_len + 8 > size:
            raise MapFileError(
                f"map file {path} is not a SceneSqueezer map or is truncated/corrupt "
                f"(header claims {header_len} bytes, file has {size}); rebuild it"
            )
        try:
            header = json.loads(fh.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MapFileError(f"map file {path} has a corrupt header ({exc}); rebuild it") from exc
    if not isinstance(header, dict):
        raise MapFileError(f"map file {path} has a corrupt header; rebuild it")
    metadata = header.pop("__metadata__", None) or {}
    if metadata.get("format") != FORMAT_NAME:
        raise MapFileError(f"{path} is not a SceneSqueezer map file (no '{FORMAT_NAME}' manifest)")
    try:
        version = int(metadata.get("version", "-1"))
    except ValueError:
        version = -1
    kind = metadata.get("kind")
    newest = FORMAT_VERSIONS.get(kind, max(FORMAT_VERSIONS.values())) if isinstance(kind, str) else 0
    if not 1 <= version <= newest:
        raise MapFileError(
            f"map file {path} has format version {metadata.get('version')}, this build reads versions 1 to "
            f"{newest} of a {kind!r}; rebuild the map with this version of scenesqueezer, or update scenesqueezer "
            "to the version that wrote it"
        )
    if expected_kind is not None and kind != expected_kind:
        raise MapFileError(f"map file {path} holds a {kind!r}, expected a {expected_kind!r}")
    try:
        meta = json.loads(metadata.get("meta", "{}"))
        checksums = json.loads(metadata.get("checksums", "{}"))
    except json.JSONDecodeError as exc:
        raise MapFileError(f"map file {path} has a corrupt manifest ({exc}); rebuild it") from exc

    data_start = 8 + header_len
    data_len = size - data_start
    arrays: dict[str, np.ndarray] = {}
    raw = np.memmap(path, dtype=np.uint8, mode="r") if mmap else np.fromfile(path, dtype=np.uint8)
    for name, info in header.items():
        try:
            dtype = np.dtype(_DTYPES[info["dtype"]])
            shape = tuple(int(s) for s in info["shape"])
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MapFileError(f"map file {path}: array {name!r} has a corrupt description; rebuild it") from exc
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if (min(shape, default=0) < 0 or not 0 <= begin <= end <= data_len
                or end - begin != count * dtype.itemsize):
            raise MapFileError(
                f"map file {path}: array {name!r} lies outside the file or has an inconsistent size "
                "(truncated or corrupt); rebuild it"
            )
        arr = raw[data_start + begin: data_start + end].view(dtype).reshape(shape)
        if verify:
            expected = checksums.get(name)
            if expected is None or _crc(arr) != int(expected):
                raise MapFileError(
                    f"map file {path}: checksum mismatch in array {name!r} (the file is corrupt); rebuild it"
                )
        arrays[name] = arr
    return MapContainer(kind=kind, version=version, meta=meta, arrays=arrays, path=path)


def require_arrays(container: MapContainer, names: list[str]) -> None:
    missing = [n for n in names if n not in container.arrays]
    if missing:
        raise MapFileError(
            f"map file {container.path} lacks array(s) {missing}; it was written by an incompatible "
            "tool or is damaged — rebuild it"
        )
