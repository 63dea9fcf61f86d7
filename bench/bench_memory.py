#!/usr/bin/env python
"""Map load time and peak memory of the localizer on a map (issue 8 item 5).

    python bench/bench_memory.py --map MAP [--dataset DIR --split query_day --queries 20] [--markdown FILE]

Load time: wall time of opening the map (after the Python imports) (memory-mapped arrays, checksum verification, descriptor
decoding) in a fresh process, median of 3 processes. Peak RSS: ru_maxrss of a fresh process that
loads the map, the feature models, and localizes `--queries` images (the node's work; rclpy adds
about its own import size on top, reported as "node" when --node is given).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from common import emit  # noqa: E402

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {repo!r})
t0 = time.perf_counter()
import torch  # noqa: F401  (the interpreter's imports are not part of loading a map)
from scenesqueezer_core.maps.database import load_database
import scenesqueezer_core.maps.compressed_map, scenesqueezer_core.maps.scene_map  # noqa: F401  (timed with the imports)
import_s = time.perf_counter() - t0
t0 = time.perf_counter()
db = load_database({map!r})
load_s = time.perf_counter() - t0
rss_after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out = {{"load_s": load_s, "import_s": import_s, "rss_after_load_mb": rss_after_load}}
if {queries} > 0:
    from scenesqueezer_core.dataset import load_dataset, read_image
    from scenesqueezer_core.localization import Localizer
    loc = Localizer(db)
    ds = load_dataset({dataset!r})
    ok = 0
    for f in ds.split({split!r})[:{queries}]:
        ok += loc.localize(read_image(f.image_path), f.camera).success
    out["localized"] = ok
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def run_child(map_path: str, dataset: str | None, split: str, queries: int) -> dict:
    code = CHILD.format(repo=str(REPO), map=str(map_path), dataset=str(dataset), split=split,
                        queries=queries if dataset else 0)
    env = {**os.environ, "GLOG_minloglevel": "2"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--map", action="append", required=True)
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--split", default="query_day")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args()
    rows = ["| map | file MB | load s (median of 3, fresh process) | RSS after load MB | peak RSS while localizing MB | localized |",
            "|---|---|---|---|---|---|"]
    for map_path in args.map:
        loads = [run_child(map_path, None, args.split, 0) for _ in range(3)]
        full = run_child(map_path, args.dataset, args.split, args.queries) if args.dataset else {}
        rows.append(f"| {Path(map_path).name} | {Path(map_path).stat().st_size / 1e6:.2f} "
                    f"| {np.median([r['load_s'] for r in loads]):.3f} | {np.median([r['rss_after_load_mb'] for r in loads]):.0f} "
                    f"| {full.get('peak_rss_mb', float('nan')):.0f} | {full.get('localized', '-')}/{args.queries if args.dataset else '-'} |")
        print(rows[-1], flush=True)
    text = "## Map load time and memory\n\n" + "\n".join(rows) + "\n"
    return emit(text, args.markdown)


if __name__ == "__main__":
    sys.exit(main())
