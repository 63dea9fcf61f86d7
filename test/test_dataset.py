"""Dataset I/O on the real Strecha data and on every format edge we promise to report clearly."""

import json
import shutil

import numpy as np
import pytest

from conftest import SHARED_DATA
from scenesqueezer_core.dataset import load_dataset, read_image, write_colmap_text, write_splits
from scenesqueezer_core.errors import CameraModelError, DatasetError, ImageError
from scenesqueezer_core.types import Camera, Frame, Pose

FOUNTAIN = SHARED_DATA / "strecha_fountain_p11"


def test_load_strecha_fountain():
    ds = load_dataset(FOUNTAIN)
    assert len(ds.frames) == 11
    assert len(ds.split("mapping")) == 9 and len(ds.split("query")) == 2
    frame = ds.frames["0000.jpg"]
    assert frame.camera.model == "PINHOLE" and (frame.camera.width, frame.camera.height) == (1024, 683)
    # rotations are orthonormal and the frames are metres apart (real measured poses)
    assert np.allclose(frame.cam_from_world.R @ frame.cam_from_world.R.T, np.eye(3), atol=1e-9)
    centers = np.stack([f.cam_from_world.center for f in ds.frames.values()])
    assert 0.5 < np.linalg.norm(centers[0] - centers[-1]) < 50
    assert read_image(frame.image_path).shape == (683, 1024, 3)


def _copy(tmp_path):
    dst = tmp_path / "ds"
    shutil.copytree(FOUNTAIN, dst)
    return dst


def test_missing_image_is_named(tmp_path):
    root = _copy(tmp_path)
    (root / "images" / "0003.jpg").unlink()
    with pytest.raises(DatasetError, match="0003.jpg"):
        load_dataset(root)


def test_unknown_camera_model(tmp_path):
    root = _copy(tmp_path)
    cams = (root / "sparse" / "cameras.txt").read_text().splitlines()
    out = []
    for line in cams:
        if line and not line.startswith("#"):
            parts = line.split()
            # a fisheye model we do not support, with its 8 parameters
            line = " ".join([parts[0], "OPENCV_FISHEYE", parts[2], parts[3], *parts[4:8], "0", "0", "0", "0"])
        out.append(line)
    (root / "sparse" / "cameras.txt").write_text("\n".join(out) + "\n")
    with pytest.raises(CameraModelError, match="OPENCV_FISHEYE"):
        load_dataset(root)


def test_inconsistent_splits(tmp_path):
    root = _copy(tmp_path)
    splits = json.loads((root / "splits.json").read_text())
    splits["query"].append("nope.jpg")
    (root / "splits.json").write_text(json.dumps(splits))
    with pytest.raises(DatasetError, match="nope.jpg"):
        load_dataset(root)
    splits["query"] = [splits["mapping"][0]]
    (root / "splits.json").write_text(json.dumps(splits))
    with pytest.raises(DatasetError, match="share"):
        load_dataset(root)
    (root / "splits.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_dataset(root)


def test_missing_model_and_folder(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nothing")
    (tmp_path / "x" / "images").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no COLMAP model"):
        load_dataset(tmp_path / "x")


@pytest.mark.parametrize("model,params", [
    ("SIMPLE_PINHOLE", [500, 320, 240]),
    ("PINHOLE", [500, 510, 320, 240]),
    ("SIMPLE_RADIAL", [500, 320, 240, 0.05]),
    ("RADIAL", [500, 320, 240, 0.05, -0.01]),
    ("OPENCV", [500, 510, 320, 240, 0.05, -0.01, 0.001, -0.002]),
])
def test_camera_models_roundtrip_and_distortion(tmp_path, model, params):
    """Write each model, read it back through pycolmap; projection then undistortion is consistent."""
    camera = Camera(model, 640, 480, np.array(params, float))
    pose = Pose.from_qvec_tvec(np.array([1, 0, 0, 0.0]), np.zeros(3))
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    import cv2

    cv2.imwrite(str(root / "images" / "a.png"), np.zeros((480, 640, 3), np.uint8))
    write_colmap_text(root / "sparse", [Frame("a.png", camera, pose, root / "images" / "a.png")])
    write_splits(root, {"mapping": ["a.png"]})
    loaded = load_dataset(root).frames["a.png"].camera
    assert loaded.model == model and np.allclose(loaded.params, params)
    pts = np.array([[0.9, -0.6, 2.0], [-1.2, 0.9, 3.0], [0.0, 0.0, 1.0]])
    pix = loaded.project(pts)
    undist = loaded.undistort_points(pix)
    ideal = pts[:, :2] / pts[:, 2:] @ loaded.K[:2, :2].T + loaded.K[:2, 2]
    assert np.allclose(undist, ideal, atol=1e-4)
    if loaded.has_distortion:
        assert np.abs(pix - ideal).max() > 1.0, "distortion must not be ignored"


def test_bad_camera_parameters():
    with pytest.raises(CameraModelError, match="4 parameters"):
        Camera("PINHOLE", 640, 480, np.array([1.0, 2.0]))
    with pytest.raises(CameraModelError, match="finite"):
        Camera("PINHOLE", 640, 480, np.array([np.nan, 1, 1, 1]))
    with pytest.raises(CameraModelError, match="focal"):
        Camera("PINHOLE", 640, 480, np.array([0.0, 1, 1, 1]))


def test_read_image_errors(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        read_image(tmp_path / "x.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ImageError, match="cannot be decoded"):
        read_image(tmp_path / "bad.jpg")
