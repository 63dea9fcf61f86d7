#!/usr/bin/env python
"""Train the shipped global-descriptor models of compressed maps (one per feature type).

For each feature type: a generic VLAD codebook (K * D = 1024) fitted on descriptors of synthetic
training scenes (seeds never used by tests / benchmarks: 100+) and the Strecha mapping images, and
a GlobalQuantizer (1024-d VLAD -> 1024 uint8 codes) trained with APLoss + reconstruction, positives
being frames of the same scene whose cameras are close and look the same way.

    python scripts/train_global_models.py --features xfeat sift aliked

Writes scenesqueezer_core/weights/{vlad,global}_<features>.safetensors and appends the figures to
scenesqueezer_core/weights/GLOBAL_MODEL_CARD.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scenesqueezer_core.atomic import atomic_write_text  # noqa: E402
from scenesqueezer_core.maps.global_model import (  # noqa: E402
    GLOBAL_DIM, global_quantizer_path, save_vlad_codebook, vlad_path)
from scenesqueezer_core.compression.quantizer_training import train_global_quantizer  # noqa: E402
from scenesqueezer_core.features.weights import WEIGHTS_DIR  # noqa: E402
from scenesqueezer_core.dataset import load_dataset, read_image  # noqa: E402
from scenesqueezer_core.features import get_extractor  # noqa: E402
from scenesqueezer_core.retrieval import VladModel, top_k  # noqa: E402

TRAIN_SCENES = [("street", 101), ("courtyard", 102), ("street", 103)]
SHARED = REPO.parent / "shared" / "data"


def scene_dirs(cache: Path, frames: int) -> list[Path]:
    from scenesqueezer_core.synthetic import generate_scene

    dirs = []
    for preset, seed in TRAIN_SCENES:
        out = cache / f"{preset}_seed{seed}_{frames}f"
        if not (out / "splits.json").exists():
            print(f"generating {out}", flush=True)
            generate_scene(out, preset=preset, seed=seed, num_frames=frames)
        dirs.append(out)
    dirs += [SHARED / "strecha_fountain_p11", SHARED / "strecha_castle_p30"]
    return dirs


def positives_for(frames, max_distance: float, max_angle_deg: float) -> np.ndarray:
    centers = np.stack([f.cam_from_world.center for f in frames])
    axes = np.stack([f.cam_from_world.R[2] for f in frames])
    dist = np.linalg.norm(centers[:, None] - centers[None], axis=-1)
    return (dist < max_distance) & (axes @ axes.T > np.cos(np.radians(max_angle_deg)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", nargs="+", default=["xfeat", "sift", "aliked"])
    parser.add_argument("--cache", default=str(REPO / "outputs" / "training_scenes"))
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    datasets = [load_dataset(d) for d in scene_dirs(Path(args.cache), args.frames)]
    card_path = WEIGHTS_DIR / "GLOBAL_MODEL_CARD.json"
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    for features in args.features:
        t0 = time.perf_counter()
        extractor = get_extractor(features)
        per_scene = []
        for ds in datasets:
            frames = [f for f in ds.frames.values() if f.cam_from_world is not None]
            # extracted descriptors are cached: retraining the quantizer must not re-run the extractor
            cache_file = Path(args.cache) / "descriptors" / f"{ds.root.name}_{features}.npz"
            if cache_file.exists():
                with np.load(cache_file) as npz:
                    desc = [npz[f"d{i}"] for i in range(len(frames))]
            else:
                desc = [extractor.extract(read_image(f.image_path)).descriptors for f in frames]
                cache_file.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cache_file, **{f"d{i}": d for i, d in enumerate(desc)})
            per_scene.append((ds, frames, desc))
        dim = per_scene[0][2][0].shape[1]
        k = GLOBAL_DIM // dim
        from scipy.cluster.vq import kmeans2

        rng = np.random.default_rng(args.seed)
        pool = np.concatenate([d for _, _, descs in per_scene for d in descs])
        pool = pool[rng.choice(len(pool), min(len(pool), 200_000), replace=False)]
        centroids, _ = kmeans2(pool.astype(np.float32), k, minit="++", seed=args.seed, iter=30)
        vlad = VladModel(centroids.astype(np.float32), np.zeros(0, np.float32), np.zeros((0, 0), np.float32))
        globals_, blocks, scene_ids = [], [], []
        for si, (ds, frames, descs) in enumerate(per_scene):
            globals_.append(np.stack([vlad.raw_vlad(d) for d in descs]))
            # synthetic scenes are metric street scale, Strecha scenes are a few metres across
            max_dist = 8.0 if "strecha" not in ds.root.name else 3.0
            blocks.append(positives_for(frames, max_dist, 45.0))
            scene_ids += [si] * len(frames)
        g = np.concatenate(globals_).astype(np.float32)
        n = len(g)
        positives = np.zeros((n, n), dtype=bool)
        start = 0
        for b in blocks:
            positives[start:start + len(b), start:start + len(b)] = b
            start += len(b)
        model = train_global_quantizer(g, positives, {"features": features, "epochs": args.epochs, "seed": args.seed, "max_seconds": 240.0, "progress": False})
        decoded = model.decode(model.encode(g))
        recon = float(np.mean(np.sum(decoded * g / np.linalg.norm(g, axis=1, keepdims=True), axis=1)))
        # retrieval check: top-1 of each frame (itself excluded) among the decoded codes is a positive
        hits_raw, hits_q = [], []
        for i in range(n):
            order, _ = top_k(g[i], g, 2)
            hits_raw.append(positives[i, [o for o in order if o != i][0]])
            order, _ = top_k(g[i], decoded, 2)
            hits_q.append(positives[i, [o for o in order if o != i][0]])
        save_vlad_codebook(vlad_path(features), vlad.centroids)
        model.to_safetensors(global_quantizer_path(features))
        card[features] = {
            "command": f"python scripts/train_global_models.py --features {features} --frames {args.frames} "
                       f"--epochs {args.epochs} --seed {args.seed}",
            "training_scenes": [str(ds.root.name) for ds, _, _ in per_scene],
            "num_images": n, "vlad_words": k, "descriptor_dim": dim,
            "reconstruction_cosine": round(recon, 4),
            "top1_positive_rate_raw": round(float(np.mean(hits_raw)), 4),
            "top1_positive_rate_quantized": round(float(np.mean(hits_q)), 4),
            "seconds": round(time.perf_counter() - t0, 1),
            "global_hash": model.content_hash,
        }
        print(json.dumps({features: card[features]}, indent=1), flush=True)
        atomic_write_text(card_path, json.dumps(card, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
