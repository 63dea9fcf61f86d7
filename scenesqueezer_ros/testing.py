"""Helpers for tests that talk to the node over real DDS (used by test/test_ros_*.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def isolate_ros_environment(domain_id: int, log_dir: Path) -> None:
    """Keep this process's DDS traffic and logs apart from other tests (call before rclpy.init)."""
    os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_LOG_DIR"] = str(log_dir)
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")


def create_probe_node(name: str):
    """An rclpy node in its own context (tests and benchmarks talk to the localizer through it)."""
    import rclpy

    context = rclpy.context.Context()
    rclpy.init(context=context)
    return rclpy.create_node(name, context=context)


def destroy_probe_node(node) -> None:
    """Undo create_probe_node: the node, then its context."""
    import rclpy

    context = node.context
    node.destroy_node()
    rclpy.shutdown(context=context)


def start_node(ros_args: list[str], log_path: Path, extra_env: dict | None = None) -> subprocess.Popen:
    """The localizer node as a subprocess with this process's ROS environment."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "1")
    env.update(extra_env or {})
    log = open(log_path, "wb")  # noqa: SIM115 - closed by stop_node via the Popen
    return subprocess.Popen(
        [sys.executable, "-m", "scenesqueezer_ros.localizer_node", "--ros-args", *ros_args],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO_ROOT))


def stop_node(process: subprocess.Popen, timeout: float = 10.0) -> None:
    # SIGINT, not SIGTERM: pycolmap's glog handler dumps a stack trace on SIGTERM.
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def spin_until(node, condition: Callable[[], bool], timeout: float) -> bool:
    """Spin ``node`` (in its own context) until ``condition()`` holds; False after ``timeout`` seconds."""
    import rclpy

    executor = rclpy.executors.SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            executor.spin_once(timeout_sec=0.05)
        return True
    finally:
        executor.remove_node(node)
        executor.shutdown()  # before the context goes: a collected executor would touch it
