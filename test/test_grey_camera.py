"""Grey cameras end to end, on real KITTI 06 frames (8-bit grey PNG, 1226x370) from ../shared/data.

A grey dataset exports mono8 bags (raw and grey JPEG), a map builds from a mono8 bag, and the
offline replay, the node's decoders and the node over DDS see the same pixels as the PNG files.
"""

import json
import os

import cv2
import numpy as np
import pytest

from conftest import SHARED_DATA
from scenesqueezer_core.bag import export_bag
from scenesqueezer_core.bag import messages as m
from scenesqueezer_core.dataset import load_dataset, read_image, write_colmap_text, write_splits
from scenesqueezer_core.geometry import pose_error
from scenesqueezer_core.localization import Localizer, checks_disabled_conf
from scenesqueezer_core.maps.scene_map import SceneMap
from scenesqueezer_core.replay import replay_offline

KITTI = SHARED_DATA / "kitti06_51"
pytestmark = pytest.mark.skipif(not (KITTI / "splits.json").exists(),
                                reason=f"real KITTI frames not available ({KITTI} missing; set SCENESQUEEZER_SHARED_DATA)")
MAPPING = [f"{i:06d}.png" for i in range(0, 16, 2)]  # 8 mapping frames, about 9 m of road
QUERY = [f"{i:06d}.png" for i in (3, 5, 9, 11)]  # between mapping frames
def read_bag(path):
    from rosbags.rosbag2 import Reader

    store = m.typestore()
    out = {}
    with Reader(path) as reader:
        for connection, _, raw in reader.messages():
            out.setdefault(connection.topic, []).append(store.deserialize_cdr(raw, connection.msgtype))
    return out


@pytest.fixture(scope="module")
def kitti(tmp_path_factory):
    """A small KITTI dataset: the shared images linked (not copied), 8 mapping and 4 query frames."""
    source = load_dataset(KITTI)
    root = tmp_path_factory.mktemp("kitti_grey") / "kitti"
    (root / "images").mkdir(parents=True)
    for name in MAPPING + QUERY:
        os.symlink(source.frames[name].image_path, root / "images" / name)
    write_colmap_text(root / "sparse", [source.frames[n] for n in MAPPING + QUERY])
    write_splits(root, {"mapping": MAPPING, "query": QUERY})
    return root


def test_kitti_images_are_grey_files():
    image = cv2.imread(str(KITTI / "images" / QUERY[0]), cv2.IMREAD_UNCHANGED)
    assert image.ndim == 2 and image.dtype == np.uint8 and image.shape == (370, 1226)
    rgb = read_image(KITTI / "images" / QUERY[0])
    assert rgb.shape == (370, 1226, 3)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[:, :, channel], image)


