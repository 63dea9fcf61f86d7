"""DSQ auto-encoders that quantize point descriptors and global descriptors to uint8 codes.

Seed section A ("Feature Quantization", "Quantized AP-GeM Global Descriptor"): an MLP encoder, a
Differentiable Soft Quantization bottleneck (Gong et al., ICCV 2019) that turns each latent value
into one byte, and a mirrored MLP decoder that restores a float descriptor for matching.

At run time the *query's* descriptors are raw floats and the *map's* descriptors are decoded from
codes, so the training losses compare raw against decoded (asymmetric), which is exactly how the
localizer uses them.

Weights are stored as safetensors (no pickle) with the model configuration as JSON metadata and a
sha256 ``content_hash`` of the tensors, so a map file can record which decoder it needs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..atomic import atomic_write_bytes
from ..errors import ConfigError, MapFileError

FORMAT_NAME = "scenesqueezer.dsq_autoencoder"
FORMAT_VERSION = 1
# Scale of the initial rotation, in units of sqrt(in_dim) (unit descriptors have per-dimension std
# 1 / sqrt(in_dim)): 1 puts one standard deviation at the sigmoid's knee.
COMPANDING_GAIN = 1.0
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


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


class DSQAutoEncoder(nn.Module):
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

    # ---- serialization (safetensors, no pickle) ----
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
    def from_bytes(cls, data: bytes, expected_hash: str | None = None, source: str = "<bytes>") -> DSQAutoEncoder:
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
            model = cls(json.loads(metadata["config"]), init_weights=False)
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
    def from_safetensors(cls, path: str | os.PathLike, expected_hash: str | None = None) -> DSQAutoEncoder:
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


class DescriptorQuantizer(DSQAutoEncoder):
    """Local point descriptors -> uint8 codes (ALIKED/SIFT 128 -> 128 bytes, XFeat 64 -> 64 bytes)."""

    kind = "descriptor"


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


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------


def ap_loss(
    query: torch.Tensor, database: torch.Tensor, positives: torch.Tensor, num_bins: int = 25, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """1 - mean average precision, differentiable by histogram binning (APLoss, Revaud et al. ICCV 2019).

    query (Q, D) and database (B, D) are L2-normalized; positives (Q, B) bool; valid (Q, B) bool marks
    pairs that take part (e.g. excludes the query itself). Similarities in [-1, 1] are soft-assigned to
    ``num_bins`` bins with triangular kernels; precision and recall are accumulated from the most
    similar bin down. Queries without a positive are skipped.
    """
    sim = query @ database.T  # (Q, B)
    if valid is None:
        valid = torch.ones_like(positives)
    pos = (positives & valid).to(sim.dtype)
    weight = valid.to(sim.dtype)
    centres = torch.linspace(1.0, -1.0, num_bins, dtype=sim.dtype, device=sim.device)  # (M,)
    width = 2.0 / (num_bins - 1)
    assign = (1.0 - (sim.unsqueeze(-1) - centres).abs() / width).clamp(min=0.0)  # (Q, B, M)
    assign = assign * weight.unsqueeze(-1)
    hist_pos = (assign * pos.unsqueeze(-1)).sum(1)  # (Q, M)
    hist_all = assign.sum(1)  # (Q, M)
    cum_pos = hist_pos.cumsum(-1)
    cum_all = hist_all.cumsum(-1)
    precision = cum_pos / cum_all.clamp(min=1e-8)
    num_pos = pos.sum(1)  # (Q,)
    has_pos = num_pos > 0
    if not bool(has_pos.any()):
        return sim.sum() * 0.0
    ap = (precision * hist_pos).sum(-1) / num_pos.clamp(min=1.0)
    return 1.0 - ap[has_pos].mean()


def _info_nce(anchor: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy of matching row i of anchor (N, D) to row i of target (N, D), both directions."""
    logits = anchor @ target.T / temperature
    labels = torch.arange(len(anchor))
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

