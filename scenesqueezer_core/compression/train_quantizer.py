"""Train a descriptor quantizer on a dataset's mapping images and validate it on held-out pairs.

    python -m scenesqueezer_core.compression.train_quantizer --features xfeat \
        --data ../shared/data/strecha_castle_p30 ../shared/data/strecha_fountain_p11 --output weights/

``--codes pq32 pq16 pq8`` trains product-quantizer codebooks (k-means per sub-space,
``compression.product_quantizer_training``) instead of the DSQ auto-encoder (``--codes dsq``, the
default); each is written as ``product_quantizer_<features>_<bytes>.safetensors`` + ``.json``.

``main(argv)`` is what ``scenesqueezer train-quantizer`` runs. Training descriptors come from the
``mapping`` split (with matches between neighbouring frames as same-point pairs); validation pairs
are consecutive frames of the ``query`` split, which the quantizer never saw.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path, atomic_write_text
from ..dataset import load_dataset, read_image
from ..features import FEATURE_SETUPS, get_extractor, get_matcher, setup_extractor
from ..features.base import Features
from ..features.matchers import mutual_nearest_neighbours
from ..maps.descriptor_codes import DESCRIPTOR_CODES, DSQ_CODES, DescriptorCodec
from ..maps.product_quantizer import shipped_product_quantizer_path
from .product_quantizer_training import train_product_quantizer
from .quantizer_training import (
    DESCRIPTOR_TRAIN_CONF,
    evaluate_descriptor_quantizer,
    match_agreement,
    train_descriptor_quantizer,
)


def extract_features(
    dataset_dir: str | os.PathLike, setup: str, split: str, cache_dir: str | os.PathLike | None = None
) -> list[tuple[str, Features, np.ndarray]]:
    """[(image name, Features, camera centre (3,))] of a split, cached as .npz per image when asked."""
    dataset = load_dataset(dataset_dir)
    name, conf = setup_extractor(setup)
    extractor = None
    conf_tag = hashlib.sha1(json.dumps([name, conf], sort_keys=True).encode()).hexdigest()[:8]
    results = []
    for frame in dataset.split(split):
        cache = None
        if cache_dir is not None:
            cache = Path(cache_dir) / f"{Path(dataset_dir).name}__{frame.name.replace('/', '_')}__{name}-{conf_tag}.npz"
        if cache is not None and cache.exists():
            with np.load(cache) as z:
                width, height = (int(v) for v in z["image_size"])
                features = Features(z["keypoints"], z["scores"], z["descriptors"], (width, height))
        else:
            extractor = extractor or get_extractor(name, conf)
            features = extractor.extract(read_image(frame.image_path))
            if cache is not None:
                with atomic_path(cache) as tmp:
                    with open(tmp, "wb") as fh:
                        np.savez(fh, keypoints=features.keypoints, scores=features.scores,
                                 descriptors=features.descriptors, image_size=np.array(features.image_size))
        centre = frame.cam_from_world.center if frame.cam_from_world is not None else np.full(3, np.nan)
        results.append((frame.name, features, np.asarray(centre, np.float64)))
    return results


def neighbour_matches(descriptors: list[np.ndarray], centres: np.ndarray, neighbours: int = 2,
                      ratio: float = 0.8) -> np.ndarray:
    """Same-point pairs (M, 2) into the concatenated descriptors: ratio-tested mutual NN between each
    frame and its ``neighbours`` nearest frames by camera centre (by index order without poses)."""
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in descriptors])])
    n = len(descriptors)
    if np.isfinite(centres).all():
        distances = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    else:
        index = np.arange(n, dtype=float)
        distances = np.abs(index[:, None] - index[None])
    np.fill_diagonal(distances, np.inf)
    done, pairs = set(), []
    for i in range(n):
        for j in np.argsort(distances[i])[:neighbours]:
            key = (min(i, int(j)), max(i, int(j)))
            if key in done or len(descriptors[key[0]]) < 2 or len(descriptors[key[1]]) < 2:
                continue
            done.add(key)
            d0, d1 = descriptors[key[0]], descriptors[key[1]]
            matches = mutual_nearest_neighbours(d0, d1)
            # Lowe's ratio on L2 distances of unit vectors: d^2 = 2 - 2 s.
            sim = d0[matches[:, 0]] @ d1.T
            top2 = np.sort(sim, axis=1)[:, -2:]
            dist = np.sqrt(np.clip(2 - 2 * top2, 0, None))
            keep = dist[:, 1] < ratio * dist[:, 0]
            pairs.append(matches[keep] + [offsets[key[0]], offsets[key[1]]])
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)


def validate(model: DescriptorCodec, setup: str,
             pairs: list[tuple[str, Features, Features]]) -> dict[str, Any]:
    """Per-pair and mean validation numbers: cosine, plain mutual-NN agreement, and agreement of the
    setup's own matcher (raw/raw vs raw query/decoded map)."""
    matcher_name, matcher_conf = FEATURE_SETUPS[setup]["matcher"]
    matcher = get_matcher(matcher_name, matcher_conf)
    rows = []
    for label, f0, f1 in pairs:
        row = {"pair": label, **evaluate_descriptor_quantizer(model, f0.descriptors, f1.descriptors)}
        decoded1 = Features(f1.keypoints, f1.scores, model.decode(model.encode(f1.descriptors)), f1.image_size)
        raw = matcher.match(f0, f1).indices
        quantized = matcher.match(f0, decoded1).indices
        row["matcher_raw_matches"] = float(len(raw))
        row["matcher_map_matches"] = float(len(quantized))
        row["matcher_agreement_map"] = match_agreement(raw, quantized)
        rows.append(row)
    keys = [k for k in rows[0] if k != "pair"] if rows else []
    return {"pairs": rows, "mean": {k: float(np.mean([r[k] for r in rows])) for k in keys}, "matcher": matcher_name}


