#!/usr/bin/env python
"""Soak the localizer node: publish camera frames at a fixed rate for a long time and report
memory growth, dropped frames and latency (issue 9 item 5).

    python bench/bench_soak.py --minutes 10 --rate 15 [--map MAP --scene SCENE_DIR] [--output soak.json]

Without --map/--scene a 24-frame synthetic street and its xfeat map are built (about 2 minutes on
2 CPU cores) under outputs/bench/soak/. The node runs as a subprocess over real DDS (reliable QoS,
640x480 rgb8, day and night queries in turn). Every --sample-s seconds the node's VmRSS is read
from /proc/<pid>/status. RSS growth is measured from the first sample after the warm-up (feature
models, map pages and the per-candidate cache are in by then) to the end. Latency: publish to
arrival of the node's result, for every frame that got one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scenesqueezer_core.atomic import atomic_write_text  # noqa: E402

NODE_NAME = "soak_localizer"


def vm_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for process {pid}")


def run_soak(map_path: Path, scene_dir: Path, seconds: float, rate_hz: float, work_dir: Path,
             domain_id: int = 73, warmup_s: float = 10.0, sample_s: float = 5.0,
             progress: bool = False) -> dict:
    """Start the node on ``map_path``, flood it with ``scene_dir``'s query images for ``seconds``
    at ``rate_hz`` after a warm-up, and return the figures (see the module docstring)."""
    from scenesqueezer_ros.testing import (create_probe_node, destroy_probe_node, isolate_ros_environment,
                                           start_node, stop_node)

    work_dir.mkdir(parents=True, exist_ok=True)
    isolate_ros_environment(domain_id, work_dir / "ros_log")
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    from scenesqueezer.msg import LocalizationResult
    from scenesqueezer_core.dataset import load_dataset, read_image
    from scenesqueezer_ros.conversions import camera_to_camera_info
    from scenesqueezer_ros.image_conversion import rgb_to_image_msg

    dataset = load_dataset(scene_dir)
    frames = dataset.split("query_day") + dataset.split("query_night")
    images = [rgb_to_image_msg(read_image(f.image_path), "rgb8") for f in frames]
    infos = [camera_to_camera_info(f.camera) for f in frames]

    log = work_dir / "node.log"
    process = start_node(["-r", f"__node:={NODE_NAME}", "-p", f"map_path:={map_path}", "-p", "device:=cpu",
                          "-p", "image_topic:=/soak/image", "-p", "camera_info_topic:=/soak/camera_info"], log)
    node = create_probe_node("soak_publisher")
    executor = rclpy.executors.SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    sent_at: dict[int, float] = {}
    latencies: dict[int, float] = {}
    outcomes: dict[int, bool] = {}
    diagnostics: list = []

    def on_result(msg) -> None:
        index = msg.header.stamp.sec * 1000 + msg.header.stamp.nanosec // 1_000_000
        if index in sent_at:
            latencies[index] = time.monotonic() - sent_at[index]
            outcomes[index] = bool(msg.success)

    def on_diagnostics(msg) -> None:
        diagnostics.extend(s for s in msg.status if s.name.startswith(f"{NODE_NAME}:"))

    node.create_subscription(LocalizationResult, f"/{NODE_NAME}/result", on_result, 100)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 50)
    reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    image_pub = node.create_publisher(Image, "/soak/image", reliable)
    info_pub = node.create_publisher(CameraInfo, "/soak/camera_info", reliable)

    def spin_until(condition, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not condition():
            executor.spin_once(timeout_sec=0.01)
        return condition()

    counter = 0

    def publish(frame: int) -> int:
        nonlocal counter
        counter += 1
        stamp_ms = 1_000_000 + counter  # strictly increasing
        image, info = images[frame % len(images)], infos[frame % len(images)]
        image.header.stamp.sec, image.header.stamp.nanosec = divmod(stamp_ms, 1000)
        image.header.stamp.nanosec *= 1_000_000
        image.header.frame_id = info.header.frame_id = "camera_optical"
        info.header.stamp = image.header.stamp
        info_pub.publish(info)
        sent_at[stamp_ms] = time.monotonic()
        image_pub.publish(image)
        return stamp_ms

    samples: list[tuple[float, float]] = []
    try:
        if not spin_until(lambda: image_pub.get_subscription_count() > 0, 120.0):
            raise RuntimeError("the node never subscribed:\n" + log.read_text()[-3000:])
        # Warm-up: one frame at a time until every query image went through once.
        for frame in range(len(images)):
            stamp = publish(frame)
            if not spin_until(lambda: stamp in latencies, 180.0):
                raise RuntimeError("no result during the warm-up:\n" + log.read_text()[-3000:])
        spin_until(lambda: False, warmup_s)
        warm_results = len(latencies)
        t_start = time.monotonic()
        samples.append((0.0, vm_rss_mb(process.pid)))
        next_send, next_sample, frame, sent = t_start, t_start + sample_s, 0, 0
        last_stamp = None
        while time.monotonic() - t_start < seconds:
            now = time.monotonic()
            if now >= next_send:
                last_stamp = publish(frame)
                frame, sent = frame + 1, sent + 1
                next_send += 1.0 / rate_hz
            if now >= next_sample:
                samples.append((now - t_start, vm_rss_mb(process.pid)))
                next_sample += sample_s
                if progress:
                    print(f"  t={now - t_start:6.0f} s  sent {sent}  results {len(latencies) - warm_results}  "
                          f"RSS {samples[-1][1]:.1f} MB", flush=True)
            executor.spin_once(timeout_sec=max(0.0, min(next_send, next_sample) - time.monotonic()))
        newest_answered = spin_until(lambda: last_stamp in latencies, 60.0)
        samples.append((time.monotonic() - t_start, vm_rss_mb(process.pid)))
        diagnostics.clear()
        spin_until(lambda: bool(diagnostics), 5.0)
        values = {kv.key: kv.value for kv in diagnostics[-1].values} if diagnostics else {}
        alive = process.poll() is None
    finally:
        destroy_probe_node(node)
        stop_node(process)

    flood = {k: v for k, v in latencies.items() if k > 1_000_000 + len(images)}
    lat = np.array(sorted(flood.values())) if flood else np.zeros(1)
    rss = [mb for _, mb in samples]
    received = int(values.get("frames_received", -1))
    return {
        "seconds": seconds, "rate_hz": rate_hz, "frames_sent": sent, "results": len(flood),
        "localized": int(sum(outcomes[k] for k in flood)),
        "node_alive": alive, "newest_frame_answered": bool(newest_answered),
        "frames_received": received, "frames_processed": int(values.get("frames_processed", -1)),
        "frames_dropped": int(values.get("frames_dropped", -1)), "errors": int(values.get("errors", -1)),
        "latency_s": {"median": float(np.median(lat)), "p95": float(np.percentile(lat, 95)),
                      "max": float(lat.max())},
        "rss_mb": {"start": rss[0], "end": rss[-1], "max": max(rss), "growth": rss[-1] - rss[0]},
        "rss_samples": [[round(t, 1), round(mb, 1)] for t, mb in samples],
        "node_log": str(log),
    }


def _default_scene_and_map(root: Path) -> tuple[Path, Path]:
    from scenesqueezer_core.mapping import build_map
    from scenesqueezer_core.synthetic import generate_scene

    scene, map_path = root / "street_seed0_24f", root / "street_seed0_24f_xfeat.ssmap"
    if not scene.exists():
        generate_scene(scene, preset="street", seed=0, num_frames=24, width=640, height=480)
    if not map_path.exists():
        build_map(scene, map_path, features="xfeat", device="cpu")
    return scene, map_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=15.0, help="images per second")
    parser.add_argument("--map", type=Path, help="map file (default: build a small synthetic street)")
    parser.add_argument("--scene", type=Path, help="dataset whose query images are published")
    parser.add_argument("--work-dir", type=Path, default=REPO / "outputs" / "bench" / "soak")
    parser.add_argument("--output", type=Path, help="write the figures as JSON here")
    parser.add_argument("--sample-s", type=float, default=10.0, help="seconds between RSS samples")
    args = parser.parse_args(argv)
    if (args.map is None) != (args.scene is None):
        parser.error("give both --map and --scene, or neither")
    scene, map_path = (args.scene, args.map) if args.map else _default_scene_and_map(args.work_dir)
    report = run_soak(map_path, scene, args.minutes * 60.0, args.rate, args.work_dir, sample_s=args.sample_s,
                      progress=True)
    report.pop("rss_samples") if not args.output else None
    text = json.dumps(report, indent=1)
    if args.output:
        atomic_write_text(args.output, text + "\n")
    print(text)
    print(f"soak {args.minutes:g} min at {args.rate:g} Hz: RSS {report['rss_mb']['start']:.1f} -> "
          f"{report['rss_mb']['end']:.1f} MB (growth {report['rss_mb']['growth']:+.1f} MB, target < 50), "
          f"{report['frames_dropped']} of {report['frames_received']} frames dropped, "
          f"latency median {report['latency_s']['median']:.2f} s, max {report['latency_s']['max']:.2f} s")
    ok = report["node_alive"] and report["errors"] == 0 and report["rss_mb"]["growth"] < 50.0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
