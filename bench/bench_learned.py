#!/usr/bin/env python
"""Learned vs hand-crafted point selection at equal map bytes on held-out synthetic scenes.

    python bench/bench_learned.py [--scenes street:7 courtyard:8] [--frames 120] [--ratios 0.05 0.1 0.2]
        [--methods learned qp kcp kc random] [--weights W.safetensors] [--out outputs/learned/bench]
        [--markdown FILE] [--no-match-bytes]

Every scene (seeds below 100: never used for training, whose seeds are >= 200) is rendered and
mapped with xfeat. Per ratio, the first method (learned) is compressed at that per-cluster ratio and
its file size is the target; every other method is compressed at the ratio that gives the same file
size within 2 % (a few secant steps on the ratio: at equal ratio, methods that pick points shared by
fewer clusters write bigger files, e.g. random ~38 % more). `--no-match-bytes` compresses every
method at the same ratio instead. query_day and query_night are localized on each map; the table has
one row per scene, method and ratio, then the recall pooled over the scenes' queries.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("GLOG_minloglevel", "2")

from common import emit  # noqa: E402

from scenesqueezer_core.compression.compress import compress_map  # noqa: E402
from scenesqueezer_core.evaluate import evaluate_results, localize_dataset  # noqa: E402
from scenesqueezer_core.mapping import build_map  # noqa: E402
from scenesqueezer_core.synthetic import generate_scene  # noqa: E402

METHODS = ["learned", "qp", "kcp", "kc", "random"]
SPLITS = ("query_day", "query_night")
BYTES_TOLERANCE = 0.02


def scene_and_map(out: Path, preset: str, seed: int, frames: int) -> tuple[Path, Path]:
    name = f"{preset}_seed{seed}_{frames}f"
    scene = out / name
    if not (scene / "splits.json").exists():
        generate_scene(scene, preset=preset, seed=seed, num_frames=frames)
    map_path = out / f"{name}.ssmap"
    if not map_path.exists():
        build_map(scene, map_path, features="xfeat", device="cpu")
    return scene, map_path


def compress_to_bytes(map_path: Path, out_stem: Path, method: str, ratio: float, target: int | None,
                      base_conf: dict, workers: int) -> tuple[Path, float]:
    """Compress with ``method``; with a target, search the ratio whose file has ``target`` bytes (within 2 %)."""
    tried: list[tuple[float, int, Path]] = []
    r = ratio
    for _ in range(6):
        path = out_stem.with_name(f"{out_stem.name}_{method}_{r:.5f}.sqz")
        compress_map(map_path, path, {**base_conf, "ratio": r, "method": method}, executor="process", workers=workers)
        size = path.stat().st_size
        tried.append((r, size, path))
        if target is None or abs(size - target) <= BYTES_TOLERANCE * target:
            return path, r
        # file size is close to affine in the ratio: secant through the two nearest tries (or through 0)
        below = [t for t in tried if t[1] < target]
        above = [t for t in tried if t[1] > target]
        (r0, s0, _), (r1, s1, _) = (max(below, key=lambda t: t[1]) if below else (0.0, 0, None),
                                    min(above, key=lambda t: t[1]) if above else (2 * r, 2 * size, None))
        r = min(1.0, max(1e-4, r0 + (target - s0) * (r1 - r0) / max(s1 - s0, 1)))
    best = min(tried, key=lambda t: abs(t[1] - target))
    return best[2], best[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", nargs="+", default=["street:7", "courtyard:8"], help="preset:seed, seeds < 100")
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    parser.add_argument("--methods", nargs="+", default=METHODS, help="the first one sets the byte target")
    parser.add_argument("--out", default=str(REPO / "outputs" / "learned" / "bench"))
    parser.add_argument("--weights", default=None, help="learned weights (default: the shipped ones)")
    parser.add_argument("--markdown", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-match-bytes", action="store_true")
    parser.add_argument("--skip-uncompressed", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base_conf = {"seed": 0, **({"learned_weights": args.weights} if args.weights else {})}

    rows = ["| scene | method | ratio | MB | % of uncompr. | day loc. | day R 0.25m,2° | night loc. | night R 0.25m,2° "
            "| night R 0.5m,5° |", "|" + "---|" * 10]
    pooled: dict[tuple[str, float], dict[str, list[int]]] = {}

    def evaluate(path: Path, scene: Path) -> dict:
        metrics = {}
        for split in SPLITS:
            results = out / f"results_{path.stem}_{split}.json"
            localize_dataset(path, scene, results, split=split, device="cpu", progress=False)
            metrics[split] = evaluate_results(results, scene)
        return metrics

    def add_row(scene_name, method, ratio_label, path, source_bytes, metrics, key):
        day, night = metrics["query_day"], metrics["query_night"]
        rows.append(f"| {scene_name} | {method} | {ratio_label} | {path.stat().st_size / 1e6:.3f} "
                    f"| {100 * path.stat().st_size / source_bytes:.2f} | {day['num_localized']}/{day['num_queries']} "
                    f"| {100 * day['recall']['0.25m_2deg']:.1f} | {night['num_localized']}/{night['num_queries']} "
                    f"| {100 * night['recall']['0.25m_2deg']:.1f} | {100 * night['recall']['0.5m_5deg']:.1f} |")
        print(rows[-1], flush=True)
        if key is not None:
            acc = pooled.setdefault(key, {s: [0, 0] for s in SPLITS})
            for split in SPLITS:
                m = metrics[split]
                acc[split][0] += round(m["recall"]["0.25m_2deg"] * m["num_queries"])
                acc[split][1] += m["num_queries"]

    for spec in args.scenes:
        preset, seed = spec.split(":")
        scene, map_path = scene_and_map(out, preset, int(seed), args.frames)
        source_bytes = map_path.stat().st_size
        if not args.skip_uncompressed:
            add_row(scene.name, "uncompressed", "1", map_path, source_bytes, evaluate(map_path, scene), None)
        for ratio in args.ratios:
            target = None
            for method in args.methods:
                path, used = compress_to_bytes(map_path, out / scene.name, method, ratio, target, base_conf, args.workers)
                if target is None and not args.no_match_bytes:
                    target = path.stat().st_size
                label = f"{ratio}" if used == ratio else f"{ratio} (bytes: {used:.4f})"
                add_row(scene.name, method, label, path, source_bytes, evaluate(path, scene), (method, ratio))

    summary = ["| method | ratio | day R 0.25m,2° (pooled) | night R 0.25m,2° (pooled) |", "|---|---|---|---|"]
    for (method, ratio), acc in pooled.items():
        summary.append(f"| {method} | {ratio} | {100 * acc['query_day'][0] / max(acc['query_day'][1], 1):.1f} "
                       f"({acc['query_day'][0]}/{acc['query_day'][1]}) | "
                       f"{100 * acc['query_night'][0] / max(acc['query_night'][1], 1):.1f} "
                       f"({acc['query_night'][0]}/{acc['query_night'][1]}) |")
    byte_note = ("every method at the learned file's bytes (within 2 %)" if not args.no_match_bytes
                 else "every method at the same per-cluster ratio")
    text = (f"## Learned vs hand-crafted selection ({byte_note})\n\n" + "\n".join(rows)
            + "\n\n### Pooled over " + ", ".join(args.scenes) + "\n\n" + "\n".join(summary) + "\n")
    return emit(text, args.markdown)


if __name__ == "__main__":
    raise SystemExit(main())
