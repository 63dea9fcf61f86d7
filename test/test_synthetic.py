"""Synthetic scene generator: exact geometry, z-buffer, feature geometry, determinism, atomic output."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scenesqueezer_core.dataset import load_dataset
from scenesqueezer_core.errors import ConfigError
from scenesqueezer_core.synthetic import PRESETS, Plane, World, build_world, default_camera, generate_scene, render
from scenesqueezer_core.synthetic.render import _clip_near
from scenesqueezer_core.synthetic.trajectory import StraightPath, pose_from_view
from scenesqueezer_core.types import Pose

cv2.setNumThreads(1)
W, H = 320, 240
NUM_FRAMES = 24


@pytest.fixture(scope="module")
def street(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "street"
    generate_scene(out, preset="street", seed=3, num_frames=NUM_FRAMES, width=W, height=H, num_workers=1,
                   depth_dtype="float32")
    return out


def _bilinear(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Sample (H, W) ``image`` at COLMAP-convention points (N, 2) (pixel centres at +0.5)."""
    x = points[:, 0] - 0.5
    y = points[:, 1] - 0.5
    x0 = np.floor(x).astype(int)
    y0 = np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    return ((1 - fx) * (1 - fy) * image[y0, x0] + fx * (1 - fy) * image[y0, x0 + 1]
            + (1 - fx) * fy * image[y0 + 1, x0] + fx * fy * image[y0 + 1, x0 + 1])


def _inside(points: np.ndarray, width: int, height: int, margin: float = 1.0) -> np.ndarray:
    return ((points[:, 0] >= margin) & (points[:, 0] <= width - margin)
            & (points[:, 1] >= margin) & (points[:, 1] <= height - margin))


def _tiny_world(planes: list[Plane]) -> World:
    return World("custom", 0, planes, StraightPath((0.0, 0.0, 1.6), 1.0, 1.0))


def _wall(name: str, x: float, y0: float, y1: float, z_top: float, z_bottom: float, ppm: float = 16.0) -> Plane:
    """A wall in the plane x = const facing -x (seen from a camera at smaller x), spanning y0 > y1."""
    return Plane(name, "side", (x, y0, z_top), (0.0, -1.0, 0.0), (0.0, 0.0, -1.0), y0 - y1, z_top - z_bottom, ppm, 7)


# ------------------------------------------------------------------------------------- dataset
def test_dataset_layout_and_splits(street):
    dataset = load_dataset(street)
    splits = dataset.splits
    num_queries = max(3, round(0.2 * NUM_FRAMES))
    assert len(splits["mapping"]) == NUM_FRAMES
    assert len(splits["query_day"]) == len(splits["query_night"]) == num_queries
    assert splits["query"] == splits["query_day"] + splits["query_night"]
    assert not set(splits["mapping"]) & set(splits["query"])
    assert set(dataset.frames) == set(splits["mapping"]) | set(splits["query"])
    for frame in dataset.frames.values():
        assert frame.camera.model == "PINHOLE" and (frame.camera.width, frame.camera.height) == (W, H)
        assert cv2.imread(str(frame.image_path)).shape == (H, W, 3)
        depth = np.load(street / "depth" / (frame.name.rsplit(".", 1)[0] + ".npy"))
        assert depth.shape == (H, W) and depth.dtype == np.float32
        assert np.all((depth > 0) | np.isinf(depth))
    scene = json.loads((street / "scene.json").read_text())
    assert scene["preset"] == "street" and scene["seed"] == 3 and len(scene["planes"]) > 20
    # Queries are not copies of mapping poses: they sit 0.5-1.5 m to the side of the mapping path.
    centers = np.array([f.cam_from_world.center for f in dataset.split("mapping")])
    for frame in dataset.split("query"):
        lateral = np.min(np.abs(centers[:, 1] - frame.cam_from_world.center[1]))
        assert lateral > 0.2


def test_night_queries_are_darker_than_mapping(street):
    dataset = load_dataset(street)
    mapping = np.mean([cv2.imread(str(f.image_path)).mean() for f in dataset.split("mapping")[:5]])
    night = np.mean([cv2.imread(str(f.image_path)).mean() for f in dataset.split("query_night")])
    assert night < 0.5 * mapping


