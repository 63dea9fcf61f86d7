"""Training of the DSQ quantizers (``maps.quantizer``): losses, training loops, validation numbers.

Descriptor quantizers learn to keep raw-query vs decoded-map similarities (the localizer's case);
the global quantizer learns retrieval with APLoss. Used by ``train_quantizer`` (the command) and
``scripts/train_global_models.py``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..features.base import merge_conf
from ..features.matchers import mutual_nearest_neighbours
from ..maps.descriptor_codes import DescriptorCodec
from ..maps.quantizer import DescriptorQuantizer, DSQAutoEncoder, GlobalQuantizer

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
    conf = merge_conf(DESCRIPTOR_TRAIN_CONF, conf, what="training option")
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
    conf = merge_conf(GLOBAL_TRAIN_CONF, conf, what="training option")
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


def match_agreement(raw: np.ndarray, other: np.ndarray) -> float:
    """Fraction of the (M, 2) matches in ``raw`` that also appear in ``other``."""
    if len(raw) == 0:
        return 1.0
    raw_set = {tuple(r) for r in raw.tolist()}
    return len(raw_set & {tuple(r) for r in other.tolist()}) / len(raw_set)


def evaluate_descriptor_quantizer(model: DescriptorCodec, desc0: np.ndarray, desc1: np.ndarray) -> dict[str, float]:
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
