"""Property tests for pose utilities, metrics and retrieval math."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from scenesqueezer_core.evaluate import compute_metrics
from scenesqueezer_core.geometry import (fundamental_from_poses, occluded_share, pose_error, sampson_error,
                                         symmetric_epipolar_error)
from scenesqueezer_core.types import Camera, Pose

finite = st.floats(-50, 50, allow_nan=False, allow_infinity=False)
vec3 = st.tuples(finite, finite, finite).map(np.array)
quat = st.tuples(*[st.floats(-1, 1) for _ in range(4)]).filter(lambda q: np.linalg.norm(q) > 0.1)


def make_pose(q, t):
    return Pose(Rotation.from_quat(np.array(q) / np.linalg.norm(q)).as_matrix(), t)


@settings(max_examples=50)
@given(quat, vec3, quat, vec3)
def test_compose_inverse(q1, t1, q2, t2):
    a, b = make_pose(q1, t1), make_pose(q2, t2)
    assert np.allclose((a @ a.inverse()).matrix, np.eye(4), atol=1e-9)
    assert np.allclose((a @ b).matrix, a.matrix @ b.matrix, atol=1e-9)
    pts = np.array([[1.0, 2, 3], [-4, 5, 0.5]])
    assert np.allclose(a.inverse().transform(a.transform(pts)), pts, atol=1e-8)


@settings(max_examples=50)
@given(quat, vec3)
def test_quaternion_roundtrip_and_center(q, t):
    a = make_pose(q, t)
    b = Pose.from_qvec_tvec(a.qvec_wxyz, a.t)
    assert np.allclose(a.R, b.R, atol=1e-9)
    assert np.allclose(a.transform(a.center[None])[0], 0, atol=1e-8)  # the centre maps to the origin


@settings(max_examples=50)
@given(quat, vec3, st.floats(0.0, 179.0), vec3)
def test_pose_error_recovers_perturbation(q, t, angle_deg, shift):
    truth = make_pose(q, t)
    axis = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    dR = Rotation.from_rotvec(np.radians(angle_deg) * axis).as_matrix()
    # move the camera centre by `shift`, rotate the camera by angle_deg about its own frame
    center = truth.center + shift
    R = dR @ truth.R
    est = Pose(R, -R @ center)
    dt, dr = pose_error(est, truth)
    assert np.isclose(dt, np.linalg.norm(shift), atol=1e-6)
    assert np.isclose(dr, angle_deg, atol=1e-4)


@settings(max_examples=50)
@given(quat, vec3)
def test_epipolar_errors_vanish_for_true_correspondences(q, t):
    cam = Camera.pinhole(500, 500, 320, 240, 640, 480)
    p1 = Pose.identity()
    p2 = make_pose(q, np.clip(t, -2, 2))
    if np.linalg.norm(p2.center - p1.center) < 1e-2:
        return
    rng = np.random.default_rng(0)
    pts = rng.uniform([-2, -2, 4], [2, 2, 8], size=(30, 3))
    c2 = p2.transform(pts)
    ok = c2[:, 2] > 0.1
    if ok.sum() < 3:
        return
    x1 = cam.project(p1.transform(pts[ok]))
    x2 = cam.project(c2[ok])
    F = fundamental_from_poses(cam, p1, cam, p2)
    assert np.all(sampson_error(F, x1, x2) < 1e-5)
    assert np.all(symmetric_epipolar_error(F, x1, x2) < 1e-5)
    # a 5-pixel offset along both image axes cannot stay on every epipolar line
    moved = symmetric_epipolar_error(F, x1, x2 + [5.0, 0.0]) + symmetric_epipolar_error(F, x1, x2 + [0.0, 5.0])
    assert moved.min() > 1e-3


def _wall(rng, count, depth, half_width=4.0):
    """(count, 3) points on the plane z = depth in front of an identity camera."""
    xy = rng.uniform(-half_width, half_width, size=(count, 2))
    return np.column_stack([xy, np.full(count, depth)])


@settings(max_examples=30)
@given(quat, vec3, st.floats(2.0, 30.0), st.integers(0, 2**31 - 1))
def test_occluded_share_free_space_and_a_screen_in_front(q, t, depth, seed):
    """Any camera pose: a wall seen through free space is never hidden, not by points on the wall itself
    nor by points behind it; a dense screen covering the left half of the view, at half the
    wall's depth, hides the wall's left half and nothing else."""
    cam = Camera.pinhole(500, 500, 320, 240, 640, 480)
    pose = make_pose(q, t)
    rng = np.random.default_rng(seed)
    to_world = pose.inverse()
    wall = to_world.transform(_wall(rng, 300, depth))
    same_wall = to_world.transform(_wall(rng, 2000, depth))
    behind = to_world.transform(_wall(rng, 2000, 1.5 * depth))
    assert occluded_share(cam, pose, wall, np.concatenate([same_wall, behind]), radius_px=8.0) == 0.0

    # a screen at depth/2 covering the left half of the image (x < 0 in the camera), 20 points per 8 px disc
    grid = np.stack(np.meshgrid(np.arange(0, 320, 2.0), np.arange(0, 480, 2.0)), -1).reshape(-1, 2)
    screen_cam = np.column_stack([(grid - [320, 240]) / 500 * (depth / 2), np.full(len(grid), depth / 2)])
    screen = to_world.transform(screen_cam)
    share = occluded_share(cam, pose, wall, screen, radius_px=8.0)
    wall_px = cam.project(pose.transform(wall))
    inside = (wall_px[:, 0] >= 0) & (wall_px[:, 0] < 640) & (wall_px[:, 1] >= 0) & (wall_px[:, 1] < 480)
    left = inside & (wall_px[:, 0] < 320 - 8)
    right = ~inside | (wall_px[:, 0] > 320 + 8)
    assert np.mean(left) - 1e-9 <= share <= 1.0 - np.mean(right) + 1e-9


def test_occluded_share_edges():
    cam = Camera.pinhole(500, 500, 320, 240, 640, 480)
    pose = Pose.identity()
    rng = np.random.default_rng(0)
    wall = _wall(rng, 50, 10.0, half_width=3.0)
    assert occluded_share(cam, pose, np.zeros((0, 3)), wall, 8.0) == 0.0  # no points: nothing hidden
    assert occluded_share(cam, pose, wall, np.zeros((0, 3)), 8.0) == 0.0  # no occluders
    # occluders behind the camera or outside the image hide nothing
    assert occluded_share(cam, pose, wall, wall * [1, 1, -0.5], 8.0) == 0.0
    assert occluded_share(cam, pose, wall, wall * 0.5 + [100, 0, 0], 8.0) == 0.0
    # the same screen at 0.8 of the depth is within the triangulation margin (depth_ratio 0.7) ...
    assert occluded_share(cam, pose, wall, wall * 0.8, 8.0) == 0.0
    # ... at 0.6 it hides every point, and a stricter ratio tolerates it again
    assert occluded_share(cam, pose, wall, wall * 0.6, 8.0) == 1.0
    assert occluded_share(cam, pose, wall, wall * 0.6, 8.0, depth_ratio=0.5) == 0.0


def test_metrics_count_failures_as_misses():
    truth = {f"q{i}": Pose.identity() for i in range(4)}
    est = {"q0": Pose.identity(), "q1": Pose(np.eye(3), [0.3, 0, 0]), "q2": None, "q3": Pose(np.eye(3), [0, 0, 10])}
    m = compute_metrics(est, truth, map_bytes=123, seconds=[0.1, 0.2, 0.3, 0.4])
    assert m["num_queries"] == 4 and m["num_localized"] == 3
    assert m["recall"]["0.25m_2deg"] == 0.25
    assert m["recall"]["0.5m_5deg"] == 0.5
    assert m["recall"]["5m_10deg"] == 0.5
    assert np.isclose(m["median_translation_m"], 0.3)
    assert m["map_bytes"] == 123 and np.isclose(m["median_seconds_per_query"], 0.25)
