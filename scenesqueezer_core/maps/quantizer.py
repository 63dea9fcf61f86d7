"""DSQ auto-encoders that quantize point descriptors and global descriptors to uint8 codes.

Seed section A ("Feature Quantization", "Quantized AP-GeM Global Descriptor"): an MLP encoder, a
Differentiable Soft Quantization bottleneck (Gong et al., ICCV 2019) that turns each latent value
into one byte, and a mirrored MLP decoder that restores a float descriptor for matching.

At run time the *query's* descriptors are raw floats and the *map's* descriptors are decoded from
codes, so the training losses (``compression.quantizer_training``) compare raw against decoded
(asymmetric), which is exactly how the localizer uses them.

The weights' file format (safetensors, config as JSON metadata, content hash) is
``maps.quantizer_file``; the shipped weights live in ``WEIGHTS_DIR``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, MapFileError
from ..features.weights import WEIGHTS_DIR
from .quantizer_file import QuantizerFile

# Scale of the initial rotation, in units of sqrt(in_dim) (unit descriptors have per-dimension std
# 1 / sqrt(in_dim)): 1 puts one standard deviation at the sigmoid's knee.
COMPANDING_GAIN = 1.0


class DSQ(nn.Module):
    """Differentiable Soft Quantization on a fixed range ``[lower, upper]`` with ``2**bits`` levels.

    The range is cut into ``2**bits - 1`` intervals of width ``delta``; level ``c`` sits at
    ``lower + c * delta``. Inside interval ``i`` (centre ``m_i``) the soft quantizer is
    ``lower + delta * (i + (phi + 1) / 2)`` with ``phi = s * tanh(k (x - m_i))``,
    ``k = log(2 / alpha - 1) / delta`` and ``s = 1 / (1 - alpha)``, so ``phi = +-1`` at the interval
    edges (continuous) and the soft quantizer tends to hard rounding as ``alpha -> 0``.
    ``alpha`` is learnable and clamped to ``[alpha_min, alpha_max]`` as in the DSQ paper.

    Training mode returns the soft value (or, with ``straight_through``, the hard value with the soft
    value's gradient); eval mode returns the hard-rounded value.
    """

    def __init__(
        self,
        bits: int = 8,
        lower: float = -0.5,
        upper: float = 0.5,
        alpha: float = 0.2,
        alpha_min: float = 1e-4,
        alpha_max: float = 0.5,
    ) -> None:
        super().__init__()
        if not 1 <= bits <= 8:
            raise ConfigError(f"DSQ bits must be in [1, 8] to fit a uint8 code, got {bits}")
        if not upper > lower:
            raise ConfigError(f"DSQ needs upper > lower, got [{lower}, {upper}]")
        self.bits = bits
        self.lower = float(lower)
        self.upper = float(upper)
        self.num_levels = 2**bits
        self.delta = (self.upper - self.lower) / (self.num_levels - 1)
        self.alpha_min = alpha_min
        self.alpha_max = alpha_max
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.straight_through = False

    def clamped_alpha(self) -> torch.Tensor:
        return self.alpha.clamp(self.alpha_min, self.alpha_max)

    def soft(self, x: torch.Tensor, alpha: torch.Tensor | float | None = None) -> torch.Tensor:
        """Soft-quantized value of ``x`` (any shape), in ``[lower, upper]`` (Algorithm 2 of the seed)."""
        alpha = self.clamped_alpha() if alpha is None else torch.as_tensor(alpha, dtype=x.dtype)
        x = x + F.relu(self.lower - x)
        x = x - F.relu(x - self.upper)
        # The last level is an interval *end*: x == upper belongs to the last interval.
        index = torch.floor((x - self.lower) / self.delta).clamp(0, self.num_levels - 2).detach()
        centre = self.lower + (index + 0.5) * self.delta
        k = torch.log(2.0 / alpha - 1.0) / self.delta
        s = 1.0 / (1.0 - alpha)
        phi = s * torch.tanh(k * (x - centre))
        return self.lower + self.delta * (index + 0.5 * (phi + 1.0))

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Hard integer codes in ``[0, 2**bits - 1]`` (int64 tensor, same shape as ``x``)."""
        x = x.clamp(self.lower, self.upper)
        return torch.round((x - self.lower) / self.delta).to(torch.int64).clamp(0, self.num_levels - 1)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """Level values ``lower + codes * delta`` (float32) of integer codes."""
        return self.lower + codes.to(torch.float32) * self.delta

    def hard(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequantize(self.codes(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.hard(x)
        soft = self.soft(x)
        if self.straight_through:
            return soft + (self.hard(x) - soft).detach()
        return soft


class _ResidualMLP(nn.Module):
    """``skip(x) + mlp(x)``: a linear path plus a one-hidden-layer GELU MLP whose output starts at zero.

    Starting from the linear path lets training begin at a well-conditioned companding quantizer
    (scaled rotation -> sigmoid -> 8 bits -> inverse) and learn only the non-linear corrections;
    a plain MLP from random weights reconstructs worse than per-dimension 8-bit quantization.
    ``hidden_dim`` 0 leaves the linear path alone.
    """

    def __init__(self, d_in: int, hidden_dim: int, d_out: int) -> None:
        super().__init__()
        self.skip = nn.Linear(d_in, d_out)
        self.mlp = None
        if hidden_dim > 0:
            self.mlp = nn.Sequential(nn.Linear(d_in, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, d_out))
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) if self.mlp is None else self.skip(x) + self.mlp(x)


class DSQAutoEncoder(QuantizerFile, nn.Module):
    """Encoder MLP -> sigmoid(MLP) - 0.5 (seed Eq. 7) -> DSQ -> uint8 codes -> decoder MLP -> L2 norm.

    Shapes: descriptors ``(N, in_dim)`` float32, codes ``(N, code_dim)`` uint8. ``hidden_dim`` 0 means
    linear encoder and decoder (used for large global descriptors, to keep the decoder small).
    """

    kind: ClassVar[str] = "descriptor"
    default_conf: ClassVar[dict[str, Any]] = {
        "in_dim": 128,
        "hidden_dim": 256,
        "code_dim": 128,
        "bits": 8,
        "alpha": 0.2,
        "normalize_input": True,
        "normalize_output": True,
        "features": "",
    }

    def __init__(self, conf: dict[str, Any] | None = None, init_weights: bool = True, **overrides: Any) -> None:
        super().__init__()
        conf = {**(conf or {}), **overrides}
        unknown = sorted(set(conf) - set(self.default_conf))
        if unknown:
            raise ConfigError(f"unknown quantizer option(s) {unknown}; valid options: {sorted(self.default_conf)}")
        self.conf = {**self.default_conf, **conf}
        for key in ("in_dim", "code_dim"):
            if int(self.conf[key]) <= 0:
                raise ConfigError(f"quantizer {key} must be a positive integer, got {self.conf[key]}")
        in_dim, hidden, code = int(self.conf["in_dim"]), int(self.conf["hidden_dim"]), int(self.conf["code_dim"])
        self.in_dim, self.code_dim = in_dim, code
        self.encoder = _ResidualMLP(in_dim, hidden, code)
        self.pre_quant = nn.Linear(code, code)  # Eq. 7's MLP before the sigmoid
        self.dsq = DSQ(bits=int(self.conf["bits"]), alpha=float(self.conf["alpha"]))
        self.decoder = _ResidualMLP(code, hidden, in_dim)
        if init_weights:
            self._init_companding()
        self.eval()

    @torch.no_grad()
    def _init_companding(self) -> None:
        """Linear paths start as a random rotation scaled so that unit descriptors (per-dimension std
        about 1/sqrt(in_dim)) fill the sigmoid's range, and the decoder as its inverse to first order."""
        gain = COMPANDING_GAIN * math.sqrt(self.in_dim)
        rotation = torch.empty(self.code_dim, self.in_dim)
        nn.init.orthogonal_(rotation)
        self.encoder.skip.weight.copy_(rotation * gain)
        self.encoder.skip.bias.zero_()
        nn.init.eye_(self.pre_quant.weight)
        self.pre_quant.bias.zero_()
        # The decoder reads logit(level + 0.5) ~= gain * R x (see decode_levels).
        self.decoder.skip.weight.copy_(torch.linalg.pinv(rotation) / gain)
        self.decoder.skip.bias.zero_()

    # ---- torch-side building blocks (differentiable) ----
    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) if self.conf["normalize_input"] else x

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_dim) -> (N, code_dim) values in (-0.5, 0.5) before quantization (seed Eq. 7)."""
        return torch.sigmoid(self.pre_quant(self.encoder(self._prepare(x)))) - 0.5

    def decode_levels(self, levels: torch.Tensor) -> torch.Tensor:
        """(N, code_dim) DSQ level values in [-0.5, 0.5] -> (N, in_dim) descriptors."""
        # Undo Eq. 7's sigmoid (a fixed function), so that the decoder starts as the encoder's inverse.
        # The end levels are pulled in by half a step to keep the logit finite.
        half_step = 0.5 * self.dsq.delta
        p = (levels + 0.5).clamp(half_step, 1.0 - half_step)
        out = self.decoder(torch.log(p) - torch.log1p(-p))
        return F.normalize(out, dim=-1) if self.conf["normalize_output"] else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction (N, in_dim): soft-quantized in training mode, hard-quantized in eval mode."""
        return self.decode_levels(self.dsq(self.latent(x)))

    # ---- numpy API used by the compressor and the localizer ----
    def _check_input(self, array: np.ndarray, dim: int, what: str) -> np.ndarray:
        array = np.asarray(array)
        if array.ndim != 2 or array.shape[1] != dim:
            raise ConfigError(
                f"{type(self).__name__} for '{self.conf['features'] or 'unnamed'}' features expects {what} of shape "
                f"(N, {dim}), got {array.shape}; use the quantizer trained for these features"
            )
        return array

    @torch.no_grad()
    def encode(self, descriptors: np.ndarray, batch_size: int = 65536) -> np.ndarray:
        """Descriptors (N, in_dim) float -> codes (N, code_dim) uint8."""
        descriptors = self._check_input(descriptors, self.in_dim, "descriptors")
        if not np.isfinite(descriptors).all():
            raise ConfigError("descriptors contain NaN or inf; fix the extractor output before quantizing")
        was_training = self.training
        self.eval()
        out = np.empty((len(descriptors), self.code_dim), dtype=np.uint8)
        for start in range(0, len(descriptors), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(descriptors[start : start + batch_size], dtype=np.float32))
            out[start : start + len(chunk)] = self.dsq.codes(self.latent(chunk)).numpy().astype(np.uint8)
        self.train(was_training)
        return out

    @torch.no_grad()
    def decode(self, codes: np.ndarray, batch_size: int = 65536) -> np.ndarray:
        """Codes (N, code_dim) uint8 -> descriptors (N, in_dim) float32 (L2-normalized by default)."""
        codes = self._check_input(codes, self.code_dim, "codes")
        if codes.dtype != np.uint8:
            raise ConfigError(f"codes must be uint8 (as written by encode), got {codes.dtype}")
        was_training = self.training
        self.eval()
        out = np.empty((len(codes), self.in_dim), dtype=np.float32)
        for start in range(0, len(codes), batch_size):
            chunk = torch.from_numpy(codes[start : start + batch_size].astype(np.int64))
            out[start : start + len(chunk)] = self.decode_levels(self.dsq.dequantize(chunk)).numpy()
        self.train(was_training)
        return out


class DescriptorQuantizer(DSQAutoEncoder):
    """Local point descriptors -> uint8 codes (ALIKED/SIFT 128 -> 128 bytes, XFeat 64 -> 64 bytes)."""

    kind = "descriptor"
    decodes_cheaply = False  # a network: maps keep what they decoded (maps.decoded_descriptors)


class GlobalQuantizer(DSQAutoEncoder):
    """Global image descriptors (e.g. 4096-d VLAD) -> 1024 uint8 codes, trained with APLoss.

    One linear layer on each side by default: the decoder is stored with the map, so it must stay
    small (in_dim * code_dim * 2 floats).
    """

    kind = "global"
    default_conf = {**DSQAutoEncoder.default_conf, "in_dim": 4096, "hidden_dim": 0, "code_dim": 1024}


def shipped_weights_path(features: str) -> Path:
    return WEIGHTS_DIR / f"quantizer_{features}.safetensors"


def load_descriptor_quantizer(features: str) -> DescriptorQuantizer:
    """The shipped quantizer for ``features`` ('xfeat', 'aliked', 'sift') or a path to a .safetensors file."""
    path = Path(features)
    if path.suffix != ".safetensors":
        path = shipped_weights_path(features)
        if not path.is_file():
            shipped = sorted(p.stem.removeprefix("quantizer_") for p in WEIGHTS_DIR.glob("quantizer_*.safetensors"))
            raise MapFileError(
                f"no shipped quantizer for features '{features}' (shipped: {shipped}); train one with "
                f"`scenesqueezer train-quantizer --features {features} ...` and pass its path"
            )
    model = DescriptorQuantizer.from_safetensors(path)
    return model
