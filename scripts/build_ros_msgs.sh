#!/usr/bin/env bash
# Build scenesqueezer's custom ROS 2 messages (msg/*.msg) with the pip ROS 2 toolchain and install
# the generated `scenesqueezer` message package into a venv, so that
#     VENV/bin/python -c "from scenesqueezer.msg import LocalizationResult"
# works without a system ROS 2 install. Also builds a wire-compatible `tf2_msgs` (TFMessage only)
# when the venv has none, because tf2_msgs has no PyPI wheel and the node publishes /tf with it, and
# `composition_interfaces` (launch_ros imports it; no PyPI wheel) when its source is given.
#
# Usage: bash scripts/build_ros_msgs.sh VENV_DIR
#   SCENESQUEEZER_MSGS_FORCE=1   rebuild even when the stamp says the build is current
#   SCENESQUEEZER_MSGS_BUILD_DIR where to keep the CMake build trees (default: a temporary folder)
#   SCENESQUEEZER_COMPOSITION_INTERFACES_SRC  composition_interfaces source folder to build too
#                                (scripts/setup_env.sh: ../shared/ros2-launch/src/composition_interfaces)
#
# Idempotent: a stamp in VENV/share/scenesqueezer/ records a hash of everything the build reads;
# an unchanged tree whose messages still import is skipped in well under a second.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 VENV_DIR   (a venv with requirements.txt installed, e.g. .venv)" >&2
  exit 2
fi

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="$(cd "$1" 2>/dev/null && pwd)" || {
  echo "error: venv folder '$1' does not exist; create it first (python3.11 -m venv $1)" >&2
  exit 2
}
PYTHON="$VENV_DIR/bin/python"
if [[ ! -x "$PYTHON" ]]; then
  echo "error: $PYTHON not found; '$1' is not a Python venv" >&2
  exit 2
fi

STAMP_FILE="$VENV_DIR/share/scenesqueezer/.scenesqueezer_msgs_stamp"
COMPOSITION_SRC="${SCENESQUEEZER_COMPOSITION_INTERFACES_SRC:-}"
if [[ -n "$COMPOSITION_SRC" && ! -f "$COMPOSITION_SRC/package.xml" ]]; then
  echo "error: SCENESQUEEZER_COMPOSITION_INTERFACES_SRC=$COMPOSITION_SRC has no package.xml;" \
       "point it at ros2-launch/src/composition_interfaces or unset it" >&2
  exit 2