# ------------------------------------------------------------------------------------- geometry
def test_depth_at_projected_facade_points_is_exact(street):
    """Project points sampled on facades; where visible, the depth map gives their depth."""
    scene = json.loads((street / "scene.json").read_text())
    dataset = load_dataset(street)
    rng = np.random.default_rng(0)
    planes = [p for p in scene["planes"] if p["kind"] == "facade"]
    points, normals, offsets = [], [], []
    for p in planes:
        origin, u, v = (np.array(p[k]) for k in ("origin", "u", "v"))
        s = rng.uniform(0, p["width"], 200)
        t = rng.uniform(0, p["height"], 200)
        points.append(origin + s[:, None] * u + t[:, None] * v)
        normal = np.cross(u, v)
        normals.append(np.repeat(normal[None], 200, axis=0))
        offsets.append(np.full(200, normal @ origin))
    points, normals, offsets = np.concatenate(points), np.concatenate(normals), np.concatenate(offsets)
    checked = 0
    for frame in dataset.split("mapping")[::4]:
        pose, camera = frame.cam_from_world, frame.camera
        depth = np.load(street / "depth" / (frame.name[:-4] + ".npy"))
        cam = pose.transform(points)
        front = cam[:, 2] > 0.5
        pixels = camera.project(cam[front])
        ok = _inside(pixels, W, H, 1.5)
        pixels, z, n, d = pixels[ok], cam[front][ok, 2], normals[front][ok], offsets[front][ok]
        # Visible: the four depth samples around the point back-project onto the point's plane.
        corners = np.floor(pixels - 0.5)[:, None, :] + np.array([[0, 0], [1, 0], [0, 1], [1, 1]]) + 0.5
        corner_depth = depth[corners[..., 1].astype(int), corners[..., 0].astype(int)]
        rays = np.concatenate([(corners - camera.K[:2, 2]) / np.diag(camera.K)[:2], np.ones(corners.shape[:2] + (1,))], -1)
        with np.errstate(invalid="ignore"):  # sky corners (inf depth) are rejected just below
            world = (rays * corner_depth[..., None] - pose.t) @ pose.R  # (N, 4, 3) cam -> world
        on_plane = np.all(np.abs(np.einsum("nck,nk->nc", world, n) - d[:, None]) < 1e-3, axis=1)
        on_plane &= np.all(np.isfinite(corner_depth), axis=1)
        # 1/z is affine in the pixel coordinates on a plane, so bilinear 1/z is exact.
        inverse = _bilinear(1.0 / depth, pixels[on_plane])
        np.testing.assert_allclose(1.0 / inverse, z[on_plane], rtol=2e-5)
        checked += int(on_plane.sum())
    assert checked > 500


def test_depth_reprojects_consistently_between_frames(street):
    """Warp frame A's pixels into frame B with depth + poses: B's depth agrees where visible."""
    dataset = load_dataset(street)
    for a_name, b_name in (("map_000004.jpg", "map_000006.jpg"), ("map_000010.jpg", "day_000001.jpg")):
        a, b = dataset.frames[a_name], dataset.frames[b_name]
        depth_a = np.load(street / "depth" / (a_name[:-4] + ".npy"))
        depth_b = np.load(street / "depth" / (b_name[:-4] + ".npy"))
        jj, ii = np.nonzero(np.isfinite(depth_a))
        pixels = np.stack([ii + 0.5, jj + 0.5], 1)
        rays = np.concatenate([(pixels - a.camera.K[:2, 2]) / np.diag(a.camera.K)[:2], np.ones((len(pixels), 1))], 1)
        world = a.cam_from_world.inverse().transform(rays * depth_a[jj, ii, None])
        cam_b = b.cam_from_world.transform(world)
        front = cam_b[:, 2] > 0.1
        projected = b.camera.project(cam_b[front])
        ok = _inside(projected, W, H, 1.5)
        predicted = cam_b[front][ok, 2]
        with np.errstate(divide="ignore"):
            looked_up = 1.0 / _bilinear(1.0 / depth_b, projected[ok])
        relative = np.abs(looked_up - predicted) / predicted
        agree = relative < 1e-4
        # Occlusions and depth edges disagree; everything else matches to float precision.
        assert agree.mean() > 0.6, (a_name, b_name, agree.mean())
        assert agree.sum() > 5000
        assert np.median(relative) < 1e-5


