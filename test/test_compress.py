"""Compression end to end on a small synthetic map: every method, file format, localizer on it."""

import json

import numpy as np
import pytest

from scenesqueezer_core.cli import main
from scenesqueezer_core.compression.compress import TARGET_SIZE_CODES, compress_map
from scenesqueezer_core.errors import ConfigError, MapFileError
from scenesqueezer_core.maps.compressed_map import ARRAY_NAMES, OPTIONAL_ARRAY_NAMES, CompressedMap
from scenesqueezer_core.maps.mapfile import read_map_file, write_map_file
from scenesqueezer_core.maps.scene_map import SceneMap
from scenesqueezer_core.maps.packed_geometry import PackedPoints
from scipy.spatial import cKDTree


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
    # kept points are real map points, within the stated fixed-point error of their positions
    _, nearest = cKDTree(np.asarray(source.points_xyz)).query(cmap.points_xyz)
    bound = cmap.info["points_xyz_max_error_m"]
    assert 0 < bound < 1e-3
    assert np.abs(cmap.points_xyz - np.asarray(source.points_xyz)[nearest]).max() <= bound
    # the file packs ids and coordinates (format version 2)
    container = read_map_file(path)
    assert container.version == 2 and container.arrays["points_xyz_fixed"].dtype == np.uint16
    assert container.arrays["cluster_point_ids"].dtype == np.min_scalar_type(len(cmap.points_xyz) - 1)
    # descriptors are decoded on demand (unit vectors), not held for the whole map
    assert np.allclose(np.linalg.norm(cmap.point_descriptors(np.arange(len(cmap.points_xyz))), axis=1), 1.0, atol=1e-3)
    assert not any(isinstance(v, np.ndarray) and v.dtype == np.float32 and v.shape[0] == len(cmap.points_xyz)
                   and v.ndim == 2 and v.shape[1] == 64 for v in vars(cmap).values())
    # nor are the coordinates: they stay in the file's 16-bit form, decoded for the rows asked for
    assert isinstance(cmap.points_xyz, PackedPoints) and cmap.points_xyz.fixed.dtype == np.uint16
    assert not any(isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.shape == (len(cmap.points_xyz), 3)
                   for v in vars(cmap).values())


def test_localizer_keeps_no_decoded_copy_of_a_compressed_map(compressed):
    """The matching stage leaves decoding to the map (its 16-bit store of decoded points), and the map's claim that
    a point's descriptor is the same from every cluster (which lets matching compare it once) holds."""
    from scenesqueezer_core.localization import Localizer

    path, _ = compressed
    localizer = Localizer.from_file(path, device="cpu")
    cmap, matching = localizer.database, localizer.matching
    assert cmap.decodes_on_demand and not matching.keeps_candidates and not matching._cache
    assert matching.points_share_descriptors
    features = [cmap.candidate_features(c) for c in range(cmap.num_clusters)]
    for cluster, (_, ids) in enumerate(features):  # the occlusion check reads the ids alone
        np.testing.assert_array_equal(cmap.candidate_point_ids(cluster), ids)
    point_ids = np.concatenate([ids for _, ids in features])
    descriptors = np.concatenate([f.descriptors for f, _ in features])
    assert len(np.unique(point_ids)) < len(point_ids)  # points seen from several clusters exist
    _, first, inverse = np.unique(point_ids, return_index=True, return_inverse=True)
    np.testing.assert_array_equal(descriptors, descriptors[first][inverse.reshape(-1)])


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
    _, nearest = cKDTree(np.asarray(source.points_xyz)).query(loaded.points_xyz)
    assert loaded.points_multiview_bits is not None
    assert source.multiview_points()[nearest].tolist() == loaded.points_multiview.tolist()


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


