"""Pose, covariance, CameraInfo and point-cloud conversions between the core and ROS messages."""

import numpy as np
import pycolmap
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo

from scenesqueezer_core.errors import CameraModelError
from scenesqueezer_core.types import Camera, Pose
from scenesqueezer_ros.conversions import (
    cam_from_world_to_pose_msg,
    camera_info_to_camera,
    camera_to_camera_info,
    cloud_to_points,
    covariance_to_ros,
    make_transform_stamped,
    points_to_cloud,
    pose_msg_to_cam_from_world,
    transform_to_pose,
)

poses = st.builds(
    lambda rv, t: Pose(Rotation.from_rotvec(rv).as_matrix(), t),
    st.lists(st.floats(-3, 3), min_size=3, max_size=3).map(np.array),
    st.lists(st.floats(-100, 100), min_size=3, max_size=3).map(np.array),
)


@settings(max_examples=50, deadline=None)
@given(cam_from_world=poses)
def test_pose_msg_is_the_camera_in_the_map(cam_from_world):
    msg = cam_from_world_to_pose_msg(cam_from_world)
    centre = np.array([msg.position.x, msg.position.y, msg.position.z])
    np.testing.assert_allclose(centre, cam_from_world.center, atol=1e-9)
    # The optical axis (camera z) expressed in the map frame is R^T e_z.
    q = msg.orientation
    np.testing.assert_allclose(Rotation.from_quat([q.x, q.y, q.z, q.w]).apply([0, 0, 1]),
                               cam_from_world.R.T @ [0, 0, 1], atol=1e-9)
    back = pose_msg_to_cam_from_world(msg)
    np.testing.assert_allclose(back.matrix, cam_from_world.matrix, atol=1e-9)
    tf = make_transform_stamped(cam_from_world.inverse(), "map", "camera", msg_stamp())
    np.testing.assert_allclose(transform_to_pose(tf.transform).matrix, cam_from_world.inverse().matrix,
                               atol=1e-9)


def msg_stamp():
    from builtin_interfaces.msg import Time

    return Time(sec=1, nanosec=2)


def test_covariance_matches_monte_carlo_of_pycolmap():
    """Propagated covariance of the camera pose in the map == spread of pycolmap's own estimates."""
    rng = np.random.default_rng(0)
    R = Rotation.from_euler("xyz", [70, 20, -40], degrees=True).as_matrix()
    t = np.array([3.0, -5.0, 20.0])
    truth = Pose(R, t)
    camera = pycolmap.Camera(model="PINHOLE", width=640, height=480, params=[500, 500, 320, 240])
    points_cam = np.c_[rng.uniform(-4, 4, 200), rng.uniform(-3, 3, 200), rng.uniform(5, 15, 200)]
    points_world = (points_cam - t) @ R
    pixels = points_cam[:, :2] / points_cam[:, 2:] * 500 + [320, 240]
    samples, covariances = [], []
    for _ in range(300):
        estimate = pycolmap.estimate_and_refine_absolute_pose(
            pixels + rng.normal(0, 1.0, pixels.shape), points_world, camera, return_covariance=True)
        pose = Pose.from_rigid3d(estimate["cam_from_world"])
        covariances.append(covariance_to_ros(pose, estimate["covariance"]).reshape(6, 6))
        world_from_cam = pose.inverse()
        d_centre = world_from_cam.t - truth.center
        d_phi = Rotation.from_matrix(world_from_cam.R @ truth.R).as_rotvec()  # left, map frame
        samples.append(np.r_[d_centre, d_phi])
    empirical = np.cov(np.array(samples).T)
    reported = np.mean(covariances, axis=0)

    def mismatch(candidate):
        # pycolmap's robust loss inflates its covariance by one constant factor; position and
        # rotation blocks differ by orders of magnitude, so compare in the empirical std units.
        ratios = np.diag(candidate) / np.diag(empirical)
        std = np.sqrt(np.diag(empirical))
        normalized = candidate / np.median(ratios) / np.outer(std, std)
        return np.abs(normalized - empirical / np.outer(std, std)).max(), np.median(ratios)

    error, scale = mismatch(reported)
    assert 0.5 < scale < 3.0
    assert error < 0.3, error
    # Without the half-angle factor the rotation block would be 4x too small: clearly detected.
    wrong = reported.copy()
    wrong[3:, 3:] /= 4
    wrong[:3, 3:] /= 2
    wrong[3:, :3] /= 2
    assert mismatch(wrong)[0] > 0.5


def test_camera_info_round_trip_and_pixel_convention():
    camera = Camera("OPENCV", 640, 480, np.array([500.0, 510.0, 320.5, 240.5, 0.1, -0.02, 0.001, 0.0]))
    info = camera_to_camera_info(camera)
    assert info.k[2] == pytest.approx(320.0)  # ROS pixel centres are at integer coordinates
    back = camera_info_to_camera(info)
    assert back.model == "OPENCV"
    np.testing.assert_allclose(back.params, camera.params)
    pinhole = camera_info_to_camera(camera_to_camera_info(Camera.pinhole(400, 400, 100.5, 80.5, 200, 160)))
    assert pinhole.model == "PINHOLE"


def test_camera_info_binning_and_unsupported_models():
    info = camera_to_camera_info(Camera.pinhole(400, 400, 320, 240, 640, 480))
    info.binning_x = info.binning_y = 2
    binned = camera_info_to_camera(info)
    assert (binned.width, binned.height) == (320, 240)
    np.testing.assert_allclose(binned.params, [200, 200, 160, 120])
    info = camera_to_camera_info(Camera.pinhole(400, 400, 320, 240, 640, 480))
    info.distortion_model, info.d = "equidistant", [0.1, 0.0, 0.0, 0.0]
    with pytest.raises(CameraModelError, match="equidistant"):
        camera_info_to_camera(info)
    info = camera_to_camera_info(Camera.pinhole(400, 400, 320, 240, 640, 480))
    info.d = [0.1, 0.0, 0.0, 0.0, 0.05]
    with pytest.raises(CameraModelError, match="higher-order"):
        camera_info_to_camera(info)
    with pytest.raises(CameraModelError, match="no calibration"):
        camera_info_to_camera(CameraInfo(width=10, height=10))


def test_point_cloud_round_trip():
    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(100, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (100, 3), dtype=np.uint8)
    cloud = points_to_cloud(xyz, rgb, "map", msg_stamp())
    assert cloud.width == 100 and cloud.header.frame_id == "map" and len(cloud.data) == 1600
    xyz_back, rgb_back = cloud_to_points(cloud)
    np.testing.assert_array_equal(xyz_back, xyz)
    np.testing.assert_array_equal(rgb_back, rgb)