def _plane_hits(plane: Plane, pose: Pose, camera) -> tuple[np.ndarray, np.ndarray]:
    """Analytic per-pixel depth of ``plane`` (inf where missed) and whether it faces the camera."""
    K = camera.K
    xs = (np.arange(camera.width) + 0.5 - K[0, 2]) / K[0, 0]
    ys = (np.arange(camera.height) + 0.5 - K[1, 2]) / K[1, 1]
    rays = np.stack(np.broadcast_arrays(xs[None, :], ys[:, None], np.ones((1, 1))), -1)  # (H, W, 3)
    origin = pose.transform(np.asarray(plane.origin)[None])[0]
    u, v = pose.R @ np.asarray(plane.u), pose.R @ np.asarray(plane.v)
    n = np.cross(u, v)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (n @ origin) / (rays @ n)
        points = rays * z[..., None] - origin
        s, t = points @ u, points @ v
    hit = (z > 0.05) & (s >= 0) & (s <= plane.width) & (t >= 0) & (t <= plane.height)
    return np.where(hit, z, np.inf), bool(n @ origin > 0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    yaw=st.floats(-math.pi, math.pi), pitch=st.floats(-1.2, 1.2), roll=st.floats(-0.5, 0.5),
    cx=st.floats(-6, 6), cy=st.floats(-6, 6), cz=st.floats(0.2, 6),
    normal_yaw=st.floats(-math.pi, math.pi), tilt=st.floats(-1.4, 1.4),
    width=st.floats(0.5, 15), height=st.floats(0.5, 15),
)
def test_render_matches_analytic_ray_plane_intersection(yaw, pitch, roll, cx, cy, cz, normal_yaw, tilt, width, height):
    """Any plane, any pose (incl. planes crossing the camera plane): depth is the exact intersection."""
    u = np.array([math.cos(normal_yaw), math.sin(normal_yaw), 0.0])
    v = np.cross(u, [0.0, 0.0, 1.0]) * math.sin(tilt) - np.array([0.0, 0.0, 1.0]) * math.cos(tilt)
    v /= np.linalg.norm(v)
    plane = Plane("p", "side", (-width / 2, 0.0, 3.0), tuple(u), tuple(v), width, height, 4.0, 1)
    camera = default_camera(48, 36, 40.0)
    pose = pose_from_view(np.array([cx, cy, cz]), yaw, pitch, roll)
    result = render(_tiny_world([plane]), camera, pose)
    expected, faces_camera = _plane_hits(plane, pose, camera)
    if not faces_camera:
        expected[:] = np.inf  # back faces are culled
    finite = np.isfinite(expected)
    # Pixels whose ray grazes the rectangle's border may flip by rounding; compare all others.
    assert np.array_equal(np.isfinite(result.depth), finite) or np.mean(np.isfinite(result.depth) != finite) < 0.01
    both = finite & np.isfinite(result.depth)
    np.testing.assert_allclose(result.depth[both], expected[both], rtol=1e-5)
    assert np.all(result.plane_index[both] == 0) and np.all(result.plane_index[~np.isfinite(result.depth)] == -1)


