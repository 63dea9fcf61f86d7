"""build-map accepts a rosbag2 (images + camera info + ground-truth poses) as well as a dataset folder."""

import json

from scenesqueezer_core.bag import export_bag
from scenesqueezer_core.cli import main
from scenesqueezer_core.maps.scene_map import SceneMap


def test_build_map_from_bag_then_localize(small_street_scene, tmp_path):
    bag = export_bag(small_street_scene, tmp_path / "mapping_bag", split="mapping", storage="mcap", rate_hz=5.0)
    map_path = tmp_path / "from_bag.ssmap"
    assert main(["build-map", str(bag), str(map_path), "--features", "xfeat"]) == 0
    scene_map = SceneMap.load(map_path)
    assert scene_map.num_frames >= 10 and scene_map.num_points > 500
    results, metrics = tmp_path / "r.json", tmp_path / "m.json"
    assert main(["localize", str(map_path), str(small_street_scene), "--output", str(results),
                 "--split", "query_day"]) == 0
    assert main(["evaluate", str(results), str(small_street_scene), "--output", str(metrics)]) == 0
    m = json.loads(metrics.read_text())
    assert m["recall"]["0.5m_5deg"] >= 0.6, m
