"""Product quantization (Jégou et al., TPAMI 2011) of point descriptors: codes far below one byte
per dimension, beside the 8-bit DSQ auto-encoder of ``maps.quantizer``.

A D-dimensional unit descriptor is cut into M contiguous sub-vectors of D / M dimensions; each is
replaced by the index of its nearest of 256 centroids (one byte), so a code is M bytes. 64-d
XFeat: M = 8, 16 or 32 (8, 16, 32 bytes instead of the DSQ's 64). Decoding concatenates the chosen
centroids and L2-normalizes, like the DSQ decoder, so the localizer's matchers see unit vectors.

Decoding is a table look-up (no network), cheap enough to run per candidate cluster at query time:
a compressed map keeps only the codes in memory (``CompressedMap.candidate_features``).

File: safetensors with one tensor ``codebooks`` (M, 256, D / M) float32 and JSON metadata (format,
version, features, content hash), the same guarantees as the DSQ files (no pickle, hash checked).
Training (k-means per sub-space) is ``compression.product_quantizer_training``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import ConfigError, MapFileError
from ..features.weights import WEIGHTS_DIR
from .quantizer_file import read_safetensors_metadata

FORMAT_NAME = "scenesqueezer.product_quantizer"
FORMAT_VERSION = 1
CENTROIDS_PER_SUBSPACE = 256  # one uint8 index per sub-vector


class ProductQuantizer:
    """Codebooks ``(M, 256, D / M)``; descriptors ``(N, D)`` float32 <-> codes ``(N, M)`` uint8."""

    kind = "product"
    decodes_cheaply = True  # a codebook lookup: maps keep nothing decoded (maps.decoded_descriptors)

    def __init__(self, codebooks: np.ndarray, features: str = "", training: dict[str, Any] | None = None) -> None:
        codebooks = np.asarray(codebooks)
        if codebooks.ndim != 3 or codebooks.shape[1] != CENTROIDS_PER_SUBSPACE or codebooks.shape[2] < 1:
            raise ConfigError(f"product quantizer codebooks must have shape (M, {CENTROIDS_PER_SUBSPACE}, D / M), "
                              f"got {codebooks.shape}")
        if not np.all(np.isfinite(codebooks)):
            raise ConfigError("product quantizer codebooks hold values that are not finite; retrain them")
        self.codebooks = np.ascontiguousarray(codebooks, dtype=np.float32)
        self.features = features
        self.training = dict(training or {})
        self.code_dim = int(codebooks.shape[0])  # M bytes per descriptor
        self.subspace_dim = int(codebooks.shape[2])
        self.in_dim = self.code_dim * self.subspace_dim
        # ||c||^2 of every centroid, for nearest-centroid search by ||x||^2 - 2 x.c + ||c||^2
        self._centroid_norms = np.einsum("mkd,mkd->mk", self.codebooks, self.codebooks)

    @property
    def content_hash(self) -> str:
        """sha256 (hex) of the codebooks' shape and bytes."""
        digest = hashlib.sha256(f"codebooks|float32|{self.codebooks.shape}|".encode())
        digest.update(self.codebooks.tobytes())
        return digest.hexdigest()

    def _check(self, array: np.ndarray, dim: int, what: str) -> np.ndarray:
        array = np.asarray(array)
        if array.ndim != 2 or array.shape[1] != dim:
            raise ConfigError(f"product quantizer for '{self.features or 'unnamed'}' features expects {what} of shape "
                              f"(N, {dim}), got {array.shape}; use the codebooks trained for these features")
        return array

    def encode(self, descriptors: np.ndarray, batch_size: int = 16384) -> np.ndarray:
        """Descriptors (N, D) -> codes (N, M) uint8: the nearest centroid of each L2-normalized sub-vector."""
        descriptors = self._check(descriptors, self.in_dim, "descriptors")
        if not np.isfinite(descriptors).all():
            raise ConfigError("descriptors contain NaN or inf; fix the extractor output before quantizing")
        codes = np.empty((len(descriptors), self.code_dim), dtype=np.uint8)
        for start in range(0, len(descriptors), batch_size):
            chunk = np.asarray(descriptors[start:start + batch_size], dtype=np.float32)
            chunk = chunk / np.linalg.norm(chunk, axis=1, keepdims=True).clip(1e-12)
            sub = chunk.reshape(len(chunk), self.code_dim, self.subspace_dim)  # (n, M, D / M)
            # ||x - c||^2 up to the per-row constant ||x||^2: (n, M, 256)
            distances = self._centroid_norms[None] - 2.0 * np.einsum("nmd,mkd->nmk", sub, self.codebooks)
            codes[start:start + len(chunk)] = np.argmin(distances, axis=2)
        return codes

    def reconstruct(self, codes: np.ndarray) -> np.ndarray:
        """Codes (N, M) uint8 -> the concatenated centroids (N, D) float32, before normalization."""
        codes = self._check(codes, self.code_dim, "codes")
        if codes.dtype != np.uint8:
            raise ConfigError(f"codes must be uint8 (as written by encode), got {codes.dtype}")
        parts = self.codebooks[np.arange(self.code_dim)[None, :], codes]  # (N, M, D / M)
        return parts.reshape(len(codes), self.in_dim)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Codes (N, M) uint8 -> unit descriptors (N, D) float32."""
        vectors = self.reconstruct(codes)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)

    # ---------------------------------------------------------------- file
    def to_bytes(self) -> bytes:
        from safetensors.numpy import save

        metadata = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION), "kind": self.kind,
                    "features": self.features, "content_hash": self.content_hash,
                    "training": json.dumps(self.training, sort_keys=True, default=str)}
        return save({"codebooks": self.codebooks}, metadata=metadata)

    def to_safetensors(self, path: str | os.PathLike) -> Path:
        atomic_write_bytes(path, self.to_bytes())
        return Path(path)

    @classmethod
    def from_safetensors(cls, path: str | os.PathLike) -> ProductQuantizer:
        from safetensors.numpy import load

        path = Path(path)
        if not path.is_file():
            raise MapFileError(f"product quantizer codebooks {path} not found; train them with "
                               "`scenesqueezer train-quantizer --codes pq8 pq16 pq32 ...` or pass an existing file")
        data = path.read_bytes()
        metadata = read_safetensors_metadata(data, str(path))
        if metadata.get("format") != FORMAT_NAME or metadata.get("format_version") != str(FORMAT_VERSION):
            raise MapFileError(f"{path} is not a version-{FORMAT_VERSION} SceneSqueezer product quantizer "
                               f"(format {metadata.get('format')!r}, version {metadata.get('format_version')!r}); "
                               "retrain it with `scenesqueezer train-quantizer --codes ...`")
        try:
            codebooks = load(data)["codebooks"]
            model = cls(codebooks, features=metadata.get("features", ""),
                        training=json.loads(metadata.get("training", "{}")))
        except (KeyError, ValueError, ConfigError) as exc:
            raise MapFileError(f"{path} is corrupt ({exc}); retrain the product quantizer") from exc
        if model.content_hash != metadata.get("content_hash"):
            raise MapFileError(f"{path}: codebooks hash {model.content_hash[:12]}... differs from the recorded "
                               f"{str(metadata.get('content_hash'))[:12]}...; the file is corrupt, retrain it")
        return model


def shipped_product_quantizer_path(features: str, code_bytes: int) -> Path:
    return WEIGHTS_DIR / f"product_quantizer_{features}_{code_bytes}.safetensors"


def load_product_quantizer(features: str, code_bytes: int) -> ProductQuantizer:
    """The shipped codebooks of ``features`` ('xfeat', ...) with ``code_bytes`` sub-spaces."""
    path = shipped_product_quantizer_path(features, code_bytes)
    if not path.is_file():
        shipped = sorted(p.stem.removeprefix("product_quantizer_")
                         for p in WEIGHTS_DIR.glob("product_quantizer_*.safetensors"))
        raise MapFileError(
            f"no shipped {code_bytes}-byte product quantizer for features '{features}' (shipped: {shipped}); "
            f"train one with `scenesqueezer train-quantizer --features {features} --codes pq{code_bytes} ...` "
            "or compress with --codes dsq"
        )
    return ProductQuantizer.from_safetensors(path)