def consecutive_pairs(items: list[tuple[str, Features, np.ndarray]]) -> list[tuple[str, Features, Features]]:
    items = sorted(items, key=lambda item: item[0])
    return [(f"{a[0]}-{b[0]}", a[1], b[1]) for a, b in zip(items[:-1], items[1:])]


def train_from_datasets(
    setup: str, data: list[str], conf: dict[str, Any] | None = None, cache_dir: str | None = None,
    max_descriptors: int | None = None, seed: int = 0, codes: str = DSQ_CODES,
) -> tuple[Any, dict[str, Any]]:
    """Train on the mapping splits of ``data`` and validate on consecutive pairs of their query splits."""
    extractor_name, extractor_conf = setup_extractor(setup)
    started = time.perf_counter()
    train_items, val_pairs = [], []
    for folder in data:
        train_items += extract_features(folder, setup, "mapping", cache_dir)
        dataset_label = Path(folder).name
        val_pairs += [(f"{dataset_label}:{label}", f0, f1)
                      for label, f0, f1 in consecutive_pairs(extract_features(folder, setup, "query", cache_dir))]
    extract_seconds = time.perf_counter() - started
    descriptors = [item[1].descriptors.astype(np.float32) for item in train_items]
    descriptors = [d / np.linalg.norm(d, axis=1, keepdims=True).clip(1e-12) for d in descriptors]
    matches = neighbour_matches(descriptors, np.stack([item[2] for item in train_items]))
    all_desc = np.concatenate(descriptors)
    if max_descriptors is not None and len(all_desc) > max_descriptors:
        # Subsample, keeping matched pairs whose both ends survive.
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(all_desc), max_descriptors, replace=False))
        remap = np.full(len(all_desc), -1)
        remap[keep] = np.arange(len(keep))
        matches = remap[matches]
        matches = matches[(matches >= 0).all(1)]
        all_desc = all_desc[keep]
    conf = {**(conf or {}), "features": extractor_name, "seed": seed}
    model: Any
    if codes == DSQ_CODES:
        model = train_descriptor_quantizer(all_desc, conf, matches=matches)
        history, model_conf, weights_bytes = model.training_history, model.conf, model.num_bytes
    else:
        model = train_product_quantizer(all_desc, int(codes.removeprefix("pq")), features=extractor_name, seed=seed)
        history, model_conf, weights_bytes = model.training, {"codes": codes}, model.codebooks.nbytes
    report = {
        "features": extractor_name,
        "feature_setup": setup,
        "extractor_conf": extractor_conf,
        "train_images": len(train_items),
        "train_descriptors": int(len(all_desc)),
        "train_match_pairs": int(len(matches)),
        "codes": codes,
        "train_conf": {**DESCRIPTOR_TRAIN_CONF, **conf} if codes == DSQ_CODES else {"seed": seed},
        "training_history": history,
        "extract_seconds": extract_seconds,
        "model_conf": model_conf,
        "weights_bytes": weights_bytes,
        "content_hash": model.content_hash,
        "validation": validate(model, setup, val_pairs) if val_pairs else None,
    }
    return model, report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scenesqueezer train-quantizer",
        description="Train the DSQ descriptor quantizer on datasets' mapping images; validate on query pairs.",
    )
    parser.add_argument("--features", required=True, choices=sorted(FEATURE_SETUPS), help="feature setup")
    parser.add_argument("--data", required=True, nargs="+", help="dataset folder(s) with images/, sparse/, splits.json")
    parser.add_argument("--output", required=True, help="output folder (quantizer_<features>.safetensors + .json, "
                                                        "product_quantizer_<features>_<bytes>.* for --codes pqN)")
    parser.add_argument("--codes", nargs="+", default=[DSQ_CODES], choices=DESCRIPTOR_CODES,
                        help="what to train: dsq (the 8-bit auto-encoder) and/or pq32 pq16 pq8 (product quantizers)")
    parser.add_argument("--epochs", type=int, default=DESCRIPTOR_TRAIN_CONF["epochs"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-descriptors", type=int, default=None, help="subsample the training set")
    parser.add_argument("--cache-dir", default=None, help="cache extracted features here (.npz per image)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads while training")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    conf = {"epochs": args.epochs, "num_threads": args.threads, "progress": not args.quiet}
    out_dir = Path(args.output)
    command = "scenesqueezer train-quantizer " + " ".join(argv if argv is not None else sys.argv[1:])
    for codes in args.codes:
        model, report = train_from_datasets(args.features, args.data, conf, args.cache_dir, args.max_descriptors,
                                            args.seed, codes=codes)
        if codes == DSQ_CODES:
            weights = model.to_safetensors(out_dir / f"quantizer_{report['features']}.safetensors")
        else:
            name = shipped_product_quantizer_path(report["features"], model.code_dim).name
            weights = model.to_safetensors(out_dir / name)
        report["command"] = command
        atomic_write_text(weights.with_suffix(".json"), json.dumps(report, indent=1, default=str) + "\n")
        mean = (report["validation"] or {}).get("mean", {})
        print(f"wrote {weights} ({weights.stat().st_size} bytes, sha256 {report['content_hash'][:12]}...)")
        for key in ("cosine", "mnn_agreement_map", "mnn_agreement_both", "matcher_agreement_map"):
            if key in mean:
                print(f"  validation {key}: {mean[key]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
