"""``scenesqueezer train``: two-stage training of the point-scoring network, with exact resume.

    scenesqueezer train SAMPLES_DIR [...] --out RUN_DIR [--val VAL_DIR ...] [--steps 600]
                        [--stage1-steps 400] [--checkpoint-every 50] [--validate-every 100]
                        [--seed 0] [--device auto] [--export WEIGHTS.safetensors]

Samples are the ``.npz`` clusters written by ``learned.data.build_training_samples``
(``scripts/train_learned.py`` builds them from synthetic scenes). Stage 1 (steps < stage1_steps)
trains on L_d only; stage 2 on L_d + weight_xi * L_xi through the differentiable QP, each step on
one cluster with ``points_per_step`` (<= 1000) randomly drawn points.

Resume: ``RUN_DIR/checkpoint.pt`` (written atomically every ``checkpoint_every`` steps) holds the
model, optimizer, step, the training RNG (one ``torch.Generator`` draws every random choice) and the
CSV log up to that step; a run started again on the same RUN_DIR continues from it and ends with
weights identical to an uninterrupted run (tested). Logs: ``RUN_DIR/log.csv`` (step, stage, losses,
validation columns) and a tqdm bar.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_path, atomic_write_text
from ..errors import ConfigError
from ..features.base import merge_conf, resolve_device
from .data import INPUT_KEYS, POINT_STATS_DIM, load_sample, subsample
from .losses import distinctiveness_loss, pose_loss, pose_success_probability
from .networks import LearnedConfig, SceneSqueezerNet
from .qp import qp_select

__all__ = ["DEFAULT_TRAIN_CONF", "train", "add_train_command", "export_weights", "validate"]

DEFAULT_TRAIN_CONF: dict[str, Any] = {
    "steps": 600,
    "stage1_steps": 400,
    "points_per_step": 1000,
    "lr": 1e-3,
    "weight_xi": 1.0,
    "ratio": 0.02,  # nu of the training QP (the benchmark compresses to <= 2 % of the bytes); validation's nu
    # [lo, hi]: each step draws its nu log-uniformly from this range instead, used by the stage-2 pose
    # loss (users pick the compression ratio, so the kernel and tau should trade coverage for
    # distinctiveness at any budget)
    "ratio_range": None,
    "checkpoint_every": 50,
    "validate_every": 100,
    "seed": 0,
    "device": "auto",
    # 1: bit-identical runs. With 2 CPU threads some reductions change order between runs (seen:
    # a 1e-6 difference at step 31, and 3000-step runs ending at val_spearman 0.42 vs 0.34)
    "threads": 1,
    "model": {},  # LearnedConfig overrides
}

LOG_FIELDS = ["step", "stage", "loss", "loss_d", "loss_xi", "tau", "seconds",
              "val_loss_d", "val_spearman", "val_pose_success", "val_pose_success_random"]


def to_tensors(sample: dict[str, np.ndarray], device: str) -> dict[str, torch.Tensor]:
    out = {}
    for key in INPUT_KEYS + ("target", "match_query", "match_point", "match_correct"):
        if key in sample:
            value = torch.from_numpy(np.ascontiguousarray(sample[key]))
            if value.dtype in (torch.int32, torch.int16):
                value = value.long()
            out[key] = value.to(device)
    return out


def _load_samples(dirs: list[str]) -> list[dict[str, Any]]:
    paths = sorted(p for d in dirs for p in (Path(d).glob("*.npz") if Path(d).is_dir() else [Path(d)]))
    if not paths:
        raise ConfigError(f"no training samples (*.npz) in {', '.join(dirs)}; build them with "
                          "`python scripts/train_learned.py --build-samples` first")
    return [load_sample(p) for p in paths]


def _draw_points(m: int, count: int, generator: torch.Generator) -> np.ndarray:
    if m <= count:
        return np.arange(m)
    return np.sort(torch.randperm(m, generator=generator)[:count].numpy())


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return 0.0
    return float(spearmanr(a, b).statistic)


def step_losses(model: SceneSqueezerNet, batch: dict[str, torch.Tensor], num_queries: int, nu: float,
                with_pose: bool) -> dict[str, torch.Tensor]:
    out = model(batch)
    loss_d = distinctiveness_loss(out["d"], out["log_var"], batch["target"])
    loss_xi = torch.zeros((), dtype=loss_d.dtype)
    if with_pose:
        alpha = qp_select(out["d"], out["kernel_features"], out["tau"], nu)
        loss_xi = pose_loss(alpha, batch["match_query"], batch["match_point"], batch["match_correct"], num_queries, nu)
    return {"loss_d": loss_d, "loss_xi": loss_xi, "tau": out["tau"].detach()}


@torch.no_grad()
def validate(model: SceneSqueezerNet, samples: list[dict[str, Any]], conf: dict[str, Any], device: str) -> dict[str, float]:
    """Mean L_d, Spearman(d, target) and pose-success surrogate (learned vs random selection) on samples."""
    model.eval()
    generator = torch.Generator().manual_seed(12345)  # fixed: every validation sees the same points
    losses, rhos, success, success_random = [], [], [], []
    for sample in samples:
        keep = _draw_points(len(sample["xyz_norm"]), conf["points_per_step"], generator)
        sub = subsample(sample, keep)
        batch = to_tensors(sub, device)
        out = model(batch)
        losses.append(float(distinctiveness_loss(out["d"], out["log_var"], batch["target"])))
        rhos.append(_spearman(out["d"].cpu().numpy(), sub["target"]))
        nq = int(sample["num_queries"])
        alpha = qp_select(out["d"], out["kernel_features"], out["tau"], conf["ratio"])
        m = len(keep)
        k = max(1, int(math.ceil(conf["ratio"] * m)))
        rand = torch.zeros(m, dtype=alpha.dtype)
        rand[torch.randperm(m, generator=generator)[:k]] = 1.0 / k
        args = (batch["match_query"], batch["match_point"], batch["match_correct"], nq, conf["ratio"])
        if nq:
            success.append(float(pose_success_probability(alpha, *args).mean()))
            success_random.append(float(pose_success_probability(rand, *args).mean()))
    model.train()

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    return {"val_loss_d": mean(losses), "val_spearman": mean(rhos), "val_pose_success": mean(success),
            "val_pose_success_random": mean(success_random)}


def export_weights(model: SceneSqueezerNet, path: str | os.PathLike, info: dict[str, Any]) -> Path:
    """Write the model as safetensors with its config and ``info`` in the metadata (atomically)."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"config": json.dumps(model.config.to_dict()), "info": json.dumps(info)}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return path


