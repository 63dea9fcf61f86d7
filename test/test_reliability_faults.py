"""Faults around the node and the tools: a map missing, corrupt, replaced or overwritten in place
while in use; CUDA requested without CUDA; a compression killed with SIGKILL. Real node
subprocess, real DDS, real `scenesqueezer compress` subprocesses."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from scenesqueezer_ros.testing import (REPO_ROOT, create_probe_node, destroy_probe_node, isolate_ros_environment,
                                       start_node, stop_node)
from test_reliability_inputs import Material, NodeProbe

DOMAIN_ID = 72
NODE_NAME = "rel_faults"


def _compress_command(map_path, output) -> list[str]:
    return [sys.executable, "-m", "scenesqueezer_core.cli", "compress", str(map_path), str(output),
            "--executor", "serial"]


def _temp_files(folder, output_name: str) -> list:
    return sorted(folder.glob(f".{output_name}.*.tmp"))


@pytest.fixture(scope="module")
def compression_runs(small_street_map, tmp_path_factory):
    """A compression killed with SIGKILL mid-way, a stale temp file as a kill during the write would
    leave, then a complete run to the same output."""
    root = tmp_path_factory.mktemp("compress")
    output = root / "street.sqz"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="2")
    # Time an uninterrupted run on this machine first, then kill another one half-way through, so
    # that the kill lands mid-run whether the machine is fast or loaded.
    t0 = time.perf_counter()
    timed = subprocess.run(_compress_command(small_street_map, root / "timed" / "street.sqz"), cwd=str(REPO_ROOT),
                           env=env, capture_output=True, text=True, timeout=600)
    assert timed.returncode == 0, timed.stderr[-2000:]
    duration = time.perf_counter() - t0
    killed = subprocess.Popen(_compress_command(small_street_map, output), cwd=str(REPO_ROOT), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(0.5 * duration)
    still_running = killed.poll() is None
    if still_running:
        os.killpg(killed.pid, signal.SIGKILL)  # its own session: the process and anything it spawned
    killed.wait()
    after_kill = {"still_running": still_running, "output_exists": output.exists(),
                  "temp_files": _temp_files(root, output.name)}
    # What a SIGKILL during the final write leaves: no cleanup can run then.
    stale = root / f".{output.name}.stale000.tmp"
    stale.write_bytes(b"half a map")
    complete = subprocess.run(_compress_command(small_street_map, output), cwd=str(REPO_ROOT), env=env,
                              capture_output=True, text=True, timeout=600)
    return {"root": root, "output": output, "after_kill": after_kill, "stale": stale, "complete": complete}


def test_killed_compression_leaves_no_partial_output(compression_runs):
    from scenesqueezer_core.maps.compressed_map import CompressedMap

    after_kill = compression_runs["after_kill"]
    assert after_kill["still_running"], "the compression finished before it could be killed; kill it sooner"
    assert not after_kill["output_exists"]
    assert after_kill["temp_files"] == []
    complete = compression_runs["complete"]
    assert complete.returncode == 0, complete.stderr[-2000:]
    cmap = CompressedMap.load(compression_runs["output"])  # verifies every checksum
    assert len(cmap.points_xyz) > 0
    # The stale temp file neither blocks nor corrupts the later run; it is left for the user.
    assert compression_runs["stale"].read_bytes() == b"half a map"
    assert _temp_files(compression_runs["root"], "street.sqz") == [compression_runs["stale"]]


@pytest.fixture(scope="module")
def fault_node(small_street_map, small_street_scene, tmp_path_factory):
    root = tmp_path_factory.mktemp("fault_node")
    isolate_ros_environment(DOMAIN_ID, root / "ros_log")
    live_map = root / "live.ssmap"
    live_map.write_bytes(b"SceneSqueezer? no: " + os.urandom(4000))
    log = root / "node.log"
    process = start_node(["-r", f"__node:={NODE_NAME}", "-p", f"map_path:={live_map}", "-p", "device:=cuda",
                          "-p", "image_topic:=/relf/image", "-p", "camera_info_topic:=/relf/camera_info"], log)
    node = create_probe_node("reliability_faults_probe")
    probe = NodeProbe(node, NODE_NAME, "/relf/image", "/relf/camera_info")
    probe.process, probe.log, probe.stamp = process, log, 2000
    probe.live_map = live_map
    probe.material = Material(small_street_scene)
    assert probe.wait_connected(60.0), log.read_text()
    yield probe
    destroy_probe_node(node)
    stop_node(process)


def _send_good_frame(probe):
    from scenesqueezer_ros.image_conversion import rgb_to_image_msg

    probe.stamp += 1
    return probe.send(rgb_to_image_msg(probe.material.rgb, "rgb8"), probe.material.info(), probe.stamp)


def _reload(probe):
    from std_srvs.srv import Trigger

    client = probe.node.create_client(Trigger, f"/{NODE_NAME}/reload_map")
    try:
        assert probe.spin(client.service_is_ready, 60.0), probe.log.read_text()[-3000:]
        future = client.call_async(Trigger.Request())
        assert probe.spin(future.done, 120.0), probe.log.read_text()[-3000:]
        return future.result()
    finally:
        probe.node.destroy_client(client)


def _status(probe):
    for _ in range(3):  # the first message may predate the change
        status = probe.latest_diagnostic()
    return status


def test_map_faults_at_startup_and_while_running(fault_node, small_street_map, compression_runs):
    import torch
    from diagnostic_msgs.msg import DiagnosticStatus

    probe = fault_node
    # 1. Corrupt at start-up: the node stays up, reports ERROR, answers frames with the reason.
    status = _status(probe)
    assert status.level == DiagnosticStatus.ERROR and "could not load map" in status.message, status.message
    result, pose = _send_good_frame(probe)
    assert result is not None and not result.success and pose is None
    assert "could not load map" in result.failure_reason

    # 2. The file is fixed (copied over): ~/reload_map recovers.
    shutil.copyfile(small_street_map, probe.live_map)
    response = _reload(probe)
    assert response.success, response.message
    uncompressed_points = int(response.message.rsplit("(", 1)[1].split()[0])
    assert _status(probe).level != DiagnosticStatus.ERROR
    result, pose = _send_good_frame(probe)
    assert result.success and pose is not None, result.failure_reason
    if not torch.cuda.is_available():  # device: cuda without CUDA runs on the CPU, with a warning
        assert "CUDA requested but not available" in probe.log.read_text()

    # 3. Replaced while running by another valid map (atomically): reload picks the new one.
    staged = probe.live_map.with_name("staged.sqz")
    shutil.copyfile(compression_runs["output"], staged)
    os.replace(staged, probe.live_map)
    response = _reload(probe)
    assert response.success, response.message
    compressed_points = int(response.message.rsplit("(", 1)[1].split()[0])
    assert compressed_points < uncompressed_points
    result, _ = _send_good_frame(probe)
    assert result is not None

    # 4. Overwritten in place (`cp`, same inode) by the uncompressed map again, then reloaded.
    shutil.copyfile(small_street_map, probe.live_map)
    assert _reload(probe).success

    # 5. Overwritten in place by garbage while in use: the node loaded a private snapshot, so it
    #    neither dies of SIGBUS nor reads foreign bytes; it keeps localizing.
    with open(probe.live_map, "r+b") as handle:
        handle.truncate(100)
        handle.seek(0)
        handle.write(b"\0" * 100)
    result, pose = _send_good_frame(probe)
    assert probe.process.poll() is None, probe.log.read_text()[-3000:]
    assert result.success and pose is not None, result.failure_reason

    # 6. A reload of the corrupt replacement fails, keeps the old map and reports ERROR.
    response = _reload(probe)
    assert not response.success and "previously loaded map" in response.message, response.message
    status = _status(probe)
    assert status.level == DiagnosticStatus.ERROR and "map reload failed" in status.message, status.message
    result, pose = _send_good_frame(probe)
    assert result.success and pose is not None, result.failure_reason

    # 7. Deleted, then restored: the error clears on the next successful reload.
    probe.live_map.unlink()
    assert not _reload(probe).success
    shutil.copyfile(small_street_map, probe.live_map)
    assert _reload(probe).success
    status = _status(probe)
    assert status.level != DiagnosticStatus.ERROR, status.message
    values = {kv.key: kv.value for kv in status.values}
    assert int(values["errors"]) == 0 and probe.process.poll() is None