DESCRIPTOR_TRAIN_CONF: dict[str, Any] = {
    "hidden_dim": None,  # None: 2 * max(in_dim, code_dim), the seed's 128 -> 256 -> 128
    "code_dim": None,  # None: same as in_dim (one byte per descriptor dimension)
    "epochs": 6,
    "batch_size": 1024,
    "lr": 3e-4,  # small: training starts from a good companding quantizer and only refines it
    "weight_decay": 1e-5,
    "temperature": 0.05,
    "w_reconstruction": 1.0,
    # InfoNCE (raw i must pick decoded i in the batch). Off by default: measured on Strecha XFeat it
    # makes descriptors "more distinctive" and so *changes* nearest neighbours (agreement 0.99 -> 0.95).
    "w_contrastive": 0.0,
    "w_similarity": 4.0,  # raw-vs-decoded similarities match raw-vs-raw over the batch (keeps NN rankings)
    "w_matches": 4.0,  # the same for same-point pairs: sim(raw a, decoded b) = sim(raw a, raw b), b over the batch
    "straight_through_fraction": 0.5,  # last fraction of epochs: hard forward, soft gradient
    "seed": 0,
    "max_seconds": None,  # stop early when training exceeds this wall time
    "num_threads": None,  # torch threads during training (None: leave as is)
    "progress": True,
    "features": "",
}

GLOBAL_TRAIN_CONF: dict[str, Any] = {
    "hidden_dim": 0,
    "code_dim": 1024,
    "epochs": 60,
    "batch_size": 64,
    "lr": 2e-3,
    "weight_decay": 1e-5,
    "num_bins": 25,
    "w_ap": 1.0,
    "w_reconstruction": 1.0,
    "straight_through_fraction": 0.3,
    "seed": 0,
    "max_seconds": 60.0,
    "num_threads": None,
    "progress": True,
    "features": "",
}


def _merge(default: dict[str, Any], conf: dict[str, Any] | None) -> dict[str, Any]:
    conf = dict(conf or {})
    unknown = sorted(set(conf) - set(default))
    if unknown:
        raise ConfigError(f"unknown training option(s) {unknown}; valid options: {sorted(default)}")
    return {**default, **conf}


def _as_float_tensor(array: np.ndarray, name: str) -> torch.Tensor:
    array = np.asarray(array)
    if array.ndim != 2 or len(array) < 2:
        raise ConfigError(f"{name} must be a (N, D) array with N >= 2, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ConfigError(f"{name} contain NaN or inf; fix the extractor output before training")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


class _Progress:
    """tqdm over epochs when asked, a no-op otherwise."""

    def __init__(self, total: int, enabled: bool, desc: str) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="epoch")

    def update(self, **postfix: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in postfix.items()})
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _run_epochs(model: DSQAutoEncoder, conf: dict[str, Any], steps_per_epoch: int, step_fn, desc: str) -> dict[str, float]:
    """Shared loop: AdamW + cosine LR, straight-through for the last epochs, optional time limit."""
    previous_threads = torch.get_num_threads()
    if conf["num_threads"]:
        torch.set_num_threads(int(conf["num_threads"]))
    epochs = int(conf["epochs"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(conf["lr"]), weight_decay=float(conf["weight_decay"]))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=float(conf["lr"]), total_steps=max(1, epochs * steps_per_epoch), pct_start=0.1
    )
    hard_from = epochs - int(round(float(conf["straight_through_fraction"]) * epochs))
    progress = _Progress(epochs, bool(conf["progress"]), desc)
    started = time.perf_counter()
    history: dict[str, float] = {}
    model.train()
    try:
        for epoch in range(epochs):
            model.dsq.straight_through = epoch >= hard_from
            totals: dict[str, float] = {}
            for step in range(steps_per_epoch):
                losses = step_fn(epoch, step)
                loss = sum(losses.values())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                for key, value in losses.items():
                    totals[key] = totals.get(key, 0.0) + float(value.detach()) / steps_per_epoch
            history = {**totals, "epochs_run": epoch + 1}
            progress.update(**totals)
            if conf["max_seconds"] is not None and time.perf_counter() - started > float(conf["max_seconds"]):
                break
    finally:
        progress.close()
        model.dsq.straight_through = False
        model.eval()
        torch.set_num_threads(previous_threads)
    history["seconds"] = time.perf_counter() - started
    return history


