"""Bad input against the real localizer node (a subprocess, real DDS): every broken, inconsistent,
blank or foreign frame ends in a published failure result with a reason, never a pose and never a
crash. One node serves all raw-image cases and a second all compressed ones, in file order.
See docs/RELIABILITY.md for the table of cases."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from conftest import SHARED_DATA
from scenesqueezer_ros.testing import (create_probe_node, destroy_probe_node, isolate_ros_environment, start_node,
                                       stop_node)

DOMAIN_ID = 71
RAW_NODE = "rel_raw"
COMPRESSED_NODE = "rel_compressed"
WIDTH, HEIGHT = 640, 480
RESULT_TIMEOUT_S = 120.0


class NodeProbe:
    """Test-side rclpy node that feeds one localizer subprocess and records what it publishes."""

    def __init__(self, node, node_name: str, image_topic: str, info_topic: str, compressed: bool = False):
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseStamped
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        from scenesqueezer.msg import LocalizationResult

        self.node, self.node_name = node, node_name
        self.results: dict[tuple[int, int], object] = {}
        self.poses: dict[tuple[int, int], object] = {}
        self.diagnostics: list = []
        self.result_arrival: dict[tuple[int, int], float] = {}
        node.create_subscription(LocalizationResult, f"/{node_name}/result", self._on_result, 100)
        node.create_subscription(PoseStamped, f"/{node_name}/pose",
                                 lambda m: self.poses.__setitem__(_key(m.header.stamp), m), 100)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = node.create_publisher(CompressedImage if compressed else Image, image_topic, reliable)
        self.info_pub = node.create_publisher(CameraInfo, info_topic, reliable)

    def _on_result(self, msg) -> None:
        key = _key(msg.header.stamp)
        self.results[key] = msg
        self.result_arrival[key] = time.monotonic()

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith(f"{self.node_name}:"):
                self.diagnostics.append(status)

    def spin(self, condition, timeout: float) -> bool:
        import rclpy

        deadline = time.monotonic() + timeout
        executor = rclpy.executors.SingleThreadedExecutor(context=self.node.context)
        executor.add_node(self.node)
        try:
            while time.monotonic() < deadline and not condition():
                executor.spin_once(timeout_sec=0.05)
        finally:
            executor.remove_node(self.node)
        return condition()

    def wait_connected(self, timeout: float = 30.0) -> bool:
        return self.spin(lambda: self.image_pub.get_subscription_count() > 0
                         and self.info_pub.get_subscription_count() > 0, timeout)

    def latest_diagnostic(self, timeout: float = 5.0):
        self.diagnostics.clear()
        self.spin(lambda: bool(self.diagnostics), timeout)
        return self.diagnostics[-1] if self.diagnostics else None

    def send(self, image_msg, info_msg, stamp_sec: int, timeout: float = RESULT_TIMEOUT_S):
        """Publish CameraInfo (if any) then the image; return (result, pose or None)."""
        image_msg.header.stamp.sec, image_msg.header.stamp.nanosec = stamp_sec, 0
        image_msg.header.frame_id = "camera_optical"
        if info_msg is not None:
            info_msg.header = image_msg.header
            self.info_pub.publish(info_msg)
            self.spin(lambda: False, 0.3)  # CameraInfo and image travel on separate topics
        self.image_pub.publish(image_msg)
        key = (stamp_sec, 0)
        if not self.spin(lambda: key in self.results, timeout):
            return None, None
        self.spin(lambda: key in self.poses, 0.2)  # a pose would have been sent before its result
        return self.results[key], self.poses.get(key)


def _key(stamp) -> tuple[int, int]:
    return int(stamp.sec), int(stamp.nanosec)


def raw_msg(encoding: str, width: int, height: int, step: int, data: bytes, bigendian: int = 0):
    from sensor_msgs.msg import Image

    msg = Image()
    msg.encoding, msg.width, msg.height, msg.step = encoding, width, height, step
    msg.is_bigendian = bigendian
    msg.data = data
    return msg


def compressed_msg(data: bytes, fmt: str = "jpeg"):
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage()
    msg.format = fmt
    msg.data = data
    return msg


@pytest.fixture(scope="module")
def ros_context(tmp_path_factory):
    isolate_ros_environment(DOMAIN_ID, tmp_path_factory.mktemp("ros_log"))
    node = create_probe_node("reliability_inputs_probe")
    yield node
    destroy_probe_node(node)


class Material:
    """What the cases are made of: the map's camera and a real query image of the mapped scene."""

    def __init__(self, scene):
        from scenesqueezer_core.dataset import load_dataset, read_image

        self.dataset = load_dataset(scene)
        self.query = self.dataset.split("query_day")[0]
        self.camera = self.query.camera
        assert (self.camera.width, self.camera.height) == (WIDTH, HEIGHT)
        self.rgb = read_image(self.query.image_path)

    def info(self, camera=None):
        from scenesqueezer_ros.conversions import camera_to_camera_info

        return camera_to_camera_info(camera or self.camera)


