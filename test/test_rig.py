"""Multi-camera rigs in the core (scenesqueezer_core/localization/rig.py) and the synthetic rig scene:
the dataset convention (rig.json), and night rig frames that the front camera alone does not
localize, localized by the rig within (0.25 m, 2 deg) on the real small street map."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scenesqueezer_core.dataset import load_dataset, load_rig, read_image
from scenesqueezer_core.errors import ConfigError
from scenesqueezer_core.localization import Localizer
from scenesqueezer_core.localization.prior import pose_difference
from scenesqueezer_core.localization.rig import RigLocalizer
from scenesqueezer_core.synthetic.generate import RIG_CAMERAS


@pytest.fixture(scope="module")
def rig_street(small_street_rig_scene, small_street_map):
    dataset = load_dataset(small_street_rig_scene)
    rig, frames = load_rig(dataset)
    localizer = Localizer.from_file(small_street_map, device="cpu")
    return dataset, rig, frames, localizer


def test_rig_scene_carries_each_camera_of_each_rig_frame(rig_street, small_street_scene):
    dataset, rig, frames, _ = rig_street
    assert rig.names == [name for name, _ in RIG_CAMERAS]
    plain = load_dataset(small_street_scene)
    for split in ("query_day", "query_night"):
        rows = frames[f"{split}_rig"]
        # the front camera is the ordinary query: same name, pose and pixels as without a rig
        assert [row[0].name for row in rows] == plain.splits[split] == dataset.splits[split]
        assert dataset.splits[f"{split}_rig"] == [f.name for row in rows for f in row]
        for row in rows:
            assert np.allclose(row[0].cam_from_world.matrix, plain.frames[row[0].name].cam_from_world.matrix)
            bases = [camera.base_from_camera @ frame.cam_from_world for camera, frame in zip(rig.cameras, row)]
            for base in bases[1:]:  # one rig pose: every camera's ground truth agrees on the base
                assert np.allclose(base.matrix, bases[0].matrix, atol=1e-9)
    assert np.array_equal(read_image(rows[0][0].image_path), read_image(plain.frames[rows[0][0].name].image_path))
    assert plain.splits["mapping"] == dataset.splits["mapping"]  # the same map serves both scenes
    for camera, (_, yaw) in zip(rig.cameras, RIG_CAMERAS):
        # a yaw about the front camera's vertical: the optical axis stays level, turned by the yaw
        axis = camera.base_from_camera.R[:, 2]
        assert axis[1] == pytest.approx(0.0, abs=1e-12)
        assert math.degrees(math.atan2(-axis[0], axis[2])) == pytest.approx(yaw)


def test_rig_localizes_night_frames_the_front_camera_alone_does_not(rig_street):
    dataset, rig, frames, localizer = rig_street
    rig_localizer = RigLocalizer(localizer, rig)
    for row in frames["query_night_rig"][:2]:
        images = [read_image(frame.image_path) for frame in row]
        truth = rig.cameras[0].base_from_camera @ row[0].cam_from_world
        front = localizer.localize(images[0], row[0].camera)
        assert not front.success or pose_difference(front.cam_from_world, row[0].cam_from_world)[0] > 0.25

        result = rig_localizer.localize(images, [frame.camera for frame in row])
        assert result.success, result.failure_reason
        distance, angle = pose_difference(result.base_from_world, truth)
        assert distance < 0.25 and angle < 2.0, (distance, angle)
        # published only because a camera passed every single-camera check at the rig-derived pose
        assert result.passing_cameras
        for name in result.passing_cameras:
            share = result.cameras[name]
            assert share.checks and all(check.passed for check in share.checks)
            index = rig.names.index(name)
            expected = rig.cameras[index].base_from_camera.inverse() @ result.base_from_world
            assert np.allclose(share.cam_from_world.matrix, expected.matrix)
        assert result.num_inliers == sum(share.num_inliers for share in result.cameras.values())
        assert all(check.name.split("/")[0] in rig.names for check in result.checks)


def test_rig_takes_one_image_per_camera(rig_street):
    dataset, rig, frames, localizer = rig_street
    row = frames["query_day_rig"][0]
    with pytest.raises(ConfigError, match="the rig has 3 cameras"):
        RigLocalizer(localizer, rig).localize([read_image(row[0].image_path)], [row[0].camera])


def test_rig_prior_narrows_the_search_and_falls_back_when_it_is_wrong(rig_street):
    """A prior at the rig's true pose: the narrowed search gives the pose (search PRIOR, fewer
    candidates matched); the prior moved 10 m away: the global search still finds it."""
    from scenesqueezer_core.localization import PosePrior, SearchKind
    from scenesqueezer_core.types import Pose

    dataset, rig, frames, localizer = rig_street
    rig_localizer = RigLocalizer(localizer, rig)
    row = frames["query_day_rig"][1]
    images, cameras = [read_image(frame.image_path) for frame in row], [frame.camera for frame in row]
    truth = rig.cameras[0].base_from_camera @ row[0].cam_from_world
    plain = rig_localizer.localize(images, cameras)
    assert plain.success and plain.search == SearchKind.GLOBAL

    near = rig_localizer.localize(images, cameras, prior=PosePrior(truth, 1.0, 5.0))
    assert near.success and near.search == SearchKind.PRIOR, near.failure_reason
    assert pose_difference(near.base_from_world, truth)[0] < 0.25
    assert near.num_candidates_matched <= len(rig.cameras) * int(localizer.conf["prior_top_k"])
    assert all(share.search == SearchKind.PRIOR for share in near.cameras.values())

    moved = Pose(truth.R, truth.t + truth.R @ np.array([10.0, 0.0, 0.0]))  # the base 10 m to the side
    far = rig_localizer.localize(images, cameras, prior=PosePrior(moved, 1.0, 5.0))
    assert far.success and far.search == SearchKind.GLOBAL, far.failure_reason
    assert pose_difference(far.base_from_world, truth)[0] < 0.25
