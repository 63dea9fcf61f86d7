"""Compression end to end on a small synthetic map: every method, file format, localizer on it."""

import json

import numpy as np
import pytest

from scenesqueezer_core.cli import main
from scenesqueezer_core.compression.compress import compress_map
from scenesqueezer_core.errors import ConfigError, MapFileError
from scenesqueezer_core.maps.compressed_map import ARRAY_NAMES, OPTIONAL_ARRAY_NAMES, CompressedMap
from scenesqueezer_core.maps.scene_map import SceneMap


@pytest.fixture(scope="module")
def compressed(small_street_map, tmp_path_factory):
    out = tmp_path_factory.mktemp("sqz") / "street.sqz"
    report = compress_map(small_street_map, out, {"ratio": 0.1, "method": "qp"}, executor="serial")
    return out, report


def test_compressed_file_content(compressed, small_street_map):
    path, report = compressed
    cmap = CompressedMap.load(path)
    source = SceneMap.load(small_street_map)
    assert cmap.num_clusters >= 1
    assert cmap.points_codes.dtype == np.uint8 and cmap.cluster_global_codes.shape == (cmap.num_clusters, 1024)
    assert len(cmap.points_xyz) < source.num_points
    assert report["file_bytes"] == path.stat().st_size < small_street_map.stat().st_size / 10
    assert sum(report["components"].values()) == report["file_bytes"]
    # kept points are real map points (positions copied exactly, float32)
    src = {tuple(np.round(p, 3)) for p in np.asarray(source.points_xyz, np.float32)}
    assert all(tuple(np.round(p, 3)) in src for p in cmap.points_xyz[:50])
    # decoded descriptors are unit vectors cached at load
    assert np.allclose(np.linalg.norm(cmap.descriptors, axis=1), 1.0, atol=1e-3)


def test_localize_on_compressed_map(compressed, small_street_scene, tmp_path):
    path, _ = compressed
    results, metrics = tmp_path / "r.json", tmp_path / "m.json"
    assert main(["localize", str(path), str(small_street_scene), "--output", str(results), "--split", "query_day"]) == 0
    assert main(["evaluate", str(results), str(small_street_scene), "--output", str(metrics)]) == 0
    m = json.loads(metrics.read_text())
    assert m["map_bytes"] == path.stat().st_size
    assert m["recall"]["0.5m_5deg"] >= 0.6, m


@pytest.mark.parametrize("method", ["random", "kc", "kcp"])
def test_baselines_same_budget(small_street_map, tmp_path, method):
    report = compress_map(small_street_map, tmp_path / f"{method}.sqz", {"ratio": 0.1, "method": method},
                          executor="serial")
    qp = compress_map(small_street_map, tmp_path / "qp.sqz", {"ratio": 0.1, "method": "qp"}, executor="serial")
    per_cluster = [c["points_kept"] for c in report_clusters(tmp_path / f"{method}.sqz")]
    per_cluster_qp = [c["points_kept"] for c in report_clusters(tmp_path / "qp.sqz")]
    assert per_cluster == per_cluster_qp  # the same number of points per cluster for every method
    assert report["num_clusters"] == qp["num_clusters"]


def report_clusters(path):
    return CompressedMap.load(path).info["clusters"]


def _assert_same_map(path_a, path_b):
    a, b = CompressedMap.load(path_a), CompressedMap.load(path_b)
    for name in ARRAY_NAMES + OPTIONAL_ARRAY_NAMES:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.info["clusters"] == b.info["clusters"]


def test_executors_give_identical_files(small_street_map, tmp_path):
    serial = compress_map(small_street_map, tmp_path / "a.sqz", {"ratio": 0.1}, executor="serial")
    pooled = compress_map(small_street_map, tmp_path / "b.sqz", {"ratio": 0.1}, executor="process", workers=2)
    _assert_same_map(serial["path"], pooled["path"])
    loaded = CompressedMap.load(serial["path"])
    assert loaded.cluster_frame_centers is not None
    # every kept point carries its SceneMap multi-view flag (matched by position)
    source = SceneMap.load(small_street_map)
    flags = {tuple(xyz): mv for xyz, mv in zip(np.asarray(source.points_xyz, np.float32), source.multiview_points())}
    assert loaded.points_multiview_bits is not None
    assert [bool(flags[tuple(xyz)]) for xyz in loaded.points_xyz] == loaded.points_multiview.tolist()


def test_ray_executor_with_two_local_workers_gives_the_same_file(small_street_map, tmp_path):
    pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'scenesqueezer[ray]'); scripts/setup_env.sh installs it")

    serial = compress_map(small_street_map, tmp_path / "a.sqz", {"ratio": 0.1}, executor="serial")
    assert main(["compress", str(small_street_map), str(tmp_path / "ray.sqz"), "--ratio", "0.1",
                 "--executor", "ray", "--workers", "2"]) == 0
    _assert_same_map(serial["path"], tmp_path / "ray.sqz")
    import ray

    assert not ray.is_initialized(), "the local Ray instance started for the compression must be shut down"


def test_bad_options_and_no_partial_output(small_street_map, tmp_path):
    with pytest.raises(ConfigError, match="unknown compression method"):
        compress_map(small_street_map, tmp_path / "x.sqz", {"method": "magic"})
    with pytest.raises(ConfigError, match="ratio"):
        compress_map(small_street_map, tmp_path / "x.sqz", {"ratio": 0.0})
    with pytest.raises(MapFileError):
        compress_map(tmp_path / "missing.ssmap", tmp_path / "x.sqz")
    assert not any(tmp_path.iterdir())


def test_compressed_map_refuses_a_scene_map(small_street_map):
    with pytest.raises(MapFileError, match="expected a 'compressed_map'"):
        CompressedMap.load(small_street_map)


def test_process_pool_after_torch_in_the_same_process_does_not_hang(small_street_map, tmp_path):
    """A process that already ran multi-threaded torch (a localizer, a benchmark) then compresses
    with the learned method: forked workers used to deadlock on the inherited OpenMP pool."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    out = tmp_path / "after_torch.sqz"
    code = (
        "import sys, torch\n"
        "torch.set_num_threads(2)\n"
        "for _ in range(3): (torch.randn(600, 600) @ torch.randn(600, 600)).sum().item()\n"
        "from scenesqueezer_core.compression.compress import compress_map\n"
        "compress_map(sys.argv[1], sys.argv[2], {'ratio': 0.05, 'method': 'learned'}, executor='process', workers=2)\n"
    )
    import os
    import signal

    process = subprocess.Popen([sys.executable, "-c", code, str(small_street_map), str(out)], cwd=str(repo),
                               env={**os.environ, "PYTHONPATH": str(repo)}, start_new_session=True)
    try:
        assert process.wait(timeout=300) == 0
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the hung workers too
        process.wait()
        pytest.fail("compression in a process pool hung after torch ran in the parent (fork + OpenMP)")
    assert CompressedMap.load(out).info["conf"]["method"] == "learned"
