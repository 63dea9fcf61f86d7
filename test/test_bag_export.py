"""export-bag and bag-to-dataset on a tiny synthetic scene, read back with rosbags (no ROS needed)."""

import argparse

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from scenesqueezer_core.bag import bag_to_dataset, export_bag, is_bag
from scenesqueezer_core.bag import messages as m
from scenesqueezer_core.bag.cli import add_bag_commands
from scenesqueezer_core.bag.read import interpolate_pose, select_keyframes, select_topics
from scenesqueezer_core.dataset import load_dataset, read_image
from scenesqueezer_core.errors import ConfigError, DatasetError
from scenesqueezer_core.synthetic import generate_scene
from scenesqueezer_core.types import Pose


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("bag_export")
    return generate_scene(root / "scene", num_frames=8, width=160, height=120, num_workers=1)


def read_bag(path):
    from rosbags.rosbag2 import Reader

    store = m.typestore()
    out = {}
    with Reader(path) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        for connection, timestamp, raw in reader.messages():
            out.setdefault(connection.topic, []).append((timestamp, store.deserialize_cdr(raw, connection.msgtype)))
    return types, out


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_export_reads_back_with_rosbags(scene, tmp_path, storage):
    dataset = load_dataset(scene)
    frames = dataset.split("query")
    bag = export_bag(scene, tmp_path / "q", split="query", storage=storage, rate_hz=4.0)
    assert is_bag(bag)
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["storage_identifier"] == storage
    assert meta["version"] == 9
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in meta["topics_with_message_count"]}
    n = len(frames)
    assert counts == {"/camera/image_raw": n, "/camera/camera_info": n, "/ground_truth/camera_pose": n,
                      "/tf": n, "/tf_static": 1}
    assert meta["message_count"] == 4 * n + 1
    for name in meta["relative_file_paths"]:
        assert (bag / name).is_file()

    types, messages = read_bag(bag)
    assert types["/camera/image_raw"] == "sensor_msgs/msg/Image"
    assert types["/ground_truth/camera_pose"] == "geometry_msgs/msg/PoseStamped"
    assert types["/tf_static"] == "tf2_msgs/msg/TFMessage"
    stamps = [m.stamp_to_ns(msg.header.stamp) for _, msg in messages["/camera/image_raw"]]
    assert np.allclose(np.diff(stamps), 0.25e9)
    assert [t for t, _ in messages["/camera/image_raw"]] == stamps  # bag time = header stamp
    for frame, (_, image), (_, info), (_, pose) in zip(frames, messages["/camera/image_raw"],
                                                         messages["/camera/camera_info"],
                                                         messages["/ground_truth/camera_pose"]):
        assert image.encoding == "rgb8"
        np.testing.assert_array_equal(m.image_msg_to_rgb(image), read_image(frame.image_path))
        camera = m.camera_info_to_camera(info)
        assert (camera.model, camera.width, camera.height) == (frame.camera.model, frame.camera.width,
                                                               frame.camera.height)
        np.testing.assert_allclose(camera.params, frame.camera.params, atol=1e-12)
        assert info.k[2] == pytest.approx(frame.camera.K[0, 2] - 0.5)  # ROS pixel-centre convention
        assert pose.header.frame_id == "map"
        map_from_cam = m.msg_to_pose(pose.pose.position, pose.pose.orientation)
        np.testing.assert_allclose(map_from_cam.inverse().matrix, frame.cam_from_world.matrix, atol=1e-9)
        assert m.stamp_to_ns(pose.header.stamp) == m.stamp_to_ns(image.header.stamp)


def test_compressed_export_and_import_keep_jpeg(scene, tmp_path):
    bag = export_bag(scene, tmp_path / "c", split="mapping", compressed=True, storage="sqlite3")
    types, messages = read_bag(bag)
    assert types["/camera/image_raw/compressed"] == "sensor_msgs/msg/CompressedImage"
    first = messages["/camera/image_raw/compressed"][0][1]
    assert "jpeg" in first.format
    truth = read_image(load_dataset(scene).split("mapping")[0].image_path).astype(float)
    assert np.abs(m.image_msg_to_rgb(first).astype(float) - truth).mean() < 6.0  # lossy, but the same picture

    result = bag_to_dataset(bag, tmp_path / "ds", min_translation=0.0, min_rotation_deg=0.0)
    imported = load_dataset(result.dataset_dir)
    jpg = sorted((result.dataset_dir / "images").iterdir())[0]
    assert jpg.suffix == ".jpg" and jpg.read_bytes() == np.asarray(first.data, dtype=np.uint8).tobytes()
    assert len(imported.split("mapping")) == len(load_dataset(scene).split("mapping"))


