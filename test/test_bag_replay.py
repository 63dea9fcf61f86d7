"""Replay a small synthetic scene's query bag offline (core) and over DDS (the real node as a
subprocess); both reports must agree within one query, and the report's plots must be real images."""

import argparse
import json

import cv2
import numpy as np
import pytest

from scenesqueezer_core.bag import export_bag
from scenesqueezer_core.bag.cli import add_bag_commands
from scenesqueezer_core.evaluate import THRESHOLDS
from scenesqueezer_core.mapping import build_map
from scenesqueezer_core.replay.report import PLOTS
from scenesqueezer_core.synthetic import generate_scene

DOMAIN_ID = 87
CONF = ["--top-k", "5"]  # fewer candidates per query keeps the test fast on 2 CPU cores


@pytest.fixture(scope="module")
def replay_setup(tmp_path_factory):
    import torch

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("bag_replay")
    scene = generate_scene(root / "scene", num_frames=20, width=320, height=240, num_workers=1)
    map_path = build_map(scene, root / "street.ssmap", features="xfeat", device="cpu")
    bag = export_bag(scene, root / "query_day_bag", split="query_day", storage="mcap")
    return root, bag, map_path


def run_cli(argv):
    parser = argparse.ArgumentParser()
    add_bag_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def offline_report(replay_setup):
    root, bag, map_path = replay_setup
    out = root / "report_offline"
    assert run_cli(["replay", str(bag), str(map_path), "--offline", "--output", str(out), "--device", "cpu", *CONF]) == 0
    return out


def test_offline_report_files(offline_report):
    metrics = json.loads((offline_report / "metrics.json").read_text())
    assert set(metrics) == {"num_queries", "num_localized", "recall", "median_translation_m", "median_rotation_deg",
                            "map_bytes", "median_seconds_per_query"}
    assert set(metrics["recall"]) == set(THRESHOLDS)
    assert metrics["num_queries"] >= 3 and metrics["num_localized"] >= 1
    summary = (offline_report / "summary.md").read_text()
    assert "| recall 0.25m / 2deg |" in summary
    queries = json.loads((offline_report / "queries.json").read_text())["queries"]
    assert len(queries) == metrics["num_queries"]
    for name in PLOTS.values():
        assert f"]({name})" in summary
        image = cv2.imread(str(offline_report / name))
        assert image is not None, name
        height, width = image.shape[:2]
        assert width >= 500 and height >= 300, (name, image.shape)
        assert image.std() > 15, f"{name} looks blank"
        # Not a single flat colour: many distinct grey levels from text, lines and markers.
        assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50, name


def test_dds_replay_agrees_with_offline(replay_setup, offline_report, tmp_path):
    from scenesqueezer_ros.replay import replay_over_dds

    root, bag, map_path = replay_setup
    outcome = replay_over_dds(bag, map_path, root / "report_dds", as_fast_as_node=True, device="cpu",
                              conf={"top_k": 5}, domain_id=DOMAIN_ID, progress=False)
    offline = json.loads((offline_report / "metrics.json").read_text())
    dds = json.loads((root / "report_dds" / "metrics.json").read_text())
    n = offline["num_queries"]
    assert dds["num_queries"] == n
    assert outcome.info["frames_sent"] == n and outcome.info["results_received"] == n
    assert outcome.info["poses_received"] == dds["num_localized"]
    assert abs(dds["num_localized"] - offline["num_localized"]) <= 1
    for key in THRESHOLDS:
        assert abs(dds["recall"][key] - offline["recall"][key]) * n <= 1 + 1e-9, key
    for name in PLOTS.values():
        assert (root / "report_dds" / name).stat().st_size > 10_000
    assert "end-to-end latency (DDS)" in (root / "report_dds" / "summary.md").read_text()
