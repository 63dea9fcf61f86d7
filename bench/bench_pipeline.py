#!/usr/bin/env python
"""Uncompressed pipeline benchmark: build-map -> localize -> evaluate for each dataset and feature setup.

    python bench/bench_pipeline.py [--features xfeat sift aliked] [--datasets fountain castle synthetic]
                                   [--out outputs/bench] [--markdown outputs/bench/pipeline.md]

Datasets: the Strecha scenes of ../shared/data (map from `mapping`, localize `query`) and the default
synthetic scene (street, seed 0, 200 frames; `query_day` and `query_night`). Prints one markdown table.
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

from scenesqueezer_core.evaluate import evaluate_results, localize_dataset  # noqa: E402
from scenesqueezer_core.mapping import build_map  # noqa: E402
from scenesqueezer_core.synthetic import generate_scene  # noqa: E402

SHARED = Path(os.environ.get("SCENESQUEEZER_SHARED_DATA", REPO.parent / "shared" / "data"))


def datasets(names: list[str], out: Path, frames: int) -> list[tuple[str, Path, list[str]]]:
    found = []
    for name in names:
        if name == "synthetic":
            scene = out / f"street_seed0_{frames}f"
            if not (scene / "splits.json").exists():
                generate_scene(scene, preset="street", seed=0, num_frames=frames)
            found.append(("synthetic-street", scene, ["query_day", "query_night"]))
        else:
            found.append((name, SHARED / f"strecha_{name}_p{'11' if name == 'fountain' else '30'}", ["query"]))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", nargs="+", default=["xfeat", "sift", "aliked"])
    parser.add_argument("--datasets", nargs="+", default=["fountain", "castle", "synthetic"])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--out", default=str(REPO / "outputs" / "bench"))
    parser.add_argument("--markdown", default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    header = ("| dataset | split | features | localized | R 0.25m,2° | R 0.5m,5° | R 5m,10° | R 0.25m,1° "
              "| med. t (m) | med. R (°) | map MB | build s | s / query |")
    rows = [header, "|" + "---|" * 13]
    for name, root, splits in datasets(args.datasets, out, args.frames):
        for features in args.features:
            map_path = out / f"{name}_{features}.ssmap"
            t0 = time.perf_counter()
            if not map_path.exists():
                build_map(root, map_path, features=features, device=args.device)
            build_s = time.perf_counter() - t0
            for split in splits:
                results = out / f"results_{name}_{features}_{split}.json"
                localize_dataset(map_path, root, results, split=split, device=args.device, progress=False)
                m = evaluate_results(results, root)
                r = m["recall"]
                fmt = number_or_na
                rows.append(
                    f"| {name} | {split} | {features} | {m['num_localized']}/{m['num_queries']} "
                    f"| {100 * r['0.25m_2deg']:.1f} | {100 * r['0.5m_5deg']:.1f} | {100 * r['5m_10deg']:.1f} "
                    f"| {100 * r['0.25m_1deg']:.1f} | {fmt(m['median_translation_m'])} | {fmt(m['median_rotation_deg'])} "
                    f"| {m['map_bytes'] / 1e6:.1f} | {build_s:.0f} | {fmt(m['median_seconds_per_query'])} |"
                )
                print(rows[-1], flush=True)
    table = "\n".join(rows)
    return emit("## Uncompressed pipeline\n\n" + table + "\n", args.markdown)


if __name__ == "__main__":
    sys.exit(main())