@pytest.mark.parametrize("source", ["pose_topic", "tf"])
def test_bag_to_dataset_round_trip(scene, tmp_path, source):
    original = load_dataset(scene).split("mapping")
    bag = export_bag(scene, tmp_path / "map_bag", split="mapping")
    kwargs = {"tf_frames": ("map", "camera_optical_frame")} if source == "tf" else {}
    result = bag_to_dataset(bag, tmp_path / "ds", min_translation=0.0, min_rotation_deg=0.0, **kwargs)
    assert (result.num_images, result.num_synced, result.num_keyframes) == (len(original),) * 3
    assert (result.topics.pose is None) == (source == "tf")
    imported = load_dataset(result.dataset_dir)
    frames = imported.split("mapping")
    assert len(frames) == len(original)
    for a, b in zip(frames, original):
        np.testing.assert_allclose(a.cam_from_world.matrix, b.cam_from_world.matrix, atol=1e-9)
        np.testing.assert_allclose(a.camera.params, b.camera.params, atol=1e-12)
        np.testing.assert_array_equal(read_image(a.image_path), read_image(b.image_path))


def test_keyframe_selection_thins_a_dense_bag(scene, tmp_path):
    original = load_dataset(scene).split("mapping")
    bag = export_bag(scene, tmp_path / "map_bag", split="mapping")
    spacing = np.median([np.linalg.norm(a.cam_from_world.center - b.cam_from_world.center)
                         for a, b in zip(original, original[1:])])
    result = bag_to_dataset(bag, tmp_path / "ds", min_translation=2.5 * spacing, min_rotation_deg=90.0)
    assert 1 < result.num_keyframes < len(original)


def test_interpolated_poses_between_sparse_samples(scene, tmp_path):
    """Images between pose samples get interpolated poses; images far from any sample are dropped."""
    from rosbags.rosbag2 import Reader, Writer

    dense = export_bag(scene, tmp_path / "dense", split="mapping")
    sparse = tmp_path / "sparse"
    store = m.typestore()
    with Reader(dense) as reader, Writer(sparse, version=9) as writer:
        conns = {c.topic: writer.add_connection(c.topic, c.msgtype, typestore=store) for c in reader.connections
                 if c.topic != "/tf"}
        pose_index = 0
        for connection, timestamp, raw in reader.messages():
            if connection.topic == "/ground_truth/camera_pose":
                pose_index += 1
                if pose_index % 2 == 0 or pose_index == 8:  # keep poses 1, 3, 5, 7 (0-based 0, 2, 4, 6) and 8
                    continue
            if connection.topic in conns:
                writer.write(conns[connection.topic], timestamp, raw)
    result = bag_to_dataset(sparse, tmp_path / "ds", min_translation=0.0, min_rotation_deg=0.0,
                            max_interpolation_gap_s=0.25, sync_tolerance_s=0.01)
    # Frames 0..6 are covered (samples every 0.2 s), frame 7 is 0.1 s past the last sample: dropped.
    assert result.num_synced == 7 and result.dropped == {"no pose within the sync tolerance": 1}
    truth = load_dataset(scene).split("mapping")
    imported = load_dataset(result.dataset_dir).split("mapping")
    errors = [np.linalg.norm(a.cam_from_world.center - b.cam_from_world.center) for a, b in zip(imported, truth)]
    assert errors[0] < 1e-9 and errors[2] < 1e-9
    assert errors[1] < 0.5  # interpolated between two samples on a smooth path
    centers = [f.cam_from_world.center for f in imported]
    assert np.linalg.norm(centers[1] - centers[0]) > 1e-3 and np.linalg.norm(centers[1] - centers[2]) > 1e-3


def test_clear_errors(scene, tmp_path):
    with pytest.raises(DatasetError, match="not a rosbag2"):
        bag_to_dataset(scene, tmp_path / "x")
    with pytest.raises(ConfigError, match="storage"):
        export_bag(scene, tmp_path / "b", storage="bag")
    bag = export_bag(scene, tmp_path / "b")
    with pytest.raises(DatasetError, match="exists already"):
        export_bag(scene, tmp_path / "b")
    with pytest.raises(DatasetError, match="not a rosbag2"):
        export_bag(scene, scene)  # never overwrite a folder that is not a bag
    assert is_bag(export_bag(scene, bag, overwrite=True))
    with pytest.raises(DatasetError, match="several image topics.*--image-topic"):
        select_topics({"/a/image": m.IMAGE_TYPE, "/b/image": m.IMAGE_TYPE, "/a/camera_info": m.CAMERA_INFO_TYPE})
    with pytest.raises(DatasetError, match="no pose topic"):
        select_topics({"/a/image": m.IMAGE_TYPE, "/a/camera_info": m.CAMERA_INFO_TYPE})
    chosen = select_topics({"/a/image": m.IMAGE_TYPE, "/a/camera_info": m.CAMERA_INFO_TYPE,
                            "/b/camera_info": m.CAMERA_INFO_TYPE, "/odom": m.ODOMETRY_TYPE})
    assert (chosen.camera_info, chosen.pose) == ("/a/camera_info", "/odom")


def test_cli_export_bag(scene, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_bag_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["export-bag", str(scene), str(tmp_path / "cli_bag"), "--storage", "sqlite3",
                              "--split", "query_day", "--rate", "2"])
    assert args.func(args) == 0
    assert "sqlite3 bag" in capsys.readouterr().out
    _, messages = read_bag(tmp_path / "cli_bag")
    assert len(messages["/camera/image_raw"]) == len(load_dataset(scene).split("query_day"))


