"""Steps of the launch files (launch/*.launch.py): the package's `scenesqueezer` command as a launch
process, and what happens when one exits.

The command is resolved through the package (``<prefix>/lib/scenesqueezer/scenesqueezer`` of the ament
index), not through PATH, so that a colcon install and a venv that is not on PATH both work.
ros2 launch exits non-zero only when an exception reaches its event loop (launch.LaunchService.run);
a failed step therefore raises ``StepFailed``, whose message is the one-line reason it logs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from launch.actions import EmitEvent, ExecuteProcess, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch_ros.substitutions import ExecutableInPackage

PACKAGE = "scenesqueezer"


class StepFailed(RuntimeError):
    """A launch step exited with a non-zero status; ends the launch with exit code 1."""


def cli_step(name: str, arguments: list) -> ExecuteProcess:
    """`scenesqueezer ARGUMENTS...` of this package as a launch process named ``name``."""
    return ExecuteProcess(cmd=[ExecutableInPackage(executable="scenesqueezer", package=PACKAGE), *arguments],
                          name=name, output="screen")


def on_success(step: ExecuteProcess, then: Iterable = (), shutdown_reason: str | None = None) -> RegisterEventHandler:
    """When ``step`` exits with status 0: the actions ``then``, and the end of the launch with
    ``shutdown_reason`` when given. (A failure is end_launch_on_failure's.)"""
    def handle(event, context):
        if event.returncode != 0:
            return None
        actions = list(then)
        if shutdown_reason is not None:
            actions.append(EmitEvent(event=Shutdown(reason=shutdown_reason)))
        return actions

    return RegisterEventHandler(OnProcessExit(target_action=step, on_exit=handle))


def end_launch_on_failure() -> RegisterEventHandler:
    """Any process of the launch (a step, or a node) that exits non-zero while the launch runs ends it
    with exit code 1 and a one-line reason; exits during the launch's own shutdown do not count."""
    def handle(event, context):
        if event.returncode != 0 and not context.is_shutdown:
            # e.g. "scenesqueezer build-map": the program and its first argument
            what = " ".join([os.path.basename(event.cmd[0]), *event.cmd[1:2]])
            raise StepFailed(f"`{what}` failed (exit code {event.returncode}; its error is above): launch stopped")
        return None

    return RegisterEventHandler(OnProcessExit(on_exit=handle))
