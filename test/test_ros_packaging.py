"""pip install puts what launch_ros needs where it looks; colcon builds the package (slow)."""

import os
import shutil
import subprocess
import sys

import pytest

from scenesqueezer_ros.testing import REPO_ROOT


def test_pip_install_prefix_has_ament_marker_share_files_and_executables(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "install", "log", "__pycache__", "*.egg-info", ".hypothesis", "outputs"))
    prefix = tmp_path / "prefix"
    subprocess.run([sys.executable, "-m", "pip", "install", str(source), "--no-deps",
                    "--no-build-isolation", "--prefix", str(prefix), "-q"], check=True)
    assert (prefix / "share/ament_index/resource_index/packages/scenesqueezer").is_file()
    assert (prefix / "share/scenesqueezer/config/localizer.yaml").is_file()
    assert (prefix / "share/scenesqueezer/launch/localize.launch.py").is_file()
    assert (prefix / "share/scenesqueezer/package.xml").is_file()
    for exe in ("scenesqueezer_localizer_node", "scenesqueezer"):
        wrapper = prefix / "lib/scenesqueezer" / exe
        assert wrapper.is_file() and os.access(wrapper, os.X_OK), exe
    # The message package built by scripts/build_ros_msgs.sh survives a pip install.
    from scenesqueezer.msg import LocalizationResult  # noqa: F401


@pytest.mark.slow
def test_colcon_build_in_a_workspace(tmp_path):
    """colcon build --merge-install of the root package: messages, Python packages, executables."""
    workspace = tmp_path / "ws"
    (workspace / "src").mkdir(parents=True)
    os.symlink(REPO_ROOT, workspace / "src" / "scenesqueezer")
    env = dict(os.environ)
    venv = sys.prefix
    env["CMAKE_PREFIX_PATH"] = venv
    env["AMENT_PREFIX_PATH"] = venv
    env["PATH"] = f"{venv}/bin:{env['PATH']}"
    subprocess.run(["colcon", "build", "--merge-install", "--packages-select", "scenesqueezer",
                    "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"],
                   cwd=workspace, env=env, check=True, timeout=1200)
    install = workspace / "install"
    assert (install / "lib/scenesqueezer/scenesqueezer_localizer_node").is_file()
    assert (install / "share/scenesqueezer/launch/localize.launch.py").is_file()
    site = next(install.glob("lib/python3*/site-packages"))
    assert (site / "scenesqueezer/msg/__init__.py").is_file()
    assert (site / "scenesqueezer_ros/localizer_node.py").is_file()