@pytest.fixture(scope="module")
def material(small_street_scene):
    return Material(small_street_scene)


def _start(node_name: str, map_path, root, extra: list[str]):
    log = root / f"{node_name}.log"
    process = start_node(["-r", f"__node:={node_name}", "-p", f"map_path:={map_path}", "-p", "device:=cpu",
                          *extra], log)
    return process, log


@pytest.fixture(scope="module")
def raw_node(ros_context, small_street_map, tmp_path_factory):
    root = tmp_path_factory.mktemp("raw_node")
    process, log = _start(RAW_NODE, small_street_map, root,
                          ["-p", "image_topic:=/rel/image", "-p", "camera_info_topic:=/rel/camera_info"])
    probe = NodeProbe(ros_context, RAW_NODE, "/rel/image", "/rel/camera_info")
    probe.process, probe.log, probe.stamp = process, log, 1000
    assert probe.wait_connected(60.0), log.read_text()
    yield probe
    stop_node(process)


@pytest.fixture(scope="module")
def compressed_node(ros_context, small_street_map, tmp_path_factory):
    root = tmp_path_factory.mktemp("compressed_node")
    process, log = _start(COMPRESSED_NODE, small_street_map, root,
                          ["-p", "image_transport:=compressed", "-p", "image_topic:=/relc/image",
                           "-p", "camera_info_topic:=/relc/camera_info"])
    probe = NodeProbe(ros_context, COMPRESSED_NODE, "/relc/image/compressed", "/relc/camera_info",
                      compressed=True)
    probe.process, probe.log, probe.stamp = process, log, 1000
    assert probe.wait_connected(60.0), log.read_text()
    yield probe
    stop_node(process)


def next_stamp(probe) -> int:
    probe.stamp += 1
    return probe.stamp


def assert_skipped(probe, result, pose, reason_contains: str | None) -> None:
    assert result is not None, f"no result within {RESULT_TIMEOUT_S} s\n" + probe.log.read_text()[-3000:]
    assert not result.success, f"a pose was reported with {result.num_inliers} inliers"
    assert pose is None, "a PoseStamped was published for a failed frame"
    assert result.failure_reason, "a failure without a reason"
    if reason_contains:
        assert reason_contains.lower() in result.failure_reason.lower(), result.failure_reason
    assert probe.process.poll() is None, "the node died\n" + probe.log.read_text()[-3000:]


# --- missing CameraInfo: must run before any CameraInfo is published ------------------------------


def test_missing_camera_info_waits_and_says_so(raw_node, material):
    from diagnostic_msgs.msg import DiagnosticStatus

    from scenesqueezer_ros.image_conversion import rgb_to_image_msg

    status = None
    for _ in range(40):  # the map loads in the background of the first diagnostics
        status = raw_node.latest_diagnostic()
        if status is not None and status.level != DiagnosticStatus.ERROR:
            break
    assert status is not None and status.level == DiagnosticStatus.WARN, status
    assert "waiting for CameraInfo" in status.message
    result, pose = raw_node.send(rgb_to_image_msg(material.rgb, "rgb8"), None, next_stamp(raw_node))
    assert_skipped(raw_node, result, pose, "no CameraInfo received")


# --- raw images: encodings, sizes, steps, buffers; intrinsics; content ---------------------------


def _noise(shape, seed=0, dtype=np.uint8):
    info = np.iinfo(dtype)
    return np.random.default_rng(seed).integers(0, int(info.max) + 1, shape, dtype=dtype)


def _rgb_case(material, rgb, encoding="rgb8"):
    from scenesqueezer_ros.image_conversion import rgb_to_image_msg

    return rgb_to_image_msg(rgb, encoding), material.info()


def _camera_info_with(material, **changes):
    info = material.info()
    k = list(info.k)
    for index, value in changes.pop("k", {}).items():
        k[index] = value
    info.k = k
    for name, value in changes.items():
        setattr(info, name, value)
    return info


