"""The safetensors file format of the DSQ quantizers (no pickle).

A quantizer file holds the float32 weights, the model configuration as JSON metadata, the format
name and version, the quantizer kind and a sha256 ``content_hash`` of the tensors, so that a map
file can record which decoder it needs and refuse any other. ``QuantizerFile`` is the mixin that
gives ``maps.quantizer.DSQAutoEncoder`` this format; nothing here knows the model's layers.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any, ClassVar, cast

import torch

from ..atomic import atomic_write_bytes
from ..errors import MapFileError

FORMAT_NAME = "scenesqueezer.dsq_autoencoder"
FORMAT_VERSION = 1


class QuantizerFile:
    """Serialization of a torch quantizer module: ``conf`` and ``kind`` plus the module's state dict.

    Mixed into an ``nn.Module`` subclass whose constructor takes ``(conf, init_weights=False)``.
    """

    kind: ClassVar[str]
    conf: dict[str, Any]
    state_dict: Any
    load_state_dict: Any
    eval: Any

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {name: t.detach().to(torch.float32).contiguous().cpu() for name, t in self.state_dict().items()}

    @staticmethod
    def _hash_tensors(tensors: dict[str, torch.Tensor]) -> str:
        digest = hashlib.sha256()
        for name in sorted(tensors):
            t = tensors[name]
            digest.update(f"{name}|{str(t.dtype)}|{tuple(t.shape)}|".encode())
            digest.update(t.numpy().tobytes())
        return digest.hexdigest()

    @property
    def content_hash(self) -> str:
        """sha256 (hex) of the tensors: names, dtypes, shapes and bytes, in sorted name order."""
        return self._hash_tensors(self._tensors())

    @property
    def num_bytes(self) -> int:
        """Size of the float32 weights in bytes."""
        return sum(t.numel() * 4 for t in self._tensors().values())

    def metadata(self) -> dict[str, str]:
        return {
            "format": FORMAT_NAME,
            "format_version": str(FORMAT_VERSION),
            "kind": self.kind,
            "config": json.dumps(self.conf, sort_keys=True),
            "content_hash": self.content_hash,
        }

    def to_bytes(self, extra_metadata: dict[str, str] | None = None) -> bytes:
        """The safetensors serialization (weights + config JSON metadata), e.g. to embed in a map file."""
        from safetensors.torch import save

        metadata = {**(extra_metadata or {}), **self.metadata()}
        return save(self._tensors(), metadata=metadata)

    def to_safetensors(self, path: str | os.PathLike, extra_metadata: dict[str, str] | None = None) -> Path:
        """Write the weights atomically to ``path``; returns the path."""
        atomic_write_bytes(path, self.to_bytes(extra_metadata))
        return Path(path)

    @classmethod
    def from_bytes(cls, data: bytes, expected_hash: str | None = None, source: str = "<bytes>") -> Any:
        """Rebuild a quantizer from :meth:`to_bytes` output; verifies format, kind and content hash."""
        from safetensors.torch import load

        metadata = read_safetensors_metadata(data, source)
        if metadata.get("format") != FORMAT_NAME:
            raise MapFileError(f"{source} is not a SceneSqueezer quantizer (format {metadata.get('format')!r})")
        if int(metadata.get("format_version", "-1")) != FORMAT_VERSION:
            raise MapFileError(
                f"{source} has quantizer format version {metadata.get('format_version')}, this code reads "
                f"{FORMAT_VERSION}; retrain it with `scenesqueezer train-quantizer` or update SceneSqueezer"
            )
        if metadata.get("kind") != cls.kind:
            raise MapFileError(f"{source} holds a '{metadata.get('kind')}' quantizer, expected '{cls.kind}'")
        # The stored weights replace every parameter: build on the meta device and skip the random
        # initialization (a QR and a pseudo-inverse of the rotation, 0.2 s of every map load).
        with torch.device("meta"):
            model = cast(Any, cls)(json.loads(metadata["config"]), init_weights=False)
        try:
            tensors = load(data)
        except Exception as exc:  # safetensors raises its own error types
            raise MapFileError(f"{source} is corrupt ({exc}); re-export the quantizer") from exc
        actual = cls._hash_tensors(tensors)
        for wanted, what in ((metadata.get("content_hash"), "its own header"), (expected_hash, "the caller")):
            if wanted is not None and wanted != actual:
                raise MapFileError(
                    f"{source}: weights hash {actual[:12]}... differs from the hash {wanted[:12]}... recorded by "
                    f"{what}; the file is corrupt or belongs to another map: use the matching quantizer file"
                )
        missing, unexpected = model.load_state_dict(tensors, strict=False, assign=True)
        if missing or unexpected:
            raise MapFileError(f"{source}: weights do not fit the config (missing {missing}, unexpected {unexpected})")
        model.eval()
        return model

    @classmethod
    def from_safetensors(cls, path: str | os.PathLike, expected_hash: str | None = None) -> Any:
        path = Path(path)
        if not path.is_file():
            raise MapFileError(
                f"quantizer weights {path} not found; train them with `scenesqueezer train-quantizer` "
                f"or pass the path of an existing .safetensors file"
            )
        return cls.from_bytes(path.read_bytes(), expected_hash=expected_hash, source=str(path))



def read_safetensors_metadata(data: bytes, source: str = "<bytes>") -> dict[str, str]:
    """The ``__metadata__`` dict of a safetensors blob (header: u64 little-endian length + JSON)."""
    try:
        (header_len,) = struct.unpack("<Q", data[:8])
        if header_len > len(data) - 8:
            raise ValueError("header length beyond end of data")
        header = json.loads(data[8 : 8 + header_len])
    except Exception as exc:
        raise MapFileError(f"{source} is not a safetensors file ({exc}); re-export the quantizer") from exc
    return dict(header.get("__metadata__") or {})

