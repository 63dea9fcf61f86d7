"""The launch files through the real ROS 2 launch tools: `ros2 launch` as a user runs it (one test per
launch file, and their failures), and a launch_pytest test of the node.

The tools come with a ROS 2 distribution, or from ../shared/ros2-launch, which `make setup` installs
into the venv. Without either the tests skip, saying so; with ../shared/ros2-launch present they
must run (a missing install there is an error, not a skip).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from scenesqueezer_ros.testing import (
    REPO_ROOT,
    create_probe_node,
    destroy_probe_node,
    isolate_ros_environment,
    spin_until,
)

SHARED_LAUNCH_TOOLS = REPO_ROOT.parent / "shared" / "ros2-launch"
if SHARED_LAUNCH_TOOLS.is_dir():  # `make setup` installed them from there: they must import
    import launch
    import launch_pytest
    import launch_ros
else:
    _why = (f"the ROS 2 launch tools are not installed: {SHARED_LAUNCH_TOOLS} is missing (make setup builds them "
            "from there) and no ROS 2 distribution is sourced")
    launch = pytest.importorskip("launch", reason=_why)
    launch_pytest = pytest.importorskip("launch_pytest", reason=_why)
    launch_ros = pytest.importorskip("launch_ros", reason=_why)

DOMAIN_ID = 64
NODE = "/scenesqueezer_localizer"


def _ros2() -> str:
    ros2 = shutil.which("ros2", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    assert ros2, "launch is importable but the `ros2` command is missing; run `make setup`"
    return ros2


@pytest.fixture(scope="module")
def ros_env(tmp_path_factory):
    """This module's DDS domain and log folder, for the probe node and every launch; restored after."""
    saved = dict(os.environ)
    isolate_ros_environment(DOMAIN_ID, tmp_path_factory.mktemp("ros_log"))
    env = dict(os.environ)
    # The launch files find the CLI and the node through the package, not PATH: keep the venv off it.
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if Path(p).resolve() != Path(sys.executable).parent.resolve()) or "/usr/bin:/bin"
    env["OMP_NUM_THREADS"] = "1"
    yield env
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def probe(ros_env):
    node = create_probe_node("test_ros_launch_probe")
    yield node
    destroy_probe_node(node)


def _start_launch(env: dict, log: Path, launch_file: str, *arguments: str) -> subprocess.Popen:
    # A session of its own, so that _stop_launch can reach the nodes too if launch hangs: a node left
    # running keeps its name and topics on the DDS graph and confuses every later test.
    # SIGINT back to its default first: a test runner started as a background job (`cmd &` in a
    # non-interactive shell) ignores SIGINT, children inherit that, and ros2 launch, which only
    # chains onto Python's own handler, would then never see the Ctrl-C that the tests send.
    restore_sigint = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                      "os.execv(sys.argv[1], sys.argv[1:])")
    with open(log, "wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-c", restore_sigint, _ros2(), "launch", "scenesqueezer", launch_file,
                                 *arguments], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent,
                                start_new_session=True)


def _stop_launch(process: subprocess.Popen, timeout: float = 90) -> int | None:
    """SIGINT to ros2 launch, as Ctrl-C does; its exit code, or None after killing the whole session
    when it has not finished within ``timeout`` (launch escalates to SIGTERM/SIGKILL itself well before)."""
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
        return None


def _run_launch(env: dict, log: Path, launch_file: str, *arguments: str, timeout: float = 300) -> tuple[int, str]:
    process = _start_launch(env, log, launch_file, *arguments)
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        _stop_launch(process, 30)
        pytest.fail(f"ros2 launch {launch_file} did not finish within {timeout:.0f} s:\n{log.read_text()[-4000:]}")
    return code, log.read_text(errors="replace")


