"""pip install puts what launch_ros needs where it looks; colcon builds the package (slow)."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from scenesqueezer_ros.testing import REPO_ROOT

EXECUTABLES = {"scenesqueezer": "scenesqueezer_ros.cli", "scenesqueezer_localizer_node": "scenesqueezer_ros.localizer_node"}


def _installed_scenesqueezer() -> tuple:
    """What the project's venv has of its own install: the distribution and the console scripts."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("scenesqueezer")
        version = (dist.version, str(dist._path))
    except PackageNotFoundError:
        version = None
    bin_dir = Path(sys.prefix) / "bin"
    return version, tuple((bin_dir / exe).is_file() for exe in EXECUTABLES)


def test_pip_install_has_ament_marker_share_files_and_executables_and_keeps_the_venv(tmp_path):
    """A non-editable install, made into a throwaway venv: `pip install --prefix` from this venv would
    uninstall the project's own install here (see ../shared/ENVIRONMENT.md)."""
    before = _installed_scenesqueezer()
    source = tmp_path / "src"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "install", "log", "__pycache__", "*.egg-info", ".hypothesis", "outputs"))
    # Only a wheel is built here; nothing is installed into (or removed from) this venv.
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), "-q"], check=True)
    (wheel,) = (tmp_path / "dist").glob("scenesqueezer-*.whl")
    prefix = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True)
    # pip --python installs into that interpreter's environment, which cannot see this venv
    subprocess.run([sys.executable, "-m", "pip", "--python", str(prefix / "bin/python"), "install", "--no-deps",
                    "-q", str(wheel)], check=True)
    assert _installed_scenesqueezer() == before

    assert (prefix / "share/ament_index/resource_index/packages/scenesqueezer").is_file()
    assert (prefix / "share/scenesqueezer/config/localizer.yaml").is_file()
    for name in ("localize", "compress", "replay_eval"):
        assert (prefix / f"share/scenesqueezer/launch/{name}.launch.py").is_file()
    assert (prefix / "share/scenesqueezer/package.xml").is_file()
    for exe in EXECUTABLES:
        wrapper = prefix / "lib/scenesqueezer" / exe
        assert wrapper.is_file() and os.access(wrapper, os.X_OK), exe
        assert (prefix / "bin" / exe).is_file(), exe
    # The wrappers run the console scripts of their own prefix: the installed copy of the package,
    # with this venv's dependencies behind it (a .pth line; its own site-packages come first).
    site = next(prefix.glob("lib/python3*/site-packages"))
    (site / "project_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {**os.environ, "PYTHONPATH": ""}
    for exe, module in EXECUTABLES.items():
        probe = subprocess.run([str(prefix / "lib/scenesqueezer" / exe), "--help"], capture_output=True, text=True,
                               env=env, cwd=tmp_path, timeout=120)
        assert probe.returncode == 0, probe.stderr
        assert "usage" in probe.stdout.lower() or "--ros-args" in probe.stdout, probe.stdout
    where = subprocess.run([str(prefix / "bin/python"), "-c", "import scenesqueezer_ros.cli as m; print(m.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout
    assert where.startswith(str(site)), where
    # The message package built by scripts/build_ros_msgs.sh is untouched.
    from scenesqueezer.msg import LocalizationResult  # noqa: F401 - importable is the check


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
    for exe in EXECUTABLES:
        assert os.access(install / "lib/scenesqueezer" / exe, os.X_OK), exe
    # The CLI where a ROS user calls it, with the install's environment (what setup.bash sets):
    # `ros2 run scenesqueezer scenesqueezer` when the launch tools are there, else the file itself.
    run_env = {**env, "AMENT_PREFIX_PATH": f"{install}{os.pathsep}{venv}", "PYTHONPATH": str(site)}
    ros2 = shutil.which("ros2", path=f"{venv}/bin")
    command = [ros2, "run", "scenesqueezer", "scenesqueezer"] if ros2 else [str(install / "lib/scenesqueezer/scenesqueezer")]
    probe = subprocess.run([*command, "--help"], env=run_env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0 and "usage: scenesqueezer" in probe.stdout, probe.stderr
    where = subprocess.run([sys.executable, "-c", "import scenesqueezer_ros.cli as m; print(m.__file__)"],
                           env=run_env, cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site)), where