rotations = st.builds(lambda v: Rotation.from_rotvec(v).as_matrix(),
                      st.lists(st.floats(-3.0, 3.0), min_size=3, max_size=3).map(np.array))
translations = st.lists(st.floats(-50, 50), min_size=3, max_size=3).map(np.array)


@settings(max_examples=40, deadline=None)
@given(rotations, translations, rotations, translations, st.floats(0.0, 1.0))
def test_interpolation_stays_between_its_ends(r0, t0, r1, t1, fraction):
    a, b = Pose(r0, t0), Pose(r1, t1)
    mid = interpolate_pose(a, b, fraction)
    np.testing.assert_allclose(mid.R @ mid.R.T, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(mid.t, (1 - fraction) * t0 + fraction * t1, atol=1e-9)

    def angle(x, y):
        return np.arccos(np.clip((np.trace(x @ y.T) - 1) / 2, -1, 1))

    assert angle(mid.R, a.R) + angle(mid.R, b.R) == pytest.approx(angle(a.R, b.R), abs=1e-6)
    np.testing.assert_allclose(interpolate_pose(a, b, 0.0).matrix, a.matrix, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.lists(translations, min_size=1, max_size=30), st.floats(0.0, 20.0))
def test_keyframes_are_spaced_and_cover_the_path(centers, min_translation):
    poses = [Pose(np.eye(3), -np.asarray(c)) for c in centers]
    kept = select_keyframes(poses, min_translation, 360.0)
    assert kept[0] == 0 and kept == sorted(set(kept))
    for i, j in zip(kept, kept[1:]):
        assert np.linalg.norm(poses[j].center - poses[i].center) >= min_translation
    for k in range(len(poses)):  # every dropped pose is close to the keyframe before it
        if k not in kept:
            last = max(i for i in kept if i < k)
            assert np.linalg.norm(poses[k].center - poses[last].center) < min_translation


def test_rig_split_exports_every_camera_with_its_mounting(small_street_rig_scene, tmp_path):
    """A rig split: per rig frame, each camera's image and CameraInfo on /image_<i> and /camera_info_<i>
    at one stamp, the rig base's ground truth, and each camera's mounting from rig.json on /tf_static."""
    from scenesqueezer_core.dataset import load_rig

    dataset = load_dataset(small_street_rig_scene)
    rig, frames = load_rig(dataset)
    rows = frames["query_day_rig"]
    bag = export_bag(small_street_rig_scene, tmp_path / "rig", split="query_day_rig", rig=True, rate_hz=5.0)
    types, messages = read_bag(bag)
    cameras = len(rig.cameras)
    for i in range(cameras):
        assert types[f"/image_{i}"] == "sensor_msgs/msg/Image" and len(messages[f"/image_{i}"]) == len(rows)
        assert len(messages[f"/camera_info_{i}"]) == len(rows)
    mounts = {t.child_frame_id: t for t in messages["/tf_static"][0][1].transforms}
    assert set(mounts) == {f"{c.name}_optical" for c in rig.cameras}
    for camera in rig.cameras:
        t = mounts[f"{camera.name}_optical"]
        assert t.header.frame_id == "rig_base"
        mount = m.msg_to_pose(t.transform.translation, t.transform.rotation)
        np.testing.assert_allclose(mount.R, camera.base_from_camera.R, atol=1e-9)
        np.testing.assert_allclose(mount.t, camera.base_from_camera.t, atol=1e-9)
    for k, row in enumerate(rows):
        stamps = {messages[f"/image_{i}"][k][1].header.stamp.sec * 10**9 + messages[f"/image_{i}"][k][1].header.stamp.nanosec
                  for i in range(cameras)}
        assert len(stamps) == 1  # one rig frame, one stamp
        for i, (camera, frame) in enumerate(zip(rig.cameras, row)):
            image = messages[f"/image_{i}"][k][1]
            assert image.header.frame_id == f"{camera.name}_optical"
            np.testing.assert_array_equal(m.image_msg_to_rgb(image), read_image(frame.image_path))
            # the base's ground truth and the mounting give each camera's own ground truth
            pose = messages["/ground_truth/camera_pose"][k][1].pose
            map_from_base = m.msg_to_pose(pose.position, pose.orientation)
            map_from_camera = map_from_base @ camera.base_from_camera
            np.testing.assert_allclose(map_from_camera.inverse().t, frame.cam_from_world.t, atol=1e-6)
            np.testing.assert_allclose(map_from_camera.inverse().R, frame.cam_from_world.R, atol=1e-6)


def test_rig_export_of_a_split_without_rig_frames_names_the_fix(small_street_rig_scene, scene, tmp_path):
    with pytest.raises(DatasetError, match="has no rig frames of split 'query'.*query_day_rig"):
        export_bag(small_street_rig_scene, tmp_path / "a", split="query", rig=True)
    with pytest.raises(DatasetError, match="rig.json"):
        export_bag(scene, tmp_path / "b", split="query", rig=True)
