"""The node's two-stage pipeline: the core's extraction split from the rest gives the same results,
and the one-slot mailboxes between the stages stay newest-frame-only without losing a caller."""

from __future__ import annotations

import threading

import numpy as np

from scenesqueezer_core.dataset import load_dataset, read_image
from scenesqueezer_core.localization import Localizer
from scenesqueezer_ros.localizer_node import FrameJob, FrameMailbox, TriggerWait


def test_extract_then_register_equals_localize(small_street_scene, small_street_map):
    localizer = Localizer.from_file(small_street_map, device="cpu")
    frame = load_dataset(small_street_scene).split("query_day")[0]
    image = read_image(frame.image_path)
    whole = localizer.localize(image, frame.camera)
    extracted = localizer.extract(image, frame.camera)
    staged = localizer.localize_extracted(extracted)
    assert whole.success and staged.success
    np.testing.assert_allclose(staged.cam_from_world.R, whole.cam_from_world.R, atol=1e-9)
    np.testing.assert_allclose(staged.cam_from_world.t, whole.cam_from_world.t, atol=1e-9)
    assert staged.num_inliers == whole.num_inliers
    assert staged.timings["extract"] == extracted.seconds
    assert staged.timings["total"] >= extracted.seconds


def test_mailbox_keeps_the_newest_frame_and_every_caller():
    box = FrameMailbox()
    waiting_service = FrameJob(image_msg=None, camera_info=None, done=threading.Event())
    trigger = TriggerWait()
    older = FrameJob(image_msg=None, camera_info=None, triggers=[trigger])
    box.put(waiting_service)
    box.put(older)  # the service's frame is superseded: it is answered with no result
    assert waiting_service.done.is_set() and waiting_service.result is None
    newest = FrameJob(image_msg=None, camera_info=None)
    box.put(newest)  # the trigger asked for the next result: it moves to the newest frame
    assert box.dropped == 2
    taken = box.take(timeout=0.1)
    assert taken is newest and taken.triggers == [trigger] and not trigger.done.is_set()
    assert box.take(timeout=0.01) is None
    box.close()
    assert box.take(timeout=5.0) is None  # closed: returns at once
