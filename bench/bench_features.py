"""Median per-image extraction time per extractor and per-pair matching time per matcher.

    python bench/bench_features.py [--device auto|cpu|cuda] [--repeats 3] [--threads 2]

Images are Strecha fountain photos resized to 640x480 and 1024x683; each setup of FEATURE_SETUPS
is timed with its own extractor / matcher confs. One warm-up call precedes the timed ones.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scenesqueezer_core.features import FEATURE_SETUPS, get_extractor, get_matcher  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "strecha_fountain_p11" / "images"
SIZES = [(640, 480), (1024, 683)]


def load_rgb(path: Path):
    """(H, W, 3) uint8 RGB; OpenCV directly, so that the benchmark runs where pycolmap is not installed."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {path}: pass --data with a folder holding 0004.jpg and 0005.jpg")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_seconds(function, repeats: int, device: str) -> float:
    function()  # warm-up: lazy initialisation, allocator, cuDNN autotuning
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        function()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--data", type=Path, default=DATA, help="folder with 0004.jpg and 0005.jpg")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    originals = [load_rgb(args.data / name) for name in ("0004.jpg", "0005.jpg")]
    images = {size: [cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in originals] for size in SIZES}

    print(f"device={args.device} (cuda available: {torch.cuda.is_available()}), threads={args.threads}, "
          f"repeats={args.repeats}")
    print()
    print("| setup | extractor (conf) | " + " | ".join(f"extract {w}x{h} [s/img]" for w, h in SIZES)
          + " | keypoints @1024 | matcher | match @1024 [s/pair] | matches |")
    print("| --- | --- | " + " | ".join("---" for _ in SIZES) + " | --- | --- | --- | --- |")
    for setup, spec in FEATURE_SETUPS.items():
        extractor_name, extractor_conf = spec["extractor"]
        matcher_name, matcher_conf = spec["matcher"]
        extractor = get_extractor(extractor_name, extractor_conf, args.device)
        matcher = get_matcher(matcher_name, matcher_conf, args.device)
        extract_times = [
            median_seconds(lambda im=images[size][0]: extractor.extract(im), args.repeats, extractor.device)
            for size in SIZES
        ]
        features0, features1 = (extractor.extract(im) for im in images[SIZES[-1]])
        match_time = median_seconds(lambda: matcher.match(features0, features1), args.repeats, matcher.device)
        n_matches = len(matcher.match(features0, features1))
        conf = ", ".join(f"{k}={v}" for k, v in extractor_conf.items())
        print(f"| {setup} | {extractor_name} ({conf}) | "
              + " | ".join(f"{t:.3f}" for t in extract_times)
              + f" | {len(features0)}/{len(features1)} | {matcher_name} | {match_time:.3f} | {n_matches} |")

    # Batched matching of one query against many map frames (the localizer's pattern).
    for setup in ("xfeat", "sift"):
        extractor_name, extractor_conf = FEATURE_SETUPS[setup]["extractor"]
        matcher_name, matcher_conf = FEATURE_SETUPS[setup]["matcher"]
        extractor = get_extractor(extractor_name, extractor_conf, args.device)
        matcher = get_matcher(matcher_name, matcher_conf, args.device)
        query, other = (extractor.extract(im) for im in images[SIZES[-1]])
        batched = median_seconds(lambda: matcher.match_many(query, [other] * 10), args.repeats, matcher.device)
        looped = median_seconds(lambda: [matcher.match(query, other) for _ in range(10)], args.repeats,
                                matcher.device)
        print(f"\n{setup} {matcher_name}: 10 pairs batched {batched:.3f} s vs looped {looped:.3f} s")


if __name__ == "__main__":
    main()
