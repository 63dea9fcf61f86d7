#!/usr/bin/env python
"""The odometry prior through the ROS 2 node over real DDS (issue 20): registration time, recall and
wrong poses with and without it, on the demo synthetic scene.

    python bench/bench_prior_dds.py [--workdir outputs/demo] [--map FILE] [--split query_day query_night]
        [--drift-m-per-m 0.02] [--drift-deg-per-m 0.2] [--seed 0] [--max-queries 40] [--markdown FILE]

One localizer node process (device cpu, continuous mode, odom_frame odom, base_frame base_link);
this process plays the robot (scenesqueezer_ros.testing.RobotProbe): for each query, in trajectory
order, it publishes the odometry on /tf (the trajectory's true motion with drift noise, as
bench_prior.py makes it), the CameraInfo and the image, and waits for the node's result before the
next frame (no frame is dropped, so both runs see the same frames). Between runs the node's
`odometry_prior` parameter is switched and the map reloaded (which also forgets the tracked pose).
Registration time = the result's `latency.total - latency.extract` (retrieve + match + PnP +
checks, measured in the node), median over queries; end-to-end = the probe's call until the result
is received (it includes the probe's 0.15 s pause between CameraInfo and image). Recall: within (0.25 m, 2 deg); wrong: published beyond (0.5 m or 5 deg).
Issue 20 acceptance: registration time with the prior at most half of without, recall not lower,
wrong night poses at most half.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_prior import noisy_odometry  # noqa: E402
from common import REPO, emit  # noqa: E402
from scenesqueezer_core.dataset import load_dataset  # noqa: E402
from scenesqueezer_core.localization.prior import pose_difference  # noqa: E402

DOMAIN_ID = 71


def run_split(robot, frames, odometry, prior: bool) -> dict:
    from scenesqueezer.msg import LocalizationResult
    from scenesqueezer_ros.conversions import pose_msg_to_cam_from_world

    robot.configure(odometry_prior=prior)  # and reload: no tracked pose carries over
    registration, end_to_end, correct, wrong, from_prior = [], [], 0, 0, 0
    for index in range(len(frames)):
        t0 = time.perf_counter()
        result = robot.localize(index, odom_from_base=odometry[index])
        end_to_end.append(time.perf_counter() - t0)
        registration.append(result.latency.total - result.latency.extract)
        if result.success:
            distance, angle = pose_difference(pose_msg_to_cam_from_world(result.pose.pose), frames[index].cam_from_world)
            correct += distance < 0.25 and angle < 2.0
            wrong += distance > 0.5 or angle > 5.0
            from_prior += result.search == LocalizationResult.SEARCH_PRIOR
    return {"queries": len(frames), "registration_s": float(np.median(registration)),
            "end_to_end_s": float(np.median(end_to_end)), "recall": correct / len(frames), "wrong": wrong,
            "from_prior": from_prior}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=REPO / "outputs" / "demo",
                        help="the demo's folder (make demo): scene street_seed0_200f and its xfeat map")
    parser.add_argument("--map", type=Path, default=None, help="map file (default: the demo's uncompressed map)")
    parser.add_argument("--split", nargs="+", default=["query_day", "query_night"])
    parser.add_argument("--drift-m-per-m", type=float, default=0.02)
    parser.add_argument("--drift-deg-per-m", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-queries", type=int, default=40)
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args(argv)
    scene = args.workdir / "street_seed0_200f"
    map_path = (args.map or args.workdir / "street_seed0_200f_xfeat.ssmap").resolve()
    if not (scene / "splits.json").exists() or not map_path.exists():
        print(f"bench_prior_dds: no demo scene/map in {args.workdir}; run `make demo` first or pass --workdir",
              file=sys.stderr)
        return 2

    from scenesqueezer_ros.testing import (RobotProbe, create_probe_node, destroy_probe_node,
                                           isolate_ros_environment, start_node, stop_node)

    dataset = load_dataset(scene)
    work = Path(tempfile.mkdtemp(prefix="bench_prior_dds_"))
    isolate_ros_environment(DOMAIN_ID + os.getpid() % 50, work / "ros_log")
    process = start_node(["-p", f"map_path:={map_path}", "-p", "device:=cpu", "-p", "image_topic:=/cam/image",
                          "-p", "camera_info_topic:=/cam/camera_info", "-p", "odom_frame:=odom",
                          "-p", "base_frame:=base_link", "-p", "publish_point_cloud:=false"], work / "node.log")
    rows = []
    try:
        for split in args.split:
            frames = dataset.split(split)[: args.max_queries]
            odometry = noisy_odometry([f.cam_from_world for f in frames], args.drift_m_per_m, args.drift_deg_per_m,
                                      args.seed)
            node = create_probe_node("bench_prior_dds")
            try:
                robot = RobotProbe(node, frames, work / "node.log")
                if not robot.spin_until(lambda: robot.image_pub.get_subscription_count() > 0, 120.0):
                    print(f"bench_prior_dds: the node did not come up; its log: {work / 'node.log'}", file=sys.stderr)
                    return 1
                runs = {prior: run_split(robot, frames, odometry, prior) for prior in (False, True)}
            finally:
                destroy_probe_node(node)
            for prior, stats in runs.items():
                print(split, "odometry prior" if prior else "global search only", stats, flush=True)
            for prior, stats in runs.items():
                ratio = stats["registration_s"] / max(runs[False]["registration_s"], 1e-9)
                rows.append(f"| {split} | {'odometry prior' if prior else 'global search only'} | {stats['queries']} "
                            f"| {stats['registration_s']:.3f} | {ratio:.2f} | {stats['end_to_end_s']:.3f} "
                            f"| {100 * stats['recall']:.1f} % | {stats['wrong']} | {stats['from_prior']} |")
    finally:
        stop_node(process)
    shutil.rmtree(work, ignore_errors=True)  # the node's log stays only when the node did not come up
    lines = [f"## Odometry prior through the node over DDS ({map_path.name}, odometry drift noise "
             f"{args.drift_m_per_m} m/m, {args.drift_deg_per_m} deg/m)", "",
             "| split | search | queries | median registration s (in the node) | vs global | median end-to-end s "
             "| recall (0.25 m, 2°) | wrong poses | from the prior |",
             "|---|---|---|---|---|---|---|---|---|", *rows]
    return emit("\n".join(lines) + "\n", args.markdown)


if __name__ == "__main__":
    sys.exit(main())
