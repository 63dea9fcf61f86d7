"""Load: the node flooded with 30 Hz 640x480 frames keeps up by dropping stale frames (counted in
diagnostics), answers the newest frame, keeps latency bounded and does not grow in memory.
Uses bench/bench_soak.py's run_soak, shortened to a CI-sized run."""

from __future__ import annotations

import sys
from pathlib import Path

from scenesqueezer_ros.testing import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))
from bench_soak import run_soak  # noqa: E402

FLOOD_SECONDS = 15.0


def test_flood_at_30hz_drops_stale_frames_with_bounded_latency_and_memory(small_street_scene, small_street_map,
                                                                          tmp_path):
    report = run_soak(small_street_map, small_street_scene, FLOOD_SECONDS, 30.0, tmp_path, domain_id=74,
                      warmup_s=3.0, sample_s=3.0)
    print({k: v for k, v in report.items() if k != "rss_samples"}, report["rss_samples"])
    assert report["node_alive"] and report["errors"] == 0, Path(report["node_log"]).read_text()[-3000:]
    assert report["frames_sent"] >= 0.9 * 30 * FLOOD_SECONDS
    # Every received frame is either processed or dropped (counted), never queued without bound.
    assert report["frames_received"] == report["frames_processed"] + report["frames_dropped"]
    assert report["frames_dropped"] > 0 and report["results"] >= 3
    assert report["newest_frame_answered"], "the newest frame must never be the one dropped"
    # One frame in work, one waiting: a result is at most about two localizations old.
    assert report["latency_s"]["max"] < 10.0, report["latency_s"]
    # The per-candidate cache fills during the first seconds of new queries; after that RSS is flat.
    samples = report["rss_samples"]
    second_half = [mb for t, mb in samples if t >= FLOOD_SECONDS / 2]
    assert second_half[-1] - second_half[0] < 20.0, samples
    assert report["rss_mb"]["growth"] < 80.0, samples
