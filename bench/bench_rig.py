#!/usr/bin/env python
"""A 3-camera rig (issue 20) against its front camera alone, on the night split of a synthetic rig scene.

    python bench/bench_rig.py [--workdir outputs/bench/rig] [--num-frames 60] [--query-fraction 0.34]
        [--width 640] [--height 480] [--seed 0] [--split query_night_rig] [--device auto] [--markdown FILE]

The scene (street preset, generate_scene(rig=True): front camera = the usual query, left and right
cameras turned by the yaws of synthetic.generate.RIG_CAMERAS) and its xfeat map are cached in the
workdir. Every rig frame is localized twice against the same map: the front camera alone
(Localizer.localize) and the rig (RigLocalizer: one generalized pose from all cameras' matches,
published only when a camera passes every single-camera check at it). Recall: frames within
(0.25 m, 2 deg) of the truth (the rig's base is the front camera, so both compare the same pose);
wrong: published poses beyond (0.5 m or 5 deg). Issue 20 acceptance: rig recall at least 1.5 times
the front camera's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, emit  # noqa: E402
from scenesqueezer_core.dataset import load_dataset, load_rig, read_image  # noqa: E402
from scenesqueezer_core.localization import Localizer  # noqa: E402
from scenesqueezer_core.localization.prior import pose_difference  # noqa: E402
from scenesqueezer_core.localization.rig import RigLocalizer  # noqa: E402
from scenesqueezer_core.mapping import build_map  # noqa: E402
from scenesqueezer_core.synthetic import generate_scene  # noqa: E402


def verdict(success: bool, pose, truth) -> str:
    if not success:
        return "refused"
    distance, angle = pose_difference(pose, truth)
    if distance <= 0.25 and angle <= 2.0:
        return "correct"
    return "wrong" if distance > 0.5 or angle > 5.0 else "loose"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=str(REPO / "outputs" / "bench" / "rig"))
    parser.add_argument("--num-frames", type=int, default=60)
    parser.add_argument("--query-fraction", type=float, default=0.34)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="query_night_rig")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args(argv)

    workdir = Path(args.workdir)
    tag = f"street_s{args.seed}_n{args.num_frames}_q{args.query_fraction}_{args.width}x{args.height}"
    scene, map_path = workdir / tag, workdir / f"{tag}.ssmap"
    if not scene.exists():
        generate_scene(scene, preset="street", seed=args.seed, num_frames=args.num_frames, width=args.width,
                       height=args.height, query_fraction=args.query_fraction, rig=True)
    if not map_path.exists():
        build_map(scene, map_path, features="xfeat", device=args.device)
    dataset = load_dataset(scene)
    rig, frames = load_rig(dataset)
    localizer = Localizer.from_file(map_path, device=args.device)
    rig_localizer = RigLocalizer(localizer, rig)

    counts = {"front": dict.fromkeys(("correct", "loose", "wrong", "refused"), 0),
              "rig": dict.fromkeys(("correct", "loose", "wrong", "refused"), 0)}
    seconds: dict[str, list[float]] = {"front": [], "rig": []}
    rows = frames[args.split]
    for row in rows:
        truth = rig.cameras[0].base_from_camera @ row[0].cam_from_world  # base_from_world
        images = [read_image(frame.image_path) for frame in row]
        t0 = time.perf_counter()
        front = localizer.localize(images[0], row[0].camera)
        seconds["front"].append(time.perf_counter() - t0)
        front_base = rig.cameras[0].base_from_camera @ front.cam_from_world if front.success else None
        counts["front"][verdict(front.success, front_base, truth)] += 1
        t0 = time.perf_counter()
        result = rig_localizer.localize(images, [frame.camera for frame in row])
        seconds["rig"].append(time.perf_counter() - t0)
        counts["rig"][verdict(result.success, result.base_from_world, truth)] += 1
        print(f"{row[0].name}: front {front.success} ({front.failure_code}), rig {result.success} "
              f"(passing {result.passing_cameras or '-'}; {result.failure_code})", flush=True)

    total = len(rows)
    lines = [f"Rig vs front camera alone: {args.split} of {tag} ({total} rig frames, cameras "
             f"{', '.join(rig.names)}), xfeat map, device {args.device}", "",
             "| | within (0.25 m, 2 deg) | loose (published, within 0.5 m / 5 deg) | wrong | refused | median s/frame |",
             "|---|---|---|---|---|---|"]
    for name in ("front", "rig"):
        c = counts[name]
        lines.append(f"| {name} | {c['correct']} ({100 * c['correct'] / max(total, 1):.1f} %) | {c['loose']} | "
                     f"{c['wrong']} | {c['refused']} | {np.median(seconds[name]):.2f} |")
    ratio = counts["rig"]["correct"] / counts["front"]["correct"] if counts["front"]["correct"] else float("inf")
    lines += ["", f"rig / front: {ratio:.2f}x (acceptance: >= 1.5x)"]
    return emit("\n".join(lines), args.markdown)


if __name__ == "__main__":
    sys.exit(main())
