#!/usr/bin/env python
"""Learned vs hand-crafted point selection at equal map bytes on a held-out synthetic scene.

    python bench/bench_learned.py [--seed 7] [--frames 120] [--ratios 0.015 0.03] [--out outputs/learned/bench]

The scene (street preset, seed 7: never used for training, whose seeds are >= 200) is rendered and
mapped with xfeat, then compressed with every method at the same per-cluster ratio (so every method
keeps the same number of points per cluster and the files have the same size), and query_day /
query_night are localized on each compressed map and on the uncompressed map. Prints one markdown
table: recall (0.25 m, 2 deg), (0.5 m, 5 deg), localized count, map bytes and % of the uncompressed map.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("GLOG_minloglevel", "2")

from scenesqueezer_core.atomic import atomic_write_text  # noqa: E402
from scenesqueezer_core.compression.compress import compress_map  # noqa: E402
from scenesqueezer_core.evaluate import evaluate_results  # noqa: E402
from scenesqueezer_core.localize import localize_dataset  # noqa: E402
from scenesqueezer_core.mapping import build_map  # noqa: E402

METHODS = ["learned", "qp", "kcp", "kc", "random"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="street")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.015, 0.03])
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--out", default=str(REPO / "outputs" / "learned" / "bench"))
    parser.add_argument("--scene", default=None, help="existing scene folder (default: render it under --out)")
    parser.add_argument("--weights", default=None, help="learned weights (default: the shipped ones)")
    parser.add_argument("--markdown", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-uncompressed", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"{args.preset}_seed{args.seed}_{args.frames}f"
    scene = Path(args.scene) if args.scene else out / name
    if not (scene / "splits.json").exists():
        from scenesqueezer_core.synthetic import generate_scene

        generate_scene(scene, preset=args.preset, seed=args.seed, num_frames=args.frames)
    map_path = out / f"{name}.ssmap"
    if not map_path.exists():
        build_map(scene, map_path, features="xfeat", device="cpu")
    source_bytes = map_path.stat().st_size

    rows = ["| map | ratio | split | localized | R 0.25m,2° | R 0.5m,5° | MB | % of uncompressed |",
            "|---|---|---|---|---|---|---|---|"]

    def report(label: str, ratio: str, path: Path) -> None:
        for split in ("query_day", "query_night"):
            results = out / f"results_{path.stem}_{split}.json"
            localize_dataset(path, scene, results, split=split, device="cpu", progress=False)
            m = evaluate_results(results, scene)
            rows.append(f"| {label} | {ratio} | {split} | {m['num_localized']}/{m['num_queries']} "
                        f"| {100 * m['recall']['0.25m_2deg']:.1f} | {100 * m['recall']['0.5m_5deg']:.1f} "
                        f"| {path.stat().st_size / 1e6:.3f} | {100 * path.stat().st_size / source_bytes:.2f} |")
            print(rows[-1], flush=True)

    if not args.skip_uncompressed:
        report("uncompressed", "1", map_path)
    for ratio in args.ratios:
        for method in args.methods:
            sqz = out / f"{name}_{method}_{ratio}.sqz"
            conf = {"ratio": ratio, "method": method, "seed": 0}
            if method == "learned" and args.weights:
                conf["learned_weights"] = args.weights
            compress_map(map_path, sqz, conf, executor="process", workers=args.workers)
            report(method, str(ratio), sqz)
    table = "\n".join(rows)
    print(table)
    if args.markdown:
        atomic_write_text(args.markdown, table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
