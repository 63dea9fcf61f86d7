"""Launch tests (launch_pytest); launch and launch_pytest are not installable from PyPI, so these
run only with a full ROS 2 install (source /opt/ros/<distro>/setup.bash; colcon build; colcon test)."""

import pytest

from scenesqueezer_ros.testing import REPO_ROOT

launch_pytest = pytest.importorskip(
    "launch_pytest", reason="launch_pytest is missing (not on PyPI); needs a full ROS 2 install")
launch = pytest.importorskip("launch", reason="launch is missing (not on PyPI)")
launch_ros = pytest.importorskip("launch_ros", reason="launch_ros is missing (not on PyPI)")



@pytest.fixture
def localizer_process():
    # Same executable and parameter file the launch files use, resolved through the ament index.
    return launch_ros.actions.Node(
        package="scenesqueezer", executable="scenesqueezer_localizer_node",
        parameters=[str(REPO_ROOT / "config" / "localizer.yaml"), {"map_path": "/nonexistent.ssmap"}],
        output="screen")


@launch_pytest.fixture
def localize_launch(localizer_process):
    return launch.LaunchDescription([localizer_process, launch_pytest.actions.ReadyToTest()])


@pytest.mark.launch(fixture=localize_launch)
async def test_node_starts_and_reports_missing_map(localizer_process, launch_context):
    from launch_pytest.tools import process as process_tools

    await process_tools.wait_for_start(launch_context, localizer_process, timeout=60)
    await process_tools.wait_for_output(
        launch_context, localizer_process, lambda output: "could not load map" in output, timeout=60)


def test_launch_files_define_a_description():
    for name in ("localize", "compress", "replay_eval"):
        import importlib.util

        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "launch" / f"{name}.launch.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert isinstance(module.generate_launch_description(), launch.LaunchDescription)
