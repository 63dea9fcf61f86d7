"""End to end on real photographs: build-map -> localize -> evaluate through the CLI."""

import json

import numpy as np
import pytest

from conftest import SHARED_DATA
from scenesqueezer_core.cli import main
from scenesqueezer_core.dataset import load_dataset, read_image
from scenesqueezer_core.geometry import project
from scenesqueezer_core.localization import Localizer
from scenesqueezer_core.maps.database import SceneMapDatabase
from scenesqueezer_core.maps.scene_map import SceneMap

FOUNTAIN = SHARED_DATA / "strecha_fountain_p11"


@pytest.fixture(scope="module")
def fountain_map(tmp_path_factory):
    out = tmp_path_factory.mktemp("fountain")
    map_path = out / "fountain.ssmap"
    assert main(["build-map", str(FOUNTAIN), str(map_path), "--features", "xfeat"]) == 0
    return map_path


def test_map_content(fountain_map):
    m = SceneMap.load(fountain_map)
    assert m.num_frames == 9
    assert m.num_points > 1000
    lengths = np.diff(m.track_offsets)
    assert lengths.min() >= 2 and np.median(lengths) >= 2
    assert np.median(m.points_error) < 2.0
    # every tracked keypoint points back at its point
    frames, kps = m.track(0)
    for f, k in zip(frames, kps):
        assert m.keypoint_point_ids[m.keypoint_offsets[f] + k] == 0
    # points project close to their observations in every observing frame (known poses kept)

    errs = []
    for p in range(0, m.num_points, max(1, m.num_points // 200)):
        for f, k in zip(*m.track(p)):
            pix, _ = project(m.cameras[f], m.pose(f), m.points_xyz[p:p + 1])
            errs.append(np.linalg.norm(pix[0] - m.keypoints[m.keypoint_offsets[f] + k]))
    assert np.median(errs) < 2.0
    database = SceneMapDatabase(m)  # the occlusion check reads a candidate's point ids alone
    for frame in range(m.num_frames):
        np.testing.assert_array_equal(database.candidate_point_ids(frame), database.candidate_features(frame)[1])


def test_localize_and_evaluate_fountain(fountain_map, tmp_path):
    results = tmp_path / "results.json"
    metrics_path = tmp_path / "metrics.json"
    assert main(["localize", str(fountain_map), str(FOUNTAIN), "--output", str(results)]) == 0
    assert main(["evaluate", str(results), str(FOUNTAIN), "--output", str(metrics_path)]) == 0
    metrics = json.loads(metrics_path.read_text())
    assert set(metrics) >= {"num_queries", "num_localized", "recall", "median_translation_m",
                            "median_rotation_deg", "map_bytes", "median_seconds_per_query"}
    assert set(metrics["recall"]) == {"0.25m_2deg", "0.5m_5deg", "5m_10deg", "0.25m_1deg"}
    assert metrics["num_queries"] == 2 and metrics["num_localized"] == 2
    assert metrics["recall"]["0.25m_2deg"] == 1.0
    assert metrics["map_bytes"] == fountain_map.stat().st_size
    payload = json.loads(results.read_text())
    for entry in payload["results"].values():
        assert set(entry["timings"]) >= {"extract", "retrieve", "match", "pnp", "total"}
        assert entry["num_inliers"] >= 40 and entry["candidate_ids"]


def test_foreign_images_give_no_pose(fountain_map):
    """Castle photographs against the fountain map: every one must fail, never a confident pose."""

    loc = Localizer.from_file(fountain_map)
    castle = load_dataset(SHARED_DATA / "strecha_castle_p30")
    for frame in castle.split("query")[:4]:
        res = loc.localize(read_image(frame.image_path), frame.camera)
        assert not res.success, f"foreign image {frame.name} got a pose with {res.num_inliers} inliers"
        assert res.failure_reason


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["localize", str(tmp_path / "none.ssmap"), str(FOUNTAIN), "--output", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_build_map_without_poses_runs_sfm(tmp_path):
    """A folder with images/ only: pycolmap SfM estimates poses first (arbitrary frame and scale)."""
    import shutil

    (tmp_path / "ds").mkdir()
    shutil.copytree(FOUNTAIN / "images", tmp_path / "ds" / "images")
    map_path = tmp_path / "m.ssmap"
    assert main(["build-map", str(tmp_path / "ds"), str(map_path), "--features", "sift"]) == 0
    m = SceneMap.load(map_path)
    assert m.num_frames >= 9 and m.num_points > 1000
