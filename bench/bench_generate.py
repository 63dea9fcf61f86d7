"""Time the synthetic scene generator: default 200-frame street at 640x480 with 2 workers.

Usage: python bench/bench_generate.py [--preset street] [--frames 200] [--workers 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from scenesqueezer_core.dataset import load_dataset
from scenesqueezer_core.synthetic import generate_scene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="street")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="keep the scene here (default: a temp dir, deleted)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_generate_"))
    out = args.out or work / "scene"
    try:
        start = time.perf_counter()
        generate_scene(out, preset=args.preset, seed=args.seed, num_frames=args.frames, width=args.width,
                       height=args.height, num_workers=args.workers, progress=True)
        elapsed = time.perf_counter() - start
        usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        cpu = sum(u.ru_utime + u.ru_stime for u in usage)
        dataset = load_dataset(out)
        size_mb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
        total = len(dataset.frames)
        print(f"preset={args.preset} frames: {args.frames} mapping + {total - args.frames} queries = {total} "
              f"at {args.width}x{args.height}, {args.workers} workers")
        print(f"time {elapsed:.1f} s wall ({elapsed / total * 1000:.0f} ms/frame), {cpu:.1f} s CPU in all "
              f"processes (wall on an idle machine is about CPU / workers), output {size_mb:.0f} MiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
