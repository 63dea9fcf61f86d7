"""`localize --conf FILE.yaml`: a site's settings without code, in the node's parameter-file format."""

import json

from scenesqueezer_core.cli import main


def test_conf_file_typo_is_one_clear_error(tmp_path, capsys):
    conf = tmp_path / "site.yaml"
    conf.write_text("/**:\n  ros__parameters:\n    max_occluded_inlier: 0.5\n")
    code = main(["localize", str(tmp_path / "none.sqz"), str(tmp_path), "--output", str(tmp_path / "r.json"),
                 "--conf", str(conf)])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown option(s) max_occluded_inlier" in err and "max_occluded_inliers" in err
    assert not (tmp_path / "r.json").exists()


def test_conf_file_sets_the_pose_checks(small_street_scene, small_street_map, tmp_path):
    conf = tmp_path / "strict.yaml"
    # a node parameter file: node options are accepted, the localizer takes its own
    conf.write_text("/**:\n  ros__parameters:\n    image_topic: /front/image\n    min_inliers: 100000\n"
                    "    top_k: 3\n")
    out = tmp_path / "results.json"
    assert main(["localize", str(small_street_map), str(small_street_scene), "--output", str(out),
                 "--split", "query_day", "--conf", str(conf), "--device", "cpu"]) == 0
    payload = json.loads(out.read_text())
    assert payload["conf"]["min_inliers"] == 100000 and payload["conf"]["top_k"] == 3
    results = payload["results"].values()
    assert results and all(not r["success"] for r in results)
    assert {r["failure_code"] for r in results} <= {"too_few_inliers", "no_candidate_registered", "ambiguous"}
    assert any(r["failure_code"] == "too_few_inliers" for r in results)
