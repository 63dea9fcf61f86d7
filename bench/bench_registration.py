#!/usr/bin/env python
"""Registration time vs top-k (seed Table E) with the per-stage breakdown, per feature setup.

    python bench/bench_registration.py --map outputs/bench/x.sqz --dataset DIR [--split query_day]
        [--topk 5 15 30 50] [--device auto] [--max-queries 40] [--markdown FILE]

Several --map arguments may be given (e.g. one per feature setup). Times are medians over queries
of the localizer's own stage timings (extract, retrieve, match, pnp, total), in seconds.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("GLOG_minloglevel", "2")

from common import emit  # noqa: E402
from scenesqueezer_core.dataset import load_dataset, read_image  # noqa: E402
from scenesqueezer_core.evaluate import compute_metrics  # noqa: E402
from scenesqueezer_core.localization import Localizer  # noqa: E402
from scenesqueezer_core.maps.database import load_database  # noqa: E402


def device_name(device: str) -> str:
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--map", action="append", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--split", default="query_day")
    parser.add_argument("--topk", nargs="+", type=int, default=[5, 15, 30, 50])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-queries", type=int, default=40)
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args()

    dataset = load_dataset(args.dataset)
    frames = dataset.split(args.split)[: args.max_queries]
    images = [read_image(f.image_path) for f in frames]
    rows = [f"Device: {device_name(args.device)}", "",
            "| map | features | top-k | extract | retrieve | match | pnp | total (median s) | p90 total | R 0.25m,2° |",
            "|" + "---|" * 10]
    for map_path in args.map:
        database = load_database(map_path)
        for k in args.topk:
            localizer = Localizer(database, {"top_k": k}, device=args.device)
            localizer.localize(images[0], frames[0].camera)  # warm-up (model kernels, caches)
            results = [localizer.localize(im, f.camera) for im, f in zip(images, frames)]
            t = {s: np.median([r.timings[s] for r in results]) for s in ("extract", "retrieve", "match", "pnp", "total")}
            p90 = np.percentile([r.timings["total"] for r in results], 90)
            m = compute_metrics({f.name: r.cam_from_world for f, r in zip(frames, results)},
                                {f.name: f.cam_from_world for f in frames}, 0, [])
            rows.append(f"| {Path(map_path).name} | {database.feature_setup} | {k} | {t['extract']:.3f} | {t['retrieve']:.3f} "
                        f"| {t['match']:.3f} | {t['pnp']:.3f} | {t['total']:.3f} | {p90:.3f} | {100 * m['recall']['0.25m_2deg']:.1f} |")
            print(rows[-1], flush=True)
    text = "## Registration time vs top-k (seed Table E)\n\n" + "\n".join(rows) + "\n"
    return emit(text, args.markdown)


if __name__ == "__main__":
    sys.exit(main())