fi
stamp_inputs=(
  "$REPO_DIR"/msg/*.msg
  "$REPO_DIR/CMakeLists.txt"
  "$REPO_DIR/package.xml"
  "$REPO_DIR/requirements-rosbuild.txt"
  "$REPO_DIR/scripts/build_ros_msgs.sh"
  "$REPO_DIR"/scripts/ros/tf2_msgs/msg/*.msg
  "$REPO_DIR"/scripts/ros/tf2_msgs/CMakeLists.txt
  "$REPO_DIR"/scripts/ros/tf2_msgs/package.xml
)
if [[ -n "$COMPOSITION_SRC" ]]; then
  stamp_inputs+=("$COMPOSITION_SRC/package.xml" "$COMPOSITION_SRC/CMakeLists.txt" "$COMPOSITION_SRC"/srv/*.srv)
fi
wanted_stamp="$(cat "${stamp_inputs[@]}" | sha256sum | cut -d' ' -f1) $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"

imports_ok() {
  SCENESQUEEZER_CHECK_COMPOSITION="${COMPOSITION_SRC:+1}" "$PYTHON" - <<'PY' 2>/dev/null
import importlib
import os
import pathlib
import sys

if os.environ.get("SCENESQUEEZER_CHECK_COMPOSITION"):
    importlib.import_module("composition_interfaces.srv")

repo_msgs = sorted(p.stem for p in pathlib.Path("msg").glob("*.msg"))
msg = importlib.import_module("scenesqueezer.msg")
from tf2_msgs.msg import TFMessage  # noqa: F401
missing = [name for name in repo_msgs if not hasattr(msg, name)]
sys.exit(1 if missing else 0)
PY
}

if [[ "${SCENESQUEEZER_MSGS_FORCE:-0}" != 1 && -f "$STAMP_FILE" ]] \
    && [[ "$(cat "$STAMP_FILE")" == "$wanted_stamp" ]] \
    && (cd "$REPO_DIR" && imports_ok); then
  echo "scenesqueezer messages are up to date in $VENV_DIR (stamp matches); nothing to do"
  exit 0
fi

echo "== installing the ROS 2 build toolchain (requirements-rosbuild.txt)"
"$PYTHON" -m pip install --quiet -r "$REPO_DIR/requirements-rosbuild.txt"

# The wheels' exported CMake targets carry the wheel builder's Python and numpy include folders;
# point them at this interpreter's so that the generated Python extensions compile here.
echo "== rewriting the wheel builder's include paths in $VENV_DIR/share/*/cmake"
py_include="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
np_include="$("$PYTHON" -c 'import numpy; print(numpy.get_include())')"
if [[ ! -f "$py_include/Python.h" ]]; then
  echo "error: Python.h not found in $py_include; install the Python development headers" \
       "(Debian: apt-get install python3.11-dev) and run this script again" >&2
  exit 1
fi
mapfile -t builder_files < <(grep -rl --include='*.cmake' -e '/opt/python/cp311-cp311' \
                               "$VENV_DIR"/share/*/cmake/ 2>/dev/null || true)
for cmake_file in "${builder_files[@]}"; do
  sed -i \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#${np_include}#g" \
    -e "s#/opt/python/cp311-cp311/include/python3.11#${py_include}#g" \
    "$cmake_file"
done
echo "   fixed ${#builder_files[@]} file(s)"

BUILD_ROOT="${SCENESQUEEZER_MSGS_BUILD_DIR:-}"
if [[ -z "$BUILD_ROOT" ]]; then
  BUILD_ROOT="$(mktemp -d -t scenesqueezer-msgs-XXXXXX)"
  trap 'rm -rf "$BUILD_ROOT"' EXIT
fi
mkdir -p "$BUILD_ROOT"

generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
export CMAKE_PREFIX_PATH="$VENV_DIR${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export AMENT_PREFIX_PATH="$VENV_DIR${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export PATH="$VENV_DIR/bin:$PATH"

build_package() {  # source_dir build_name [extra cmake args...]
  local source_dir="$1" build_dir="$BUILD_ROOT/$2"
  shift 2
  echo "== building $(sed -n "s:.*<name>\(.*\)</name>.*:\1:p" "$source_dir/package.xml" | head -n1) -> $VENV_DIR"
  cmake -S "$source_dir" -B "$build_dir" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$VENV_DIR" \
    -DPython3_EXECUTABLE="$PYTHON" \
    -DPython3_FIND_VIRTUALENV=ONLY \
    -DBUILD_TESTING=OFF \
    "$@" >"$build_dir.configure.log" 2>&1 \
    || { cat "$build_dir.configure.log" >&2; echo "error: cmake configure failed (log above)" >&2; exit 1; }
  cmake --build "$build_dir" --parallel "$(nproc)" >"$build_dir.build.log" 2>&1 \
    || { tail -n 60 "$build_dir.build.log" >&2; echo "error: build failed (log above)" >&2; exit 1; }
  cmake --install "$build_dir" >"$build_dir.install.log" 2>&1 \
    || { cat "$build_dir.install.log" >&2; echo "error: install failed (log above)" >&2; exit 1; }
}

mkdir -p "$BUILD_ROOT"
if ! "$PYTHON" -c 'import tf2_msgs.msg' 2>/dev/null \
    || [[ -f "$VENV_DIR/share/tf2_msgs/.scenesqueezer_stand_in" ]]; then
  build_package "$REPO_DIR/scripts/ros/tf2_msgs" tf2_msgs
  touch "$VENV_DIR/share/tf2_msgs/.scenesqueezer_stand_in"
fi
if [[ -n "$COMPOSITION_SRC" ]]; then
  build_package "$COMPOSITION_SRC" composition_interfaces
fi
build_package "$REPO_DIR" scenesqueezer -DSCENESQUEEZER_MSGS_ONLY=ON
# rosidl installs an egg-info named after the ROS package, i.e. the same distribution name as this
# repository's setup.py: `pip install .` would then "uninstall" it by deleting the generated
# scenesqueezer/ message package. Without the egg-info pip never touches the generated files.
rm -rf "$VENV_DIR"/lib/python3*/site-packages/scenesqueezer-*.egg-info

if ! (cd "$REPO_DIR" && imports_ok); then
  echo "error: the messages were built but 'from scenesqueezer.msg import LocalizationResult'" \
       "fails in $VENV_DIR; run: $PYTHON -c 'from scenesqueezer.msg import LocalizationResult'" >&2
  exit 1
fi
mkdir -p "$(dirname "$STAMP_FILE")"
echo "$wanted_stamp" >"$STAMP_FILE"
echo "== done: scenesqueezer and tf2_msgs messages${COMPOSITION_SRC:+ and composition_interfaces} import in $VENV_DIR"
