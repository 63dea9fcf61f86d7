#!/usr/bin/env python
"""Compression benchmark (seed Tables B and D): recall and errors vs map bytes for every selection
method at several ratios, beside the uncompressed map; compression time broken down by stage.

    python bench/bench_compression.py [--datasets synthetic fountain castle] [--methods qp kcp kc random]
        [--ratios 0.01 0.03 0.1] [--frames 200] [--seed 0] [--out outputs/bench] [--markdown FILE]

Synthetic scenes: `query_day` and `query_night` are reported separately. Every row of a dataset uses
the same SceneMap (same features), so rows differ only by the selection method and the ratio.
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

from common import emit, number_or_na  # noqa: E402

from scenesqueezer_core.compression.compress import compress_map  # noqa: E402
from scenesqueezer_core.evaluate import evaluate_results, localize_dataset  # noqa: E402
from scenesqueezer_core.mapping import build_map  # noqa: E402
from scenesqueezer_core.maps.scene_map import SceneMap  # noqa: E402
from scenesqueezer_core.synthetic import generate_scene  # noqa: E402

SHARED = Path(os.environ.get("SCENESQUEEZER_SHARED_DATA", REPO.parent / "shared" / "data"))


def dataset_list(names, out: Path, frames: int, seed: int):
    for name in names:
        if name == "synthetic":
            scene = out / f"street_seed{seed}_{frames}f"
            if not (scene / "splits.json").exists():
                generate_scene(scene, preset="street", seed=seed, num_frames=frames)
            yield f"synthetic-street-s{seed}", scene, ["query_day", "query_night"]
        else:
            yield name, SHARED / f"strecha_{name}_p{'11' if name == 'fountain' else '30'}", ["query"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["synthetic", "fountain", "castle"])
    parser.add_argument("--methods", nargs="+", default=["qp", "kcp", "kc", "random"])
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.01, 0.03, 0.1])
    parser.add_argument("--features", default="xfeat")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "outputs" / "bench"))
    parser.add_argument("--markdown", default=None)
    parser.add_argument("--splits", nargs="+", default=None, help="only these query splits (default: all)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    recall_rows = ["| dataset | split | map | ratio | MB | % of uncompr. | points | R 0.25m,2° | R 0.5m,5° | R 5m,10° "
                   "| R 0.25m,1° | med. t (m) | med. R (°) | s / query |", "|" + "---|" * 14]
    time_rows = ["| dataset | method | ratio | clustering s | scores d/K s (sum) | QP s (sum) | selection wall s "
                 "| quantization s | writing s | total s |", "|" + "---|" * 10]

    def add_recall(name, split, label, ratio, path, points, source_bytes, root, results_name):
        results = out / results_name
        localize_dataset(path, root, results, split=split, progress=False)
        m = evaluate_results(results, root)
        r = m["recall"]
        f = number_or_na
        recall_rows.append(
            f"| {name} | {split} | {label} | {ratio} | {m['map_bytes'] / 1e6:.3f} | {100 * m['map_bytes'] / source_bytes:.2f} "
            f"| {points} | {100 * r['0.25m_2deg']:.1f} | {100 * r['0.5m_5deg']:.1f} | {100 * r['5m_10deg']:.1f} "
            f"| {100 * r['0.25m_1deg']:.1f} | {f(m['median_translation_m'])} | {f(m['median_rotation_deg'])} "
            f"| {f(m['median_seconds_per_query'])} |")
        print(recall_rows[-1], flush=True)

    for name, root, splits in dataset_list(args.datasets, out, args.frames, args.seed):
        splits = [s for s in splits if args.splits is None or s in args.splits] or splits
        map_path = out / f"{name}_{args.features}.ssmap"
        if not map_path.exists():
            build_map(root, map_path, features=args.features)

        source = SceneMap.load(map_path)
        source_bytes = map_path.stat().st_size
        for split in splits:
            add_recall(name, split, "uncompressed", "-", map_path, source.num_points, source_bytes, root,
                       f"cres_{name}_uncompressed_{split}.json")
        for method in args.methods:
            for ratio in args.ratios:
                sqz = out / f"{name}_{args.features}_{method}_{ratio}.sqz"
                t0 = time.perf_counter()
                report = compress_map(map_path, sqz, {"ratio": ratio, "method": method})
                t = report["timings"]
                time_rows.append(
                    f"| {name} | {method} | {ratio} | {t['clustering']:.2f} | {t['scores_d_K']:.2f} | {t['qp']:.2f} "
                    f"| {t['selection_wall']:.2f} | {t['quantization']:.2f} | {t['writing']:.2f} | {time.perf_counter() - t0:.2f} |")
                for split in splits:
                    add_recall(name, split, method, ratio, sqz, report["num_points_kept"], source_bytes, root,
                               f"cres_{name}_{method}_{ratio}_{split}.json")
    text = ("## Compression: recall vs map bytes (features: " + args.features + ")\n\n" + "\n".join(recall_rows)
            + "\n\n## Compression time by stage (seed Table D)\n\n" + "\n".join(time_rows) + "\n")
    return emit(text, args.markdown)


if __name__ == "__main__":
    sys.exit(main())