def _save_checkpoint(path: Path, model, optimizer, step: int, generator: torch.Generator, log_rows: list[dict]) -> None:
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
             "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
             "log": json.dumps(log_rows)}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _write_log(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _ratio_range(conf: dict[str, Any]) -> tuple[float, float] | None:
    value = conf.get("ratio_range")
    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"ratio_range must be [lo, hi] or null, got {value!r}") from None
    if not 0 < lo <= hi <= 1:
        raise ConfigError(f"ratio_range [{lo}, {hi}] must satisfy 0 < lo <= hi <= 1")
    return lo, hi


def train(samples: list[str], out_dir: str | os.PathLike, val_samples: list[str] | None = None,
          conf: dict[str, Any] | None = None, export: str | os.PathLike | None = None,
          stop_after: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) in ``out_dir``; returns {"weights", "step", "validation"}.

    ``stop_after``: stop (as a kill would) once this many steps are done in this call, right after
    the checkpoint of that step if there is one (for resume tests).
    """
    from tqdm import tqdm

    conf = merge_conf(DEFAULT_TRAIN_CONF, conf)
    if not 1 <= int(conf["points_per_step"]) <= 1000:
        raise ConfigError(f"points_per_step must be in [1, 1000] (the training QP is dense), got {conf['points_per_step']}")
    if int(conf["steps"]) < 1 or int(conf["checkpoint_every"]) < 1:
        raise ConfigError("steps and checkpoint_every must be >= 1")
    ratio_range = _ratio_range(conf)
    device = resolve_device(conf["device"])
    torch.set_num_threads(int(conf["threads"]))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_set = _load_samples(list(samples))
    val_set = _load_samples(list(val_samples)) if val_samples else []
    dims = {int(s["obs_desc"].shape[1]) for s in train_set}
    if len(dims) != 1:
        raise ConfigError(f"training samples mix descriptor sizes {sorted(dims)}; train one feature setup at a time")
    if any("point_stats" not in s for s in train_set + val_set):
        raise ConfigError("training samples without point_stats (built by an older version); rebuild them with "
                          "`python scripts/train_learned.py --build-samples` after deleting the old .npz files")

    torch.manual_seed(int(conf["seed"]))
    model = SceneSqueezerNet(LearnedConfig.from_dict({"point_stats_dim": POINT_STATS_DIM, **conf["model"],
                                                      "descriptor_dim": dims.pop()})).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(conf["lr"]))
    generator = torch.Generator().manual_seed(int(conf["seed"]))
    step, log_rows = 0, []
    ckpt_path = out_dir / "checkpoint.pt"
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        step, log_rows = int(state["step"]), json.loads(state["log"])
    atomic_write_text(out_dir / "train_conf.json", json.dumps({**conf, "samples": list(samples),
                                                                "val_samples": list(val_samples or [])}, indent=2))
    steps_this_call = 0
    bar = tqdm(total=int(conf["steps"]), initial=step, desc="train learned", unit="step", disable=not progress or None)
    while step < int(conf["steps"]):
        t0 = time.perf_counter()
        sample = train_set[int(torch.randint(len(train_set), (1,), generator=generator))]
        keep = _draw_points(len(sample["xyz_norm"]), int(conf["points_per_step"]), generator)
        sub = subsample(sample, keep)
        batch = to_tensors(sub, device)
        stage = 1 if step < int(conf["stage1_steps"]) else 2
        nu = float(conf["ratio"])
        if ratio_range is not None:
            # drawn at every step (both stages) so the generator's sequence, and thus a resume, does not
            # depend on the stage
            u = float(torch.rand((), generator=generator, dtype=torch.float64))
            nu = math.exp(math.log(ratio_range[0]) + u * (math.log(ratio_range[1]) - math.log(ratio_range[0])))
        losses = step_losses(model, batch, int(sample["num_queries"]), nu, with_pose=stage == 2)
        loss = losses["loss_d"] + (float(conf["weight_xi"]) * losses["loss_xi"] if stage == 2 else 0.0)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        step += 1
        steps_this_call += 1
        row = {"step": step, "stage": stage, "loss": f"{float(loss.detach()):.6f}", "loss_d": f"{float(losses['loss_d'].detach()):.6f}",
               "loss_xi": f"{float(losses['loss_xi'].detach()):.6f}", "tau": f"{float(losses['tau']):.4f}",
               "seconds": f"{time.perf_counter() - t0:.3f}"}
        if val_set and (step % int(conf["validate_every"]) == 0 or step == int(conf["steps"])):
            row.update({k: f"{v:.4f}" for k, v in validate(model, val_set, conf, device).items()})
        log_rows.append(row)
        bar.update(1)
        bar.set_postfix(stage=stage, loss_d=row["loss_d"], loss_xi=row["loss_xi"])
        if step % int(conf["checkpoint_every"]) == 0 or step == int(conf["steps"]):
            _save_checkpoint(ckpt_path, model, optimizer, step, generator, log_rows)
            _write_log(out_dir / "log.csv", log_rows)
        if stop_after is not None and steps_this_call >= stop_after:
            bar.close()
            return {"weights": None, "step": step, "validation": None}
    bar.close()
    _write_log(out_dir / "log.csv", log_rows)
    validation = validate(model, val_set, conf, device) if val_set else {}
    info = {"steps": step, "seed": int(conf["seed"]), "conf": {k: v for k, v in conf.items() if k != "device"},
            "samples": [str(s) for s in samples], "val_samples": [str(s) for s in (val_samples or [])],
            "validation": validation}
    weights = export_weights(model, export or out_dir / "weights.safetensors", info)
    return {"weights": weights, "step": step, "validation": validation}


def add_train_command(subparsers) -> argparse.ArgumentParser:
    """Register ``scenesqueezer train`` on an argparse subparsers object."""
    p = subparsers.add_parser("train", help="train the learned point-selection network (stage 1 L_d, stage 2 L_d + L_xi)")
    p.add_argument("samples", nargs="+", help="folders of training samples (*.npz from scripts/train_learned.py)")
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt, log.csv, weights.safetensors; "
                                                "an existing checkpoint there is resumed")
    p.add_argument("--val", nargs="*", default=[], help="folders of validation samples (held-out scenes; "
                                                        "default: none, no validation)")
    # defaults come from DEFAULT_TRAIN_CONF; the help formatter prints them
    option_help = {
        "steps": "total training steps (stage 1 + stage 2)",
        "stage1_steps": "steps of stage 1 (descriptor loss L_d only)",
        "checkpoint_every": "write checkpoint.pt every this many steps",
        "validate_every": "validate every this many steps",
        "seed": "random seed (sample order, point subsets)",
        "points_per_step": "map points drawn per training step",
        "threads": "torch CPU threads (1 is bit-reproducible, 2 is not)",
        "lr": "learning rate",
        "weight_xi": "weight of the stage-2 pose loss L_xi",
        "ratio": "nu of the training QP (fraction of each cluster's points kept)",
    }
    for key in ("steps", "stage1_steps", "checkpoint_every", "validate_every", "seed", "points_per_step", "threads"):
        p.add_argument("--" + key.replace("_", "-"), type=int, default=DEFAULT_TRAIN_CONF[key], help=option_help[key])
    for key in ("lr", "weight_xi", "ratio"):
        p.add_argument("--" + key.replace("_", "-"), type=float, default=DEFAULT_TRAIN_CONF[key], help=option_help[key])
    p.add_argument("--ratio-range", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                   help="draw each step's QP nu log-uniformly from [LO, HI] (default: always --ratio)")
    p.add_argument("--device", default=DEFAULT_TRAIN_CONF["device"], help="auto | cpu | cuda | mps")
    p.add_argument("--export", default=None, help="write the final weights here too (default: RUN_DIR/weights.safetensors)")
    p.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=train_cli)
    return p


def train_cli(args: argparse.Namespace) -> int:
    keys = ("steps", "stage1_steps", "checkpoint_every", "validate_every", "seed", "points_per_step", "threads",
            "lr", "weight_xi", "ratio", "ratio_range", "device")
    conf = {k: getattr(args, k) for k in keys}
    result = train(args.samples, args.out, args.val, conf, export=args.export, stop_after=args.stop_after)
    if result["weights"] is None:
        print(f"stopped after step {result['step']}; run the same command again to resume")
    else:
        print(f"weights: {result['weights']} after {result['step']} steps; validation: {json.dumps(result['validation'])}")
    return 0
