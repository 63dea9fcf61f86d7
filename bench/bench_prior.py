#!/usr/bin/env python
"""The odometry prior (issue 20) on the demo synthetic scene: registration time, recall and wrong poses
with and without it.

    python bench/bench_prior.py [--workdir outputs/demo] [--map FILE] [--drift-m-per-m 0.02]
        [--drift-deg-per-m 0.2] [--seed 0] [--max-queries 40] [--device auto] [--markdown FILE]

Each query split (day, night) is replayed in trajectory order through the core's OdometryTracker,
as the ROS node drives it: odometry is the synthetic trajectory's true relative motion between
consecutive queries, optionally with drift noise (normal, sigma the given metres / degrees of yaw
per metre travelled, accumulated like real odometry). Without the prior each query is localized
alone (the global search). Registration time = total - extract (retrieve + match + PnP + checks),
the localizer's own stage timings, median over queries. Recall: share of queries within (0.25 m,
2 deg); wrong: published poses beyond (0.5 m or 5 deg), as in bench_checks. Runs in-process (the
node adds the same work plus the DDS transport to both). Issue 20 acceptance: median time with
the prior at most half of without, recall not lower, wrong night poses at most half.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, emit  # noqa: E402
from scenesqueezer_core.dataset import load_dataset, read_image  # noqa: E402
from scenesqueezer_core.localization import Localizer, OdometryTracker, SearchKind  # noqa: E402
from scenesqueezer_core.localization.prior import pose_difference  # noqa: E402
from scenesqueezer_core.types import Pose  # noqa: E402


def noisy_odometry(truths: list[Pose], drift_m_per_m: float, drift_deg_per_m: float, seed: int) -> list[Pose]:
    """odom_from_camera of each query: the true relative motions, each step perturbed by drift noise."""
    rng = np.random.default_rng(seed)
    odometry = [truths[0].inverse()]
    for previous, current in zip(truths, truths[1:]):
        step = previous @ current.inverse()  # cam_prev_from_cam_now: the true motion
        length = float(np.linalg.norm(step.t))
        yaw = math.radians(rng.normal(0.0, drift_deg_per_m * length + 1e-12))
        # yaw about the world's vertical, seen from the camera (y down): a turn about camera y
        turn = Pose(np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]]),
                    np.zeros(3))
        noisy = Pose(step.R, step.t + rng.normal(0.0, drift_m_per_m * length + 1e-12, 3)) @ turn
        odometry.append(odometry[-1] @ noisy)
    return odometry


def replay(localizer: Localizer, frames, odometry: list[Pose] | None) -> dict:
    tracker = OdometryTracker(localizer.conf)
    times, correct, wrong, from_prior, refused, matched = [], 0, 0, 0, 0, []
    for index, frame in enumerate(frames):
        image = read_image(frame.image_path)
        if odometry is None:
            result = localizer.localize(image, frame.camera)
        else:
            result = tracker.localize(localizer, image, frame.camera, odometry[index])
        times.append(result.timings["total"] - result.timings["extract"])
        matched.append(result.num_candidates_matched)
        refused += str(result.failure_code) == "disagrees_with_prior"
        if result.success:
            distance, angle = pose_difference(result.cam_from_world, frame.cam_from_world)
            correct += distance < 0.25 and angle < 2.0
            wrong += distance > 0.5 or angle > 5.0
            from_prior += result.search == SearchKind.PRIOR
    return {"queries": len(frames), "median_s": float(np.median(times)), "recall": correct / len(frames),
            "wrong": wrong, "from_prior": from_prior, "refused": refused, "matched": float(np.mean(matched))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=REPO / "outputs" / "demo",
                        help="the demo's folder (make demo): scene street_seed0_200f and its xfeat map")
    parser.add_argument("--map", type=Path, default=None, help="map file (default: the demo's uncompressed map)")
    parser.add_argument("--drift-m-per-m", type=float, default=0.02)
    parser.add_argument("--drift-deg-per-m", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-queries", type=int, default=40)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args(argv)

    scene = args.workdir / "street_seed0_200f"
    map_path = args.map or args.workdir / "street_seed0_200f_xfeat.ssmap"
    if not (scene / "splits.json").exists() or not map_path.exists():
        print(f"bench_prior: no demo scene/map in {args.workdir}; run `make demo` first or pass --workdir",
              file=sys.stderr)
        return 2
    dataset = load_dataset(scene)
    localizer = Localizer.from_file(map_path, device=args.device)
    rows = []
    for split in ("query_day", "query_night"):
        frames = dataset.split(split)[:args.max_queries]
        truths = [f.cam_from_world for f in frames]
        odometry = noisy_odometry(truths, args.drift_m_per_m, args.drift_deg_per_m, args.seed)
        for label, odom in (("global search only", None), ("odometry prior", odometry)):
            stats = replay(localizer, frames, odom)
            rows.append((split, label, stats))
            print(split, label, stats, flush=True)
    lines = [f"## Odometry prior ({map_path.name}, odometry drift noise {args.drift_m_per_m} m/m, "
             f"{args.drift_deg_per_m} deg/m)", "",
             "| split | search | queries | median registration s | recall (0.25 m, 2°) | wrong poses | "
             "from the prior | refused by it | candidates matched (mean) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for split, label, s in rows:
        lines.append(f"| {split} | {label} | {s['queries']} | {s['median_s']:.3f} | {100 * s['recall']:.1f} % | "
                     f"{s['wrong']} | {s['from_prior']} | {s['refused']} | {s['matched']:.1f} |")
    return emit("\n".join(lines) + "\n", args.markdown)


if __name__ == "__main__":
    sys.exit(main())