RAW_CASES = {
    # encodings
    "encoding_32FC1": (lambda m: (raw_msg("32FC1", WIDTH, HEIGHT, WIDTH * 4, bytes(WIDTH * HEIGHT * 4)), m.info()),
                       "unsupported image encoding"),
    "encoding_16SC1": (lambda m: (raw_msg("16SC1", WIDTH, HEIGHT, WIDTH * 2, bytes(WIDTH * HEIGHT * 2)), m.info()),
                       "unsupported image encoding"),
    "encoding_empty": (lambda m: (raw_msg("", WIDTH, HEIGHT, WIDTH * 3, bytes(WIDTH * HEIGHT * 3)), m.info()),
                       "unsupported image encoding"),
    "encoding_jpeg_as_raw": (lambda m: (raw_msg("jpeg", WIDTH, HEIGHT, WIDTH, bytes(1000)), m.info()),
                             "unsupported image encoding"),
    "encoding_rgb8_with_mono8_buffer": (
        lambda m: (raw_msg("rgb8", WIDTH, HEIGHT, WIDTH * 3, bytes(WIDTH * HEIGHT)), m.info()), "truncated"),
    "yuv422_odd_width": (lambda m: (raw_msg("yuv422", WIDTH - 1, HEIGHT, (WIDTH - 1) * 2,
                                            bytes((WIDTH - 1) * 2 * HEIGHT)), m.info()), "even"),
    # sizes, steps, buffers
    "zero_sized": (lambda m: (raw_msg("rgb8", 0, 0, 0, b""), m.info()), "no pixels"),
    "zero_width": (lambda m: (raw_msg("rgb8", 0, HEIGHT, 0, b""), m.info()), "no pixels"),
    "step_zero": (lambda m: (raw_msg("rgb8", WIDTH, HEIGHT, 0, bytes(WIDTH * HEIGHT * 3)), m.info()), "step"),
    "step_shorter_than_row": (lambda m: (raw_msg("rgb8", WIDTH, HEIGHT, WIDTH * 3 - 1,
                                                 bytes(WIDTH * HEIGHT * 3)), m.info()), "step"),
    "truncated_buffer": (lambda m: (raw_msg("bgr8", WIDTH, HEIGHT, WIDTH * 3,
                                            m.rgb.tobytes()[: WIDTH * 3 * (HEIGHT // 2)]), m.info()), "truncated"),
    "absurd_size_tiny_buffer": (lambda m: (raw_msg("mono8", 100_000, 100_000, 100_000, bytes(64)), m.info()),
                                "truncated"),
    "odd_step_padded_noise": (lambda m: (raw_msg("rgb8", WIDTH, HEIGHT, WIDTH * 3 + 1,
                                                 _noise((HEIGHT, WIDTH * 3 + 1)).tobytes()), m.info()), None),
    "mono16_odd_step_noise": (lambda m: (raw_msg("mono16", WIDTH, HEIGHT, WIDTH * 2 + 3,
                                                 _noise((HEIGHT, WIDTH * 2 + 3)).tobytes()), m.info()), None),
    "bayer16_big_endian_noise": (lambda m: (raw_msg("bayer_rggb16", WIDTH, HEIGHT, WIDTH * 2,
                                                    _noise((HEIGHT, WIDTH), dtype=np.uint16).byteswap().tobytes(),
                                                    bigendian=1), m.info()), None),
    # CameraInfo inconsistent with the image or invalid
    "size_mismatch_camera_info": (lambda m: (_rgb_case(m, m.rgb)[0], m.info(m.camera.scaled(2.0, 2.0))),
                                  "CameraInfo says"),
    "camera_info_zero_size": (lambda m: (_rgb_case(m, m.rgb)[0], _camera_info_with(m, width=0, height=0)),
                              "camera size must be positive"),
    "intrinsics_nan_fx": (lambda m: (_rgb_case(m, m.rgb)[0], _camera_info_with(m, k={0: float("nan")})),
                          "finite"),
    "intrinsics_inf_cx": (lambda m: (_rgb_case(m, m.rgb)[0], _camera_info_with(m, k={2: float("inf")})),
                          "finite"),
    "intrinsics_all_zero": (lambda m: (_rgb_case(m, m.rgb)[0], _camera_info_with(m, k={i: 0.0 for i in range(9)})),
                            "no calibration"),
    "intrinsics_negative_fy": (lambda m: (_rgb_case(m, m.rgb)[0], _camera_info_with(m, k={4: -500.0})),
                               "no calibration"),
    "distortion_nan": (lambda m: (_rgb_case(m, m.rgb)[0], _camera_info_with(m, d=[float("nan"), 0.0, 0.0, 0.0, 0.0])),
                       "finite"),
    "distortion_model_unsupported": (lambda m: (_rgb_case(m, m.rgb)[0],
                                                _camera_info_with(m, distortion_model="equidistant",
                                                                  d=[0.1, 0.01, 0.0, 0.0])), "unsupported"),
    # content: nothing to localize against
    "all_black": (lambda m: _rgb_case(m, np.zeros((HEIGHT, WIDTH, 3), np.uint8)), None),
    "all_white": (lambda m: _rgb_case(m, np.full((HEIGHT, WIDTH, 3), 255, np.uint8), "bgr8"), None),
    "uniform_noise": (lambda m: _rgb_case(m, _noise((HEIGHT, WIDTH, 3), seed=3)), None),
    "noise_mono8": (lambda m: _rgb_case(m, np.repeat(_noise((HEIGHT, WIDTH, 1), seed=4), 3, axis=2), "mono8"), None),
}


@pytest.mark.parametrize("case", list(RAW_CASES))
def test_bad_raw_input_is_skipped_with_a_reason(raw_node, material, case):
    build, reason = RAW_CASES[case]
    image, info = build(material)
    result, pose = raw_node.send(image, info, next_stamp(raw_node))
    assert_skipped(raw_node, result, pose, reason)


def test_stamp_going_backwards_skips_the_frame_then_recovers(raw_node, material):
    """A good frame with an older stamp is skipped; the next frames localize again."""
    image, info = _rgb_case(material, material.rgb)
    good = next_stamp(raw_node)
    result, pose = raw_node.send(image, info, good)
    assert result is not None and result.success and pose is not None, result and result.failure_reason
    image, info = _rgb_case(material, material.rgb)
    result, pose = raw_node.send(image, info, good - 500)
    assert_skipped(raw_node, result, pose, "stamp went backwards")
    image, info = _rgb_case(material, material.rgb)
    result, pose = raw_node.send(image, info, next_stamp(raw_node))
    assert result is not None and result.success and pose is not None


def test_huge_image_is_downscaled_with_its_intrinsics(raw_node, material):
    """3x the camera's size (1920x1440, 8 MB): downscaled to max_image_size with the intrinsics,
    it localizes as accurately as the original (or fails with a reason, never a wrong pose)."""
    from scenesqueezer_ros.conversions import pose_msg_to_cam_from_world

    huge = cv2.resize(material.rgb, (WIDTH * 3, HEIGHT * 3), interpolation=cv2.INTER_CUBIC)
    image, _ = _rgb_case(material, huge)
    info = material.info(material.camera.scaled(3.0, 3.0))
    result, pose = raw_node.send(image, info, next_stamp(raw_node))
    assert result is not None and raw_node.process.poll() is None
    assert result.success, result.failure_reason
    estimate, truth = pose_msg_to_cam_from_world(pose.pose), material.query.cam_from_world
    cos = (np.trace(estimate.R @ truth.R.T) - 1) / 2
    assert np.linalg.norm(estimate.center - truth.center) < 0.25
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))) < 2.0


# --- foreign scenes: photographs and other synthetic worlds, against the street map ---------------


def _strecha(name: str, count: int):
    from scenesqueezer_core.dataset import load_dataset, read_image

    dataset = load_dataset(SHARED_DATA / name)
    frames = (dataset.split("query") + dataset.split("mapping"))[:count]
    return [(read_image(f.image_path), f.camera) for f in frames]


def _synthetic(preset: str, seed: int, count: int):
    from scenesqueezer_core.synthetic import render_query_images

    return render_query_images(preset, seed, "query_day", count, WIDTH, HEIGHT)


FOREIGN_SOURCES = {
    "castle": lambda: _strecha("strecha_castle_p30", 4),
    "fountain": lambda: _strecha("strecha_fountain_p11", 3),
    "street_seed7": lambda: _synthetic("street", 7, 3),
    "courtyard_seed3": lambda: _synthetic("courtyard", 3, 3),
}
FOREIGN_CASES = [(source, index) for source, make in
                 (("castle", 4), ("fountain", 3), ("street_seed7", 3), ("courtyard_seed3", 3))
                 for index in range(make)]


@pytest.fixture(scope="module")
def foreign_images():
    cache: dict[str, list] = {}

    def get(source: str, index: int):
        if source not in cache:
            cache[source] = FOREIGN_SOURCES[source]()
        return cache[source][index]

    return get


# street_seed7_0 was a false positive until the occlusion check: the seed-7 street's facades repeat
# those of the seed-0 map, four candidates agreed on a pose 3 m below the road (130 inliers, the
# strongest contradicting candidate 13), and 35 % of its inliers lay behind the map's road points.
FOREIGN_PARAMS = [pytest.param(source, index, id=f"{source}_{index}") for source, index in FOREIGN_CASES]


@pytest.mark.parametrize("source,index", FOREIGN_PARAMS)
def test_foreign_image_gets_no_pose(raw_node, foreign_images, source, index):
    from scenesqueezer_ros.conversions import camera_to_camera_info
    from scenesqueezer_ros.image_conversion import rgb_to_image_msg

    rgb, camera = foreign_images(source, index)
    result, pose = raw_node.send(rgb_to_image_msg(rgb, "bgr8"), camera_to_camera_info(camera), next_stamp(raw_node))
    assert_skipped(raw_node, result, pose, None)


def test_node_survived_and_counted_every_raw_frame(raw_node):
    from diagnostic_msgs.msg import DiagnosticStatus

    assert raw_node.process.poll() is None
    status = raw_node.latest_diagnostic()
    values = {kv.key: kv.value for kv in status.values}
    assert int(values["errors"]) == 0, "a frame hit the worker's catch-all: " + raw_node.log.read_text()[-3000:]
    assert int(values["frames_received"]) == int(values["frames_processed"]) + int(values["frames_dropped"])
    assert status.level in (DiagnosticStatus.OK, DiagnosticStatus.WARN)
    print(f"raw node: {values['frames_processed']} frames, {values['localized']} localized, "
          f"{values['failed']} failed, 0 crashes")


# --- compressed transport -------------------------------------------------------------------------


def _jpeg(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def _jpeg_bomb(rgb: np.ndarray) -> bytes:
    """A real JPEG whose frame header claims 30000x30000 pixels (OpenCV alone would allocate 2.7 GB)."""
    data = bytearray(_jpeg(rgb))
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = (30000).to_bytes(2, "big") + (30000).to_bytes(2, "big")
    return bytes(data)


COMPRESSED_CASES = {
    "jpeg_truncated": (lambda m: compressed_msg(_jpeg(m.rgb)[:20_000]), None),
    "jpeg_last_bytes_missing": (lambda m: compressed_msg(_jpeg(m.rgb)[:-64]), None),
    "garbage_bytes": (lambda m: compressed_msg(_noise((5000,)).tobytes()), "header"),
    "empty_data": (lambda m: compressed_msg(b""), "no data"),
    "jpeg_decompression_bomb": (lambda m: compressed_msg(_jpeg_bomb(m.rgb)), "decompression bomb"),
    "png_truncated": (lambda m: compressed_msg(cv2.imencode(".png", m.rgb)[1].tobytes()[:-5000], "png"), None),
    "compressed_depth": (lambda m: compressed_msg(b"\x00" * 12 + _jpeg(m.rgb), "16UC1; compressedDepth png"),
                         "depth image"),
    "jpeg_size_mismatch": (lambda m: compressed_msg(_jpeg(cv2.resize(m.rgb, (320, 240)))), "CameraInfo says"),
    "jpeg_all_black": (lambda m: compressed_msg(_jpeg(np.zeros((HEIGHT, WIDTH, 3), np.uint8))), None),
}


def test_compressed_missing_camera_info(compressed_node, material):
    result, pose = compressed_node.send(compressed_msg(_jpeg(material.rgb)), None, next_stamp(compressed_node))
    assert_skipped(compressed_node, result, pose, "no CameraInfo received")


@pytest.mark.parametrize("case", list(COMPRESSED_CASES))
def test_bad_compressed_input_is_skipped_with_a_reason(compressed_node, material, case):
    build, reason = COMPRESSED_CASES[case]
    result, pose = compressed_node.send(build(material), material.info(), next_stamp(compressed_node))
    assert_skipped(compressed_node, result, pose, reason)


def test_compressed_good_frame_still_localizes(compressed_node, material):
    result, pose = compressed_node.send(compressed_msg(_jpeg(material.rgb)), material.info(),
                                        next_stamp(compressed_node))
    assert result is not None and result.success and pose is not None, result and result.failure_reason
    status = compressed_node.latest_diagnostic()
    values = {kv.key: kv.value for kv in status.values}
    assert int(values["errors"]) == 0 and compressed_node.process.poll() is None