def test_zbuffer_shows_the_nearer_plane_per_pixel():
    """Two intersecting walls (no painter's order exists) and an occluder in front of both."""
    camera = default_camera(160, 120, 100.0)
    pose = pose_from_view(np.array([0.0, 0.0, 1.5]), 0.0)  # looking along +x
    far = _wall("far", 10.0, 4.0, -4.0, 4.0, 0.0)
    near = _wall("near", 5.0, 1.0, -1.0, 2.5, 0.5)
    # A wall slanted through "far": its left end is in front of it, its right end behind.
    slant = Plane("slant", "side", (7.0, 2.0, 3.0), tuple(np.array([6.0, -6.0, 0.0]) / math.hypot(6, 6)),
                  (0.0, 0.0, -1.0), math.hypot(6, 6), 3.0, 16.0, 9)
    world = _tiny_world([far, slant, near])
    result = render(world, camera, pose)
    expected = np.full((camera.height, camera.width), np.inf)
    owner = np.full(expected.shape, -1)
    for index, plane in enumerate(world.planes):
        z, _ = _plane_hits(plane, pose, camera)
        closer = z < expected
        expected[closer] = z[closer]
        owner[closer] = index
    assert np.array_equal(result.plane_index, owner)
    np.testing.assert_allclose(result.depth[np.isfinite(expected)], expected[np.isfinite(expected)], rtol=1e-5)
    # Every plane wins somewhere: the slanted one both in front of and behind the far wall.
    assert {0, 1, 2} <= set(np.unique(owner))
    centre = result.plane_index[camera.height // 2 - 5, camera.width // 2]
    assert centre == 2 and abs(result.depth[camera.height // 2 - 5, camera.width // 2] - 5.0) < 1e-4
    # The colour at an occluded pixel comes from the nearer plane's texture, not the far one's.
    alone = render(_tiny_world([far]), camera, pose)
    pixel = (camera.height // 2 - 5, camera.width // 2)
    assert not np.allclose(result.color[pixel], alone.color[pixel])


def test_ground_plane_crossing_the_camera_plane_is_clipped():
    """A ground plane extending far behind the camera: only the part in front is drawn, exactly."""
    ground = Plane("ground", "ground_plain", (-50.0, 50.0, 0.0), (1.0, 0.0, 0.0), (0.0, -1.0, 0.0), 100.0, 100.0, 2.0, 3)
    camera = default_camera(64, 48, 50.0)
    for pitch in (0.0, -0.6, 0.3):
        pose = pose_from_view(np.array([0.0, 0.0, 1.6]), 0.7, pitch)
        result = render(_tiny_world([ground]), camera, pose)
        expected, _ = _plane_hits(ground, pose, camera)
        assert np.array_equal(np.isfinite(result.depth), np.isfinite(expected))
        finite = np.isfinite(expected)
        np.testing.assert_allclose(result.depth[finite], expected[finite], rtol=1e-5)
        assert np.all(result.color[finite].max(axis=1) > 0)  # textured, not garbage/black


@given(points=st.lists(st.tuples(st.floats(-10, 10), st.floats(-10, 10), st.floats(-10, 10)), min_size=3, max_size=8),
       near=st.floats(0.01, 2.0))
def test_near_clipping_keeps_only_points_in_front(points, near):
    clipped = _clip_near(np.array(points), near)
    assert np.all(clipped[:, 2] >= near - 1e-9)
    kept = [p for p in points if p[2] >= near]
    for p in kept:  # vertices already in front survive unchanged
        assert np.any(np.all(np.isclose(clipped, p), axis=1))


@given(yaw=st.floats(-math.pi, math.pi), pitch=st.floats(-1.4, 1.4), roll=st.floats(-1, 1),
       center=st.tuples(st.floats(-100, 100), st.floats(-100, 100), st.floats(-10, 10)))
def test_pose_from_view_looks_along_yaw_and_pitch(yaw, pitch, roll, center):
    pose = pose_from_view(np.array(center), yaw, pitch, roll)
    assert np.allclose(pose.R @ pose.R.T, np.eye(3), atol=1e-9) and np.isclose(np.linalg.det(pose.R), 1.0)
    assert np.allclose(pose.center, center, atol=1e-9)
    forward = pose.R.T @ np.array([0.0, 0.0, 1.0])
    expected = [math.cos(yaw) * math.cos(pitch), math.sin(yaw) * math.cos(pitch), math.sin(pitch)]
    assert np.allclose(forward, expected, atol=1e-9)


# ------------------------------------------------------------------------------------- features
def test_sift_matches_satisfy_the_ground_truth_epipolar_geometry(street):
    dataset = load_dataset(street)
    sift = cv2.SIFT_create(nfeatures=2000)
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    total = 0
    for a_name, b_name in (("map_000008.jpg", "map_000009.jpg"), ("map_000015.jpg", "map_000016.jpg"),
                           ("map_000018.jpg", "map_000020.jpg")):
        a, b = dataset.frames[a_name], dataset.frames[b_name]
        kp_a, desc_a = sift.detectAndCompute(cv2.imread(str(a.image_path), cv2.IMREAD_GRAYSCALE), None)
        kp_b, desc_b = sift.detectAndCompute(cv2.imread(str(b.image_path), cv2.IMREAD_GRAYSCALE), None)
        good = [m for m, n in matcher.knnMatch(desc_a, desc_b, k=2) if m.distance < 0.75 * n.distance]
        # OpenCV puts pixel centres at integers; COLMAP at +0.5.
        pa = np.array([kp_a[m.queryIdx].pt for m in good]) + 0.5
        pb = np.array([kp_b[m.trainIdx].pt for m in good]) + 0.5
        relative = b.cam_from_world @ a.cam_from_world.inverse()
        tx = np.array([[0, -relative.t[2], relative.t[1]], [relative.t[2], 0, -relative.t[0]],
                       [-relative.t[1], relative.t[0], 0]])
        F = np.linalg.inv(b.camera.K).T @ tx @ relative.R @ np.linalg.inv(a.camera.K)
        ha, hb = np.c_[pa, np.ones(len(pa))], np.c_[pb, np.ones(len(pb))]
        lines_b, lines_a = ha @ F.T, hb @ F
        numerator = np.abs(np.sum(hb * lines_b, axis=1))
        symmetric = 0.5 * (numerator / np.hypot(*lines_b[:, :2].T) + numerator / np.hypot(*lines_a[:, :2].T))
        # At 320x240 SIFT finds ~150-400 keypoints per frame here; ratio-test matches are mostly right.
        assert len(good) >= 60, (a_name, b_name, len(good))
        assert np.median(symmetric) < 1.0, (a_name, b_name, np.median(symmetric))
        assert np.mean(symmetric < 2.0) > 0.7
        total += len(good)
    assert total >= 250


# ------------------------------------------------------------------------------------- generator
def test_same_seed_gives_identical_output_with_any_worker_count(street, tmp_path):
    again = generate_scene(tmp_path / "again", preset="street", seed=3, num_frames=NUM_FRAMES, width=W, height=H,
                           num_workers=2, depth_dtype="float32")
    for path in sorted(street.rglob("*")):
        if path.is_file():
            assert path.read_bytes() == (again / path.relative_to(street)).read_bytes(), path.name


def test_different_seeds_and_presets_differ(street, tmp_path):
    other = generate_scene(tmp_path / "courtyard", preset="courtyard", seed=4, num_frames=6, width=160, height=120,
                           num_workers=1)
    dataset = load_dataset(other)
    assert len(dataset.splits["mapping"]) == 6 and len(dataset.splits["query_night"]) == 3
    scene = json.loads((other / "scene.json").read_text())
    assert scene["preset"] == "courtyard"
    # Closed courtyard: every mapping view sees walls or ground, sky only above.
    for frame in dataset.split("mapping"):
        depth = np.load(other / "depth" / (frame.name[:-4] + ".npy"))
        assert np.isfinite(depth[depth.shape[0] // 2:]).all()

    a, b = build_world("street", 3, NUM_FRAMES), build_world("street", 5, NUM_FRAMES)
    assert [p.origin for p in a.planes] != [p.origin for p in b.planes]
    assert sorted(PRESETS) == ["courtyard", "street"]


def test_failure_midway_leaves_no_output(tmp_path):
    out = tmp_path / "scene"

    def interrupt(done, total):
        assert not out.exists()  # nothing is visible while writing
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_scene(out, preset="courtyard", seed=0, num_frames=4, width=64, height=48, num_workers=1,
                       progress=interrupt)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_raise_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown scene preset"):
        generate_scene(tmp_path / "x", preset="forest")
    with pytest.raises(ConfigError, match="num_frames"):
        generate_scene(tmp_path / "x", num_frames=1)
    assert not (tmp_path / "x").exists()
