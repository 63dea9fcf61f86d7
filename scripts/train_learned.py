#!/usr/bin/env python
"""Produce the shipped learned-selection weights (scenesqueezer_core/weights/learned_xfeat.safetensors).

    python scripts/train_learned.py [--work outputs/learned] [--steps 3000] [--stage1-steps 1500]
        [--ratio-range LO HI] [--run-name run] [--export W.safetensors]

1. Render synthetic training scenes (seeds >= 200, never the test/benchmark seeds 0-99) and a held-out
   validation scene, build their xfeat SceneMaps.
2. Build training samples (one .npz per co-visible cluster: network inputs + query-match labels from
   the scene's query_day / query_night frames) with ``learned.data.build_training_samples``.
3. Train with ``scenesqueezer train`` logic (``learned.train.train``; resumable in WORK/run) and export
   the weights. Everything is deterministic given the seeds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("GLOG_minloglevel", "2")

TRAIN_SCENES = [("street", 200, 60), ("courtyard", 201, 60), ("street", 202, 60), ("courtyard", 203, 60),
                ("street", 205, 60), ("courtyard", 206, 60), ("street", 207, 60), ("courtyard", 208, 60)]
VAL_SCENES = [("street", 204, 60), ("courtyard", 209, 60)]
# real photographs: the mapping split only (its held-out frames are the queries); the query split
# stays unseen for the benchmarks
REAL_TRAIN_DATASETS = ["strecha_castle_p30", "strecha_fountain_p11"]
SHARED = Path(os.environ.get("SCENESQUEEZER_SHARED_DATA", REPO.parent / "shared" / "data"))


def prepare(work: Path, scenes: list[tuple[str, int, int]], samples_dir: Path) -> None:
    import torch

    from scenesqueezer_core.learned.data import build_training_samples
    from scenesqueezer_core.mapping import build_map
    from scenesqueezer_core.synthetic import generate_scene

    torch.set_num_threads(2)
    for preset, seed, frames in scenes:
        name = f"{preset}_seed{seed}_{frames}f"
        scene, map_path = work / "scenes" / name, work / "scenes" / f"{name}.ssmap"
        if not (scene / "splits.json").exists():
            generate_scene(scene, preset=preset, seed=seed, num_frames=frames, num_workers=1)
        if not map_path.exists():
            build_map(scene, map_path, features="xfeat", device="cpu")
        if not list(samples_dir.glob(f"{name}_c*.npz")):
            t0 = time.perf_counter()
            paths = build_training_samples(scene, map_path, samples_dir, device="cpu", prefix=name)
            print(f"{name}: {len(paths)} samples in {time.perf_counter() - t0:.0f} s", flush=True)


def prepare_real(work: Path, names: list[str], samples_dir: Path) -> None:
    """Samples from the mapping split of real datasets (a set smaller than two clusters of 20 frames gives one)."""
    import json

    from scenesqueezer_core.learned.data import build_training_samples
    from scenesqueezer_core.mapping import build_map

    for name in names:
        source = SHARED / name
        if not source.is_dir():
            print(f"{name}: not found under {SHARED}, skipped", flush=True)
            continue
        mapping_only = work / "real" / name
        if not (mapping_only / "splits.json").exists():
            # a dataset folder whose splits name the mapping images only: the query split stays unseen
            mapping_only.mkdir(parents=True, exist_ok=True)
            splits = json.loads((source / "splits.json").read_text())
            for sub in ("images", "sparse"):
                target = mapping_only / sub
                if not target.exists():
                    target.symlink_to(source / sub, target_is_directory=True)
            (mapping_only / "splits.json").write_text(json.dumps({"mapping": splits["mapping"]}))
        map_path = work / "real" / f"{name}.ssmap"
        if not map_path.exists():
            build_map(mapping_only, map_path, features="xfeat", device="cpu", split="mapping")
        if not list(samples_dir.glob(f"{name}_c*.npz")):
            paths = build_training_samples(mapping_only, map_path, samples_dir, device="cpu", prefix=name)
            print(f"{name}: {len(paths)} samples", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=str(REPO / "outputs" / "learned"))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--stage1-steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ratio-range", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                        help="draw each step's training-QP nu log-uniformly from [LO, HI] (default: nu = 0.02)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--run-name", default=None, help="training folder under WORK (default run; resumed if present)")
    parser.add_argument("--build-samples", action="store_true", help="only render scenes and build samples")
    parser.add_argument("--validate-only", action="store_true",
                        help="recompute the model card's validation numbers of the --export weights")
    parser.add_argument("--export", default=str(REPO / "scenesqueezer_core" / "weights" / "learned_xfeat.safetensors"))
    args = parser.parse_args()
    work = Path(args.work)
    train_dir, val_dir = work / "samples_train", work / "samples_val"
    prepare(work, VAL_SCENES, val_dir)
    if args.validate_only:
        import json

        from scenesqueezer_core.learned.inference import load_learned_model
        from scenesqueezer_core.learned.train import DEFAULT_TRAIN_CONF, _load_samples, validate

        model, info = load_learned_model(args.export)
        got = validate(model, _load_samples([str(val_dir)]), {**DEFAULT_TRAIN_CONF, **info["conf"]}, "cpu")
        print(json.dumps({"recomputed": got, "model_card": info["validation"]}, indent=2))
        return 0
    prepare(work, TRAIN_SCENES, train_dir)
    prepare_real(work, REAL_TRAIN_DATASETS, train_dir)
    if args.build_samples:
        return 0
    from scenesqueezer_core.learned.train import train

    conf = {"steps": args.steps, "stage1_steps": args.stage1_steps, "seed": args.seed, "device": args.device,
            "checkpoint_every": 250, "validate_every": 250, "ratio_range": args.ratio_range}
    result = train([str(train_dir)], work / (args.run_name or "run"), [str(val_dir)], conf, export=args.export)
    print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
