"""The descriptor codes a compressed map can hold, by name, and the model that decodes each.

- ``dsq``: the 8-bit DSQ auto-encoder of ``maps.quantizer`` (one byte per descriptor dimension:
  64 B for XFeat, 128 B for ALIKED / SIFT); the paper's codes.
- ``pq32``, ``pq16``, ``pq8``: product quantization (``maps.product_quantizer``), 32 / 16 / 8 bytes.

Both kinds give ``encode`` (N, D) float -> (N, B) uint8, ``decode`` (N, B) uint8 -> (N, D) float32
unit vectors, ``code_dim`` (B) and ``content_hash`` (which a map records and checks at load).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..errors import ConfigError
from .product_quantizer import load_product_quantizer
from .quantizer import load_descriptor_quantizer

DSQ_CODES = "dsq"
PRODUCT_CODE_BYTES = (32, 16, 8)
DESCRIPTOR_CODES = (DSQ_CODES,) + tuple(f"pq{b}" for b in PRODUCT_CODE_BYTES)


class DescriptorCodec(Protocol):
    code_dim: int
    in_dim: int  # dimension of the decoded descriptors
    decodes_cheaply: bool  # decoding costs next to nothing next to matching (no decoded copy is kept)

    @property
    def content_hash(self) -> str: ...

    def encode(self, descriptors: np.ndarray) -> np.ndarray: ...

    def decode(self, codes: np.ndarray) -> np.ndarray: ...


def check_descriptor_codes(codes: str) -> str:
    if codes not in DESCRIPTOR_CODES:
        raise ConfigError(f"unknown descriptor codes {codes!r}; choose one of {', '.join(DESCRIPTOR_CODES)}")
    return codes


def load_descriptor_codec(features: str, codes: str) -> DescriptorCodec:
    """The shipped model of ``codes`` (a DESCRIPTOR_CODES name) for extractor ``features``."""
    check_descriptor_codes(codes)
    if codes == DSQ_CODES:
        return load_descriptor_quantizer(features)
    return load_product_quantizer(features, int(codes.removeprefix("pq")))