def train_descriptor_quantizer(
    descriptors: np.ndarray, conf: dict[str, Any] | None = None, matches: np.ndarray | None = None
) -> DescriptorQuantizer:
    """Train a :class:`DescriptorQuantizer` on descriptors (N, D) float.

    ``matches`` (M, 2) int: optional index pairs into ``descriptors`` of the same 3D point (or
    verified matches); they add a loss that keeps decoded descriptors of one point matchable to the
    raw descriptors of its other observations. Deterministic for a given ``conf['seed']``. The
    training history is left in ``model.training_history``.
    """
    conf = _merge(DESCRIPTOR_TRAIN_CONF, conf)
    data = _as_float_tensor(descriptors, "descriptors")
    in_dim = data.shape[1]
    code_dim = int(conf["code_dim"] or in_dim)
    hidden = int(conf["hidden_dim"] if conf["hidden_dim"] is not None else 2 * max(in_dim, code_dim))
    torch.manual_seed(int(conf["seed"]))
    generator = torch.Generator().manual_seed(int(conf["seed"]))
    model = DescriptorQuantizer(in_dim=in_dim, hidden_dim=hidden, code_dim=code_dim, features=str(conf["features"]))
    data = F.normalize(data, dim=-1) if model.conf["normalize_input"] else data
    pairs = None
    if matches is not None:
        pairs = torch.from_numpy(np.asarray(matches, dtype=np.int64).reshape(-1, 2))
        if len(pairs) and (pairs.min() < 0 or pairs.max() >= len(data)):
            raise ConfigError(f"matches index descriptors out of range [0, {len(data)}); pass (M, 2) row indices")
        if len(pairs) < 2:
            pairs = None
    batch = min(int(conf["batch_size"]), len(data))
    steps = max(1, len(data) // batch)
    temperature = float(conf["temperature"])
    order = torch.randperm(len(data), generator=generator)

    def step_fn(epoch: int, step: int) -> dict[str, torch.Tensor]:
        nonlocal order
        if step == 0:
            order = torch.randperm(len(data), generator=generator)
        x = data[order[step * batch : (step + 1) * batch]]
        decoded = model(x)
        losses = {"reconstruction": conf["w_reconstruction"] * (1.0 - (decoded * x).sum(-1)).mean()}
        if conf["w_contrastive"]:
            losses["contrastive"] = conf["w_contrastive"] * _info_nce(x, decoded, temperature)
        if conf["w_similarity"]:
            raw_sim = x @ x.T
            losses["similarity"] = conf["w_similarity"] * F.mse_loss(x @ decoded.T, raw_sim)
        if pairs is not None and conf["w_matches"]:
            pick = pairs[torch.randint(len(pairs), (min(batch, len(pairs)),), generator=generator)]
            a, b = data[pick[:, 0]], data[pick[:, 1]]
            losses["matches"] = conf["w_matches"] * F.mse_loss(a @ model(b).T, a @ b.T)
        return losses

    model.training_history = _run_epochs(model, conf, steps, step_fn, f"quantizer {conf['features'] or in_dim}")
    return model


def train_global_quantizer(
    global_desc: np.ndarray, positives: np.ndarray, conf: dict[str, Any] | None = None
) -> GlobalQuantizer:
    """Train a :class:`GlobalQuantizer` on global descriptors (N, G) of map frames.

    ``positives`` (N, N) bool: frames that should retrieve each other (pose proximity / co-visibility);
    the diagonal is ignored. Loss: APLoss of raw query descriptors against decoded database
    descriptors of a batch (how retrieval uses them at run time) plus cosine reconstruction.
    Bounded by ``conf['max_seconds']`` so that it can run at compression time.
    """
    conf = _merge(GLOBAL_TRAIN_CONF, conf)
    data = _as_float_tensor(global_desc, "global descriptors")
    n, in_dim = data.shape
    positives = np.asarray(positives, dtype=bool)
    if positives.shape != (n, n):
        raise ConfigError(f"positives must be a ({n}, {n}) bool matrix matching the descriptors, got {positives.shape}")
    torch.manual_seed(int(conf["seed"]))
    generator = torch.Generator().manual_seed(int(conf["seed"]))
    model = GlobalQuantizer(
        in_dim=in_dim, hidden_dim=int(conf["hidden_dim"]), code_dim=int(conf["code_dim"]), features=str(conf["features"])
    )
    data = F.normalize(data, dim=-1)
    pos = torch.from_numpy(positives | positives.T)
    pos.fill_diagonal_(False)
    batch = min(int(conf["batch_size"]), n)
    steps = max(1, math.ceil(n / batch))
    order = torch.randperm(n, generator=generator)

    def step_fn(epoch: int, step: int) -> dict[str, torch.Tensor]:
        nonlocal order
        if step == 0:
            order = torch.randperm(n, generator=generator)
        index = order[step * batch : (step + 1) * batch]
        if len(index) < 2:
            index = order[:batch]
        x = data[index]
        decoded = model(x)
        losses = {"reconstruction": conf["w_reconstruction"] * (1.0 - (decoded * x).sum(-1)).mean()}
        if conf["w_ap"]:
            valid = ~torch.eye(len(index), dtype=torch.bool)
            losses["ap"] = conf["w_ap"] * ap_loss(x, decoded, pos[index][:, index], int(conf["num_bins"]), valid)
        return losses

    model.training_history = _run_epochs(model, conf, steps, step_fn, "global quantizer")
    return model


# ---------------------------------------------------------------------------------------------
# Evaluation helpers (used by the training script, the model card and the tests)
# ---------------------------------------------------------------------------------------------


def mutual_nearest_neighbours(desc0: np.ndarray, desc1: np.ndarray) -> np.ndarray:
    """Mutual nearest neighbours by dot product of L2-normalized descriptors: (M, 2) int64 index pairs."""
    a = torch.nn.functional.normalize(torch.from_numpy(np.asarray(desc0, np.float32)), dim=-1)
    b = torch.nn.functional.normalize(torch.from_numpy(np.asarray(desc1, np.float32)), dim=-1)
    sim = a @ b.T
    nn01 = sim.argmax(1)
    nn10 = sim.argmax(0)
    keep = nn10[nn01] == torch.arange(len(a))
    return torch.stack([torch.nonzero(keep)[:, 0], nn01[keep]], 1).numpy().astype(np.int64)


def match_agreement(raw: np.ndarray, other: np.ndarray) -> float:
    """Fraction of the (M, 2) matches in ``raw`` that also appear in ``other``."""
    if len(raw) == 0:
        return 1.0
    raw_set = {tuple(r) for r in raw.tolist()}
    return len(raw_set & {tuple(r) for r in other.tolist()}) / len(raw_set)


def evaluate_descriptor_quantizer(model: DSQAutoEncoder, desc0: np.ndarray, desc1: np.ndarray) -> dict[str, float]:
    """Validation numbers on one image pair (desc0 (N0, D), desc1 (N1, D)).

    - ``cosine``: mean cosine between raw and decoded descriptors.
    - ``mnn_agreement_map``: raw matches of (raw image 0, raw image 1) recovered when image 1 is a
      quantized map (raw query vs decoded map: the localizer's case).
    - ``mnn_agreement_both``: the same when both sides are decoded.
    """
    dec0 = model.decode(model.encode(desc0))
    dec1 = model.decode(model.encode(desc1))
    raw0 = desc0 / np.linalg.norm(desc0, axis=1, keepdims=True).clip(1e-12)
    raw1 = desc1 / np.linalg.norm(desc1, axis=1, keepdims=True).clip(1e-12)
    cosine = float(np.concatenate([(raw0 * dec0).sum(1), (raw1 * dec1).sum(1)]).mean())
    raw = mutual_nearest_neighbours(raw0, raw1)
    # Reference: each dimension rounded to 8 bits on [-1, 1] (no learning), same byte count when
    # code_dim == in_dim.
    uniform1 = np.round((raw1 + 1.0) * 127.5) / 127.5 - 1.0
    return {
        "cosine": cosine,
        "num_raw_matches": float(len(raw)),
        "mnn_agreement_map": match_agreement(raw, mutual_nearest_neighbours(raw0, dec1)),
        "mnn_agreement_both": match_agreement(raw, mutual_nearest_neighbours(dec0, dec1)),
        "uniform8_mnn_agreement_map": match_agreement(raw, mutual_nearest_neighbours(raw0, uniform1)),
    }