def test_grey_dataset_exports_mono8(kitti, tmp_path):
    bag = export_bag(kitti, tmp_path / "raw", split="query")
    messages = read_bag(bag)
    images = messages["/camera/image_raw"]
    assert len(images) == len(QUERY)
    for name, msg in zip(QUERY, images):
        grey = cv2.imread(str(kitti / "images" / name), cv2.IMREAD_UNCHANGED)
        assert msg.encoding == "mono8" and (msg.width, msg.height) == (1226, 370) and msg.step == 1226
        np.testing.assert_array_equal(np.asarray(msg.data).reshape(370, 1226), grey)  # lossless
        np.testing.assert_array_equal(m.image_msg_to_rgb(msg), read_image(kitti / "images" / name))

    # explicit colour encodings still work on a grey dataset (three equal channels)
    rgb_msg = read_bag(export_bag(kitti, tmp_path / "rgb", split="query", encoding="rgb8"))["/camera/image_raw"][0]
    assert rgb_msg.encoding == "rgb8" and rgb_msg.step == 3 * 1226

    jpeg = read_bag(export_bag(kitti, tmp_path / "jpeg", split="query", compressed=True))
    for name, msg in zip(QUERY, jpeg["/camera/image_raw/compressed"]):
        assert msg.format.startswith("mono8")
        decoded = cv2.imdecode(np.asarray(msg.data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        assert decoded.ndim == 2, "a grey camera's JPEG has one channel"
        grey = cv2.imread(str(kitti / "images" / name), cv2.IMREAD_UNCHANGED)
        assert np.abs(decoded.astype(int) - grey).mean() < 2.0
        rgb = m.image_msg_to_rgb(msg)
        assert rgb.shape == (370, 1226, 3) and np.array_equal(rgb[:, :, 0], rgb[:, :, 2])


def test_colour_dataset_still_exports_rgb8(tmp_path):
    from scenesqueezer_core.synthetic import generate_scene

    scene = generate_scene(tmp_path / "scene", num_frames=8, width=160, height=120, num_workers=1)
    msg = read_bag(export_bag(scene, tmp_path / "c", split="query"))["/camera/image_raw"][0]
    assert msg.encoding == "rgb8"
    grey = read_bag(export_bag(scene, tmp_path / "g", split="query", encoding="mono8"))["/camera/image_raw"][0]
    assert grey.encoding == "mono8" and grey.step == grey.width
    rgb = m.image_msg_to_rgb(msg)
    expected = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(np.asarray(grey.data).reshape(grey.height, grey.width), expected)


def test_node_decoders_agree_with_the_bag_decoder_on_grey_frames():
    """The node's raw and compressed decoders give the offline replay's pixels for mono8 / grey JPEG."""
    from sensor_msgs.msg import CompressedImage, Image

    from scenesqueezer_ros.image_conversion import compressed_msg_to_rgb, image_msg_to_rgb

    grey = cv2.imread(str(KITTI / "images" / QUERY[0]), cv2.IMREAD_UNCHANGED)
    height, width = grey.shape
    raw = Image(height=height, width=width, encoding="mono8", is_bigendian=0, step=width, data=grey.tobytes())
    offline = m.image_msg_to_rgb(m.typestore().types[m.IMAGE_TYPE](
        header=m.header(0, "cam"), height=height, width=width, encoding="mono8", is_bigendian=0, step=width,
        data=grey.reshape(-1)))
    np.testing.assert_array_equal(image_msg_to_rgb(raw, use_cv_bridge=False), offline)
    np.testing.assert_array_equal(offline, read_image(KITTI / "images" / QUERY[0]))
    for ext, fmt in ((".jpg", "mono8; jpeg compressed mono8"), (".png", "mono8; png compressed mono8")):
        ok, buffer = cv2.imencode(ext, grey)
        assert ok
        node = compressed_msg_to_rgb(CompressedImage(format=fmt, data=buffer.tobytes()))
        bag = m.image_msg_to_rgb(m.typestore().types[m.COMPRESSED_IMAGE_TYPE](
            header=m.header(0, "cam"), format=fmt, data=buffer.reshape(-1)))
        np.testing.assert_array_equal(node, bag)
        assert node.shape == (height, width, 3)
        if ext == ".png":
            np.testing.assert_array_equal(node[:, :, 1], grey)


@pytest.fixture(scope="module")
def map_from_mono8_bag(kitti, tmp_path_factory):
    """build-map from a mono8 bag of the 8 mapping frames (keyframes by motion, as a robot's bag)."""
    from scenesqueezer_core.mapping import build_map

    root = tmp_path_factory.mktemp("kitti_grey_map")
    bag = export_bag(kitti, root / "mapping_bag", split="mapping")
    assert read_bag(bag)["/camera/image_raw"][0].encoding == "mono8"
    map_path = build_map(bag, root / "kitti.ssmap", features="xfeat", device="cpu")
    query_bag = export_bag(kitti, root / "query_bag", split="query")
    return root, map_path, query_bag


def test_map_from_mono8_bag_localizes_grey_queries(kitti, map_from_mono8_bag):
    root, map_path, _ = map_from_mono8_bag
    scene_map = SceneMap.load(map_path)
    assert scene_map.num_frames == len(MAPPING), "every mapping frame moved > 0.1 m: all are keyframes"
    assert len(scene_map.points_xyz) > 1000
    imported = load_dataset(root / "kitti_bag_dataset")
    truth = load_dataset(kitti)
    for frame in imported.frames.values():  # the bag's poses and intrinsics survive the round trip
        original = truth.frames[MAPPING[int(frame.name.split("_", 1)[0])]]
        dt, dr = pose_error(frame.cam_from_world, original.cam_from_world)
        assert dt < 1e-6 and dr < 1e-4
        np.testing.assert_allclose(frame.camera.params, original.camera.params, atol=1e-9)
    # the pipeline itself, every pose check off: grey queries localize within (0.25 m, 2 deg)
    localizer = Localizer.from_file(map_path, checks_disabled_conf(), device="cpu")
    good = 0
    for name in QUERY:
        frame = truth.frames[name]
        result = localizer.localize(read_image(frame.image_path), frame.camera)
        if result.success:
            dt, dr = pose_error(result.cam_from_world, frame.cam_from_world)
            good += dt < 0.25 and dr < 2.0
    assert good >= 3, good


@pytest.fixture(scope="module")
def offline_replay(map_from_mono8_bag):
    root, map_path, query_bag = map_from_mono8_bag
    return replay_offline(query_bag, map_path, root / "replay_offline", device="cpu", progress=False)


def test_offline_replay_of_a_mono8_bag_equals_localizing_the_png_files(kitti, map_from_mono8_bag, offline_replay):
    root, map_path, query_bag = map_from_mono8_bag
    outcome = offline_replay
    assert outcome.metrics["num_queries"] == len(QUERY)
    assert (root / "replay_offline" / "summary.md").exists()
    # the replay's configuration, applied to the original grey PNG files: identical outcomes and poses
    localizer = Localizer.from_file(map_path, outcome.info["conf"], device="cpu")
    truth = load_dataset(kitti)
    for name, record in zip(QUERY, outcome.records):
        frame = truth.frames[name]
        result = localizer.localize(read_image(frame.image_path), frame.camera)
        assert (record.estimate is not None) == result.success, (name, record.failure_reason, result.failure_reason)
        if result.success:
            dt, dr = pose_error(record.estimate, result.cam_from_world)
            assert dt < 1e-9 and dr < 1e-6
    metrics = json.loads((root / "replay_offline" / "metrics.json").read_text())
    assert metrics["num_localized"] == sum(r.estimate is not None for r in outcome.records)
    # and with the default pose checks the grey queries localize (KITTI: a car's grey camera)
    assert round(metrics["recall"]["0.25m_2deg"] * len(QUERY)) >= 3, [r.failure_reason for r in outcome.records]


def test_node_over_dds_localizes_a_mono8_bag_like_the_offline_replay(map_from_mono8_bag, offline_replay):
    from scenesqueezer_ros.replay import replay_over_dds

    root, map_path, query_bag = map_from_mono8_bag
    offline = offline_replay
    dds = replay_over_dds(query_bag, map_path, root / "replay_dds", as_fast_as_node=True, device="cpu",
                          domain_id=88, progress=False)
    assert dds.info["frames_sent"] == len(QUERY) and dds.info["results_received"] == len(QUERY)
    by_stamp = {r.stamp_ns: r for r in offline.records}
    for record in dds.records:
        reference = by_stamp[record.stamp_ns]
        assert (record.estimate is None) == (reference.estimate is None), (record.failure_reason,
                                                                           reference.failure_reason)
        if record.estimate is not None:
            dt, dr = pose_error(record.estimate, reference.estimate)
            assert dt < 1e-3 and dr < 1e-2