def test_localize_launch_starts_the_node_with_its_map_and_stops_cleanly_on_sigint(ros_env, probe, small_street_map,
                                                                                 tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray

    statuses = []
    probe.create_subscription(DiagnosticArray, "/diagnostics", lambda m: statuses.extend(m.status), 10)

    def endpoints(kind):
        lister = (probe.get_publisher_names_and_types_by_node if kind == "pub"
                  else probe.get_subscriber_names_and_types_by_node)
        try:
            return set(dict(lister("scenesqueezer_localizer", "/")))
        except Exception:  # noqa: BLE001 - the node is not discovered yet
            return set()

    log = tmp_path / "launch.log"
    process = _start_launch(ros_env, log, "localize.launch.py", f"map_path:={small_street_map}", "device:=cpu",
                            "image:=/test_cam/image", "camera_info:=/test_cam/info")
    try:
        published = {f"{NODE}/pose", f"{NODE}/pose_with_covariance", f"{NODE}/result", f"{NODE}/map_points",
                     "/diagnostics"}
        assert spin_until(probe, lambda: published <= endpoints("pub")
                           and {"/test_cam/image", "/test_cam/info"} <= endpoints("sub"), 120), \
            (endpoints("pub"), endpoints("sub"), log.read_text()[-3000:])
        # the map is loaded: the node only waits for its camera
        assert spin_until(probe, lambda: any(s.message == "waiting for CameraInfo" for s in statuses), 60), \
            ([s.message for s in statuses], log.read_text()[-3000:])
    finally:
        code = _stop_launch(process)
    output = log.read_text()
    assert code is not None, f"ros2 launch did not stop within 90 s of SIGINT (killed):\n{output[-3000:]}"
    assert f"loaded map {small_street_map}" in output
    assert code == 0, output[-3000:]
    assert "process has finished cleanly" in output, output[-3000:]


@pytest.fixture(scope="module")
def four_frame_dataset(small_street_scene, tmp_path_factory):
    """small_street_scene with four mapping frames: what compress.launch.py builds a map from, quickly."""
    root = tmp_path_factory.mktemp("four_frames")
    for name in ("images", "sparse"):
        (root / name).symlink_to(Path(small_street_scene) / name)
    splits = json.loads((Path(small_street_scene) / "splits.json").read_text())
    splits["mapping"] = splits["mapping"][:4]
    (root / "splits.json").write_text(json.dumps(splits))
    return root


def test_compress_launch_writes_the_map_and_the_compressed_map(ros_env, four_frame_dataset, tmp_path):
    scene_map, compressed = tmp_path / "site.ssmap", tmp_path / "site.sqz"
    code, output = _run_launch(ros_env, tmp_path / "launch.log", "compress.launch.py", f"dataset:={four_frame_dataset}",
                               f"map:={scene_map}", f"compressed_map:={compressed}", "ratio:=0.2")
    assert code == 0, output[-4000:]
    assert scene_map.stat().st_size > 0 and 0 < compressed.stat().st_size < scene_map.stat().st_size


def test_compress_launch_with_a_missing_dataset_exits_non_zero_with_the_reason(ros_env, tmp_path):
    code, output = _run_launch(ros_env, tmp_path / "launch.log", "compress.launch.py",
                               f"dataset:={tmp_path / 'no_such_dataset'}", f"map:={tmp_path / 'a.ssmap'}",
                               f"compressed_map:={tmp_path / 'a.sqz'}", timeout=120)
    assert code != 0, output[-3000:]
    assert "no_such_dataset does not exist" in output
    assert "`scenesqueezer build-map` failed (exit code 2" in output
    assert not (tmp_path / "a.ssmap").exists() and not (tmp_path / "a.sqz").exists()


def test_replay_eval_launch_answers_every_frame_like_the_offline_replay(ros_env, small_street_scene, small_street_map,
                                                                        tmp_path):
    from scenesqueezer_core.bag import export_bag
    from scenesqueezer_core.cli import main as core_cli

    bag = export_bag(small_street_scene, tmp_path / "bag", split="query_day", storage="mcap")
    report = tmp_path / "report"
    code, output = _run_launch(ros_env, tmp_path / "launch.log", "replay_eval.launch.py", f"bag:={bag}",
                               f"map_path:={small_street_map}", f"output:={report}", "device:=cpu")
    assert code == 0, output[-4000:]
    metrics = json.loads((report / "metrics.json").read_text())
    assert {"trajectory.png", "error_cdf.png", "latency_by_stage.png", "recall_vs_threshold.png",
            "summary.md", "queries.json"} <= {p.name for p in report.iterdir()}
    replay = json.loads((report / "queries.json").read_text())
    assert replay["as_fast_as_node"] is True  # the default pacing: no frame dropped
    assert replay["frames_sent"] == replay["results_received"] == len(replay["queries"])
    assert not [q for q in replay["queries"] if "no result from the node" in q["failure_reason"]]

    assert core_cli(["replay", str(bag), str(small_street_map), "--offline", "--device", "cpu",
                     "--output", str(tmp_path / "offline")]) == 0
    offline = json.loads((tmp_path / "offline" / "metrics.json").read_text())
    assert metrics["num_queries"] == offline["num_queries"] == len(json.loads(
        (Path(small_street_scene) / "splits.json").read_text())["query_day"])
    assert metrics["num_localized"] == offline["num_localized"]
    assert metrics["recall"] == offline["recall"]


def test_replay_eval_launch_with_a_missing_bag_exits_non_zero_with_the_reason(ros_env, tmp_path):
    # the replay checks its bag before it waits for the node (whose map is missing too)
    code, output = _run_launch(ros_env, tmp_path / "launch.log", "replay_eval.launch.py",
                               f"bag:={tmp_path / 'no_such_bag'}", f"map_path:={tmp_path / 'no_map.sqz'}",
                               f"output:={tmp_path / 'report'}", "device:=cpu", timeout=120)
    assert code != 0, output[-3000:]
    assert "no_such_bag does not exist" in output
    assert "`scenesqueezer replay` failed (exit code 2" in output
    assert not (tmp_path / "report").exists()


# --- launch_pytest ----------------------------------------------------------------------------------

@pytest.fixture
def localizer_without_map(ros_env):
    # Same executable and parameter file the launch files use, resolved through the ament index.
    return launch_ros.actions.Node(
        package="scenesqueezer", executable="scenesqueezer_localizer_node",
        parameters=[str(REPO_ROOT / "config" / "localizer.yaml"), {"map_path": "/nonexistent.ssmap"}],
        output="screen", cached_output=True)  # cached: launch_pytest reads the output back


@launch_pytest.fixture
def localize_launch(localizer_without_map):
    return launch.LaunchDescription([localizer_without_map, launch_pytest.actions.ReadyToTest()])


@pytest.mark.launch(fixture=localize_launch)
async def test_node_starts_and_reports_missing_map(localizer_without_map, launch_context):
    from launch_pytest.tools import process as process_tools

    assert await process_tools.wait_for_start(launch_context, localizer_without_map, timeout=60)
    # ROS logging goes to stderr
    assert await process_tools.wait_for_stderr(
        launch_context, localizer_without_map, lambda err: "could not load map '/nonexistent.ssmap'" in err,
        timeout=90), localizer_without_map.get_stderr()[-2000:]


def test_launch_files_define_a_description():
    import importlib.util

    for name in ("localize", "compress", "replay_eval"):
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "launch" / f"{name}.launch.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert isinstance(module.generate_launch_description(), launch.LaunchDescription)
