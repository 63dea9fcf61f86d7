#!/usr/bin/env python
"""Scale benchmark (issue 8): a synthetic street at the size of the paper's Cambridge scenes.

    python bench/bench_scale.py [--frames 1000] [--out outputs/bench/scale] [--markdown FILE]

Generates (and caches) the `street` preset with --frames mapping frames (queries: 20 % day + 20 %
night), builds the XFeat map, compresses it (QP, process pool) with the time broken down like the
seed's Table D, then measures map load time, peak memory and registration time at top-15 on day
queries. Every step is cached in --out, so a rerun only repeats what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("GLOG_minloglevel", "2")

from scenesqueezer_core.atomic import atomic_write_text  # noqa: E402
from scenesqueezer_core.compression.compress import compress_map  # noqa: E402
from scenesqueezer_core.dataset import load_dataset  # noqa: E402
from scenesqueezer_core.mapping import build_map  # noqa: E402
from scenesqueezer_core.maps.scene_map import SceneMap  # noqa: E402
from scenesqueezer_core.synthetic import generate_scene  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--ratio", type=float, default=0.1)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--topk", nargs="+", default=["5", "15", "30", "50"])
    parser.add_argument("--out", default=str(REPO / "outputs" / "bench" / "scale"))
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scene = out / f"street_seed11_{args.frames}f"
    map_path = out / f"street_seed11_{args.frames}f_xfeat.ssmap"
    sqz = out / f"street_seed11_{args.frames}f_xfeat_qp_{args.ratio}.sqz"
    rows = []

    t0 = time.perf_counter()
    if not (scene / "splits.json").exists():
        generate_scene(scene, preset="street", seed=11, num_frames=args.frames)
        rows.append(f"| generate scene | {time.perf_counter() - t0:.0f} s |")
    t0 = time.perf_counter()
    if not map_path.exists():
        build_map(scene, map_path, features="xfeat")
        rows.append(f"| build map | {time.perf_counter() - t0:.0f} s |")

    scene_map = SceneMap.load(map_path)
    ds = load_dataset(scene, check_images=False)
    rows.insert(0, f"| scene | {scene_map.num_frames} mapping frames, {scene_map.num_points} points, "
                   f"{len(ds.splits['query'])} queries, map {map_path.stat().st_size / 1e6:.0f} MB |")

    report = compress_map(map_path, sqz, {"ratio": args.ratio})
    t = report["timings"]
    rows += [f"| compressed map | {report['file_bytes'] / 1e6:.2f} MB ({100 * report['ratio_to_uncompressed']:.2f} %), "
             f"{report['num_points_kept']} points, {report['num_clusters']} clusters |"]
    summed = {"scores_d_K", "qp"}  # per-cluster stages: CPU seconds summed over the pool's workers
    rows += [f"| compression: {k} | {v:.1f} s{' (summed over workers)' if k in summed else ' (wall)'} |"
             for k, v in t.items()]
    text = "## Scale scene\n\n| what | value |\n|---|---|\n" + "\n".join(rows) + "\n"
    for script, extra in (("bench_memory.py", ["--queries", "10"]),
                          ("bench_registration.py", ["--topk", *args.topk, "--max-queries", str(args.queries)])):
        proc = subprocess.run([sys.executable, str(REPO / "bench" / script), "--map", str(sqz), "--dataset", str(scene),
                               *extra], capture_output=True, text=True, env={**os.environ}, check=True)
        text += "\n" + proc.stdout.split("\n\n", 1)[-1].strip() + "\n"
    print(text)
    print(json.dumps(report["timings"]))
    if args.markdown:
        atomic_write_text(args.markdown, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