def test_product_codes_without_colours_localize_from_a_smaller_file(compressed, small_street_map, small_street_scene,
                                                                     tmp_path):
    """pq16 codes and no colours: 16 + 0 instead of 64 + 3 bytes per point; the localizer still
    registers day queries (decoding each retrieved cluster on demand, a bounded cache of clusters)."""
    dsq_path, dsq_report = compressed
    path = tmp_path / "pq16.sqz"
    assert main(["compress", str(small_street_map), str(path), "--ratio", "0.1", "--codes", "pq16", "--no-colors",
                 "--workers", "1"]) == 0
    cmap = CompressedMap.load(path)
    assert cmap.descriptor_codes == "pq16" and cmap.points_codes.shape[1] == 16
    assert "points_color" not in read_map_file(path).arrays and not cmap.stores_colors
    assert np.all(np.asarray(cmap.points_color) == 128) and cmap.points_color.shape == (len(cmap.points_xyz), 3)
    dsq = CompressedMap.load(dsq_path)
    assert len(cmap.points_xyz) == len(dsq.points_xyz)  # same selection, smaller codes
    assert path.stat().st_size <= dsq_report["file_bytes"] - len(cmap.points_xyz) * (64 - 16 + 3)
    results, metrics = tmp_path / "r.json", tmp_path / "m.json"
    assert main(["localize", str(path), str(small_street_scene), "--output", str(results), "--split", "query_day"]) == 0
    assert main(["evaluate", str(results), str(small_street_scene), "--output", str(metrics)]) == 0
    assert json.loads(metrics.read_text())["recall"]["0.5m_5deg"] >= 0.6
    for cluster in range(cmap.num_clusters):  # product codes: decoded at each request, nothing kept
        features, ids = cmap.candidate_features(cluster)
        assert np.allclose(features.descriptors, cmap.point_descriptors(ids))
    assert cmap.decoded_descriptors == cmap.point_descriptors
    # DSQ codes: each point decoded once into the 16-bit store, within 1e-4 in cosine of the decoder's output
    first = dsq.candidate_features(0)[1]
    assert dsq.decoded_descriptors.num_decoded == len(np.unique(first))
    seen = []
    for cluster in range(dsq.num_clusters):
        features, ids = dsq.candidate_features(cluster)
        exact = dsq.point_descriptors(ids)
        assert np.abs(np.sum(features.descriptors * exact, axis=1) - 1.0).max() < 1e-4
        seen.append(ids)
    assert dsq.decoded_descriptors.num_decoded == len(np.unique(np.concatenate(seen)))


def _write_version_1(cmap: CompressedMap, path):
    """The version-1 writer (float32 coordinates, int32 ids, colours always), kept only here."""
    meta = {"feature_setup": cmap.feature_setup, "info": {k: v for k, v in cmap.info.items() if k != "stores_colors"},
            "cameras": [{"model": c.model, "width": c.width, "height": c.height, "params": c.params.tolist()}
                        for c in cmap.cameras]}
    meta["info"]["models"] = {k: v for k, v in cmap.info["models"].items() if k != "descriptor_codes"}
    arrays = {name: getattr(cmap, name) for name in ARRAY_NAMES + OPTIONAL_ARRAY_NAMES}
    arrays["cluster_point_ids"] = arrays["cluster_point_ids"].astype(np.int32)
    arrays["points_color"] = np.ascontiguousarray(arrays["points_color"])
    return write_map_file(path, "compressed_map", meta, arrays, version=1)


def test_version_1_files_still_load_and_unknown_versions_name_the_fix(compressed, tmp_path):
    new = CompressedMap.load(compressed[0])
    old = CompressedMap.load(_write_version_1(new, tmp_path / "v1.sqz"))
    assert read_map_file(tmp_path / "v1.sqz").version == 1 and old.descriptor_codes == "dsq"
    for name in ARRAY_NAMES + OPTIONAL_ARRAY_NAMES:
        assert np.array_equal(getattr(old, name), getattr(new, name)), name
    for cluster in range(new.num_clusters):
        (f_old, ids_old), (f_new, ids_new) = old.candidate_features(cluster), new.candidate_features(cluster)
        assert np.array_equal(ids_old, ids_new) and np.array_equal(f_old.descriptors, f_new.descriptors)
    arrays = dict(read_map_file(compressed[0]).arrays)
    write_map_file(tmp_path / "v3.sqz", "compressed_map", read_map_file(compressed[0]).meta, arrays, version=3)
    with pytest.raises(MapFileError, match="format version 3.*update scenesqueezer"):
        CompressedMap.load(tmp_path / "v3.sqz")


def test_target_size_fits_the_file_and_says_what_it_chose(small_street_map, tmp_path, capsys):
    budget = 60_000
    out = tmp_path / "budget.sqz"
    assert main(["compress", str(small_street_map), str(out), "--target-size", "60KB", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    cmap = CompressedMap.load(out)
    assert out.stat().st_size <= budget
    assert f"{cmap.descriptor_codes} descriptor codes, ratio" in printed and "target size 60000 bytes" in printed
    # the budget is spent: a map with more points would not fit (within the search's resolution)
    assert out.stat().st_size > 0.8 * budget or cmap.info["conf"]["ratio"] >= 1.0
    assert cmap.info["conf"]["target_size"] == budget
    # without --codes the size curve's best code size on the real sets is tried first: pq8 fits, so pq8
    assert TARGET_SIZE_CODES[0] == "pq8" and cmap.descriptor_codes == "pq8"


def test_impossible_target_size_is_one_clear_error_and_writes_nothing(small_street_map, tmp_path, capsys):
    out = tmp_path / "tiny.sqz"
    assert main(["compress", str(small_street_map), str(out), "--target-size", "3KB", "--workers", "1"]) == 2
    error = capsys.readouterr().err.strip()
    assert "below the smallest map of this scene" in error and "raise --target-size" in error
    assert len(error.splitlines()) == 1 and not out.exists() and not any(tmp_path.iterdir())
    assert main(["compress", str(small_street_map), str(out), "--target-size", "lots"]) == 2
    assert "cannot read the size 'lots'" in capsys.readouterr().err
