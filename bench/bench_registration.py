#!/usr/bin/env python
"""Registration time vs top-k (seed Table E) with the per-stage breakdown, per feature setup and split.

    python bench/bench_registration.py --map outputs/bench/x.sqz --dataset DIR [--split query_day query_night]
        [--topk 5 15 30 50] [--setting top_k_share=0.5 ...] [--threads 2] [--device auto]
        [--max-queries 40] [--markdown FILE]

Several --map arguments may be given (e.g. one per feature setup). Times are medians over queries
of the localizer's own stage timings, in seconds: extract, then everything after it (retrieve +
match + PnP + checks = total - extract) and its ratio to extraction, the issue-19 acceptance
measure (at most 1). Each --setting (comma-separated option=value localizer overrides, "" for the
defaults) is run at every --topk, so the new retrieval knobs get a recall-vs-time table.
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
from scenesqueezer_core.localization import OPTIONS_BY_NAME, Localizer  # noqa: E402
from scenesqueezer_core.maps.database import load_database  # noqa: E402


def device_name(device: str) -> str:
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def parse_setting(text: str) -> dict:
    """'top_k_share=0.5,max_similarity_gap=0.2' -> overrides typed by each option's default."""
    overrides = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        overrides[name] = type(OPTIONS_BY_NAME[name].default)(value)
    return overrides


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--map", action="append", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--split", nargs="+", default=["query_day"])
    parser.add_argument("--topk", nargs="+", type=int, default=[5, 15, 30, 50])
    parser.add_argument("--setting", action="append", default=None,
                        help="comma-separated option=value overrides; repeat for a grid ('' = defaults)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-queries", type=int, default=40)
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    dataset = load_dataset(args.dataset)
    settings = args.setting if args.setting is not None else [""]
    rows = [f"Device: {device_name(args.device)}", "",
            "| map | features | split | top-k | setting | extract | retrieve | match | pnp | after extraction "
            "(median s) | after / extract | total | p90 total | R 0.25m,2° |",
            "|" + "---|" * 14]
    for split in args.split:
        frames = dataset.split(split)[: args.max_queries]
        images = [read_image(f.image_path) for f in frames]
        for map_path in args.map:
            database = load_database(map_path)
            for setting in settings:
                for k in args.topk:
                    localizer = Localizer(database, {"top_k": k, **parse_setting(setting)}, device=args.device)
                    localizer.localize(images[0], frames[0].camera)  # warm-up (model kernels, caches)
                    results = [localizer.localize(im, f.camera) for im, f in zip(images, frames)]
                    t = {s: float(np.median([r.timings[s] for r in results]))
                         for s in ("extract", "retrieve", "match", "pnp", "total")}
                    after = float(np.median([r.timings["total"] - r.timings["extract"] for r in results]))
                    p90 = np.percentile([r.timings["total"] for r in results], 90)
                    m = compute_metrics({f.name: r.cam_from_world for f, r in zip(frames, results)},
                                        {f.name: f.cam_from_world for f in frames}, 0, [])
                    rows.append(f"| {Path(map_path).name} | {database.feature_setup} | {split} | {k} | {setting or 'defaults'} "
                                f"| {t['extract']:.3f} | {t['retrieve']:.3f} | {t['match']:.3f} | {t['pnp']:.3f} "
                                f"| {after:.3f} | {after / t['extract']:.2f} | {t['total']:.3f} | {p90:.3f} "
                                f"| {100 * m['recall']['0.25m_2deg']:.1f} |")
                    print(rows[-1], flush=True)
    text = "## Registration time vs top-k (seed Table E)\n\n" + "\n".join(rows) + "\n"
    return emit(text, args.markdown)


if __name__ == "__main__":
    sys.exit(main())
