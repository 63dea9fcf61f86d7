#!/usr/bin/env bash
# Idempotent set-up of the project venv (.venv): Python deps, our packages, ROS 2 custom messages.
# Re-running it is cheap: installs are skipped while the requirement files are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "setup: Python 3.11 is required (the pinned torch and ROS 2 wheels are cp311); found $("$PYTHON" --version)" >&2
  exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.scenesqueezer-requirements.sha256"
want="$(cat requirements.txt requirements-nodeps.txt setup.py | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing Python requirements into $VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  # requirements.txt pins torch to the CPU build; nothing in it pulls torchvision or a CUDA torch.
  "$VENV/bin/python" -m pip install --quiet -r requirements.txt
  # These packages' metadata drags in torchvision / opencv-python / matplotlib: install without deps.
  "$VENV/bin/python" -m pip install --quiet --no-deps -r requirements-nodeps.txt
  "$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi

# ROS 2 launch tooling (`ros2 launch`, launch_ros, launch_pytest): not on PyPI; built from upstream as
# wheels in ../shared/ros2-launch (its README). Without that folder the venv has no `ros2 launch` and
# the launch tests skip, saying so.
ROS2_LAUNCH_DIR="${SCENESQUEEZER_ROS2_LAUNCH_DIR:-../shared/ros2-launch}"
if [ -d "$ROS2_LAUNCH_DIR/wheels" ]; then
  launch_stamp="$VENV/.scenesqueezer-launch.sha256"
  launch_want="$( (cat requirements-launch.txt; cd "$ROS2_LAUNCH_DIR/wheels" && sha256sum ./*.whl) | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$launch_stamp" ] || [ "$(cat "$launch_stamp")" != "$launch_want" ]; then
    echo "setup: installing the ROS 2 launch tooling from $ROS2_LAUNCH_DIR/wheels"
    "$VENV/bin/python" -m pip install --quiet -r requirements-launch.txt
    # --no-deps: their metadata names ROS packages (ament_index_python, ...) that the ros-* wheels
    # provide under other distribution names.
    "$VENV/bin/python" -m pip install --quiet --no-deps "$ROS2_LAUNCH_DIR"/wheels/*.whl
    echo "$launch_want" > "$launch_stamp"
  fi
  export SCENESQUEEZER_COMPOSITION_INTERFACES_SRC="$ROS2_LAUNCH_DIR/src/composition_interfaces"
else
  echo "setup: $ROS2_LAUNCH_DIR not found: no \`ros2 launch\` in $VENV (the launch tests will skip)"
fi

if [ -f scripts/build_ros_msgs.sh ]; then
  bash scripts/build_ros_msgs.sh "$VENV"
fi

# Make the editable install visible to `ros2 launch` / `ros2 run` (what colcon's --symlink-install
# does): pip -e skips setup.py's data_files, so put the ament index marker, links to launch/ and
# the files of launch/ and config/, and the lib/scenesqueezer executables into the venv prefix
# ourselves. One link per file, not per folder (ros2 launch's file search does not follow linked
# folders): edits take effect at once, a new file needs `make setup`.
venv_abs="$(cd "$VENV" && pwd)"
mkdir -p "$venv_abs/share/ament_index/resource_index/packages"
cp resource/scenesqueezer "$venv_abs/share/ament_index/resource_index/packages/scenesqueezer"
link_files() {  # target_folder source_file...: links only these files there, drops stale links
  local target="$1"; shift
  mkdir -p "$target"
  find "$target" -maxdepth 1 -type l -delete
  for file in "$@"; do ln -sfn "$PWD/$file" "$target/$(basename "$file")"; done
}
link_files "$venv_abs/share/scenesqueezer/launch" launch/*.launch.py
link_files "$venv_abs/share/scenesqueezer/config" config/*.yaml
link_files "$venv_abs/lib/scenesqueezer" scripts/ros/bin/*
# ament_index_python finds packages only through AMENT_PREFIX_PATH: every Python process of this venv
# (ros2, launch tests) prepends the venv prefix when it is missing, activated or not.
site_packages="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cat > "$site_packages/scenesqueezer_ament_prefix.pth" <<'PTH'
import os, sys; _p = os.environ.get("AMENT_PREFIX_PATH", ""); sys.prefix in _p.split(os.pathsep) or os.environ.__setitem__("AMENT_PREFIX_PATH", os.pathsep.join(x for x in (sys.prefix, _p) if x))
PTH
