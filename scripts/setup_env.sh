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
if [ -f scripts/build_ros_msgs.sh ]; then
  bash scripts/build_ros_msgs.sh "$VENV"
fi
