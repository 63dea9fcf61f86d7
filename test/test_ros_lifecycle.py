"""The localizer as a lifecycle node over real DDS: with autostart false it waits unconfigured; the
lifecycle_msgs transitions bring it up (configure: map, publishers; activate: subscriptions) and
down again."""


import pytest

from scenesqueezer_ros.testing import (
    create_probe_node,
    destroy_probe_node,
    isolate_ros_environment,
    spin_until,
    start_node,
    stop_node,
)

DOMAIN_ID = 63
NODE = "/scenesqueezer_localizer"


@pytest.fixture(scope="module")
def ros(tmp_path_factory):
    isolate_ros_environment(DOMAIN_ID, tmp_path_factory.mktemp("ros_log"))
    node = create_probe_node("test_ros_lifecycle_probe")
    yield node
    destroy_probe_node(node)


def _call(node, service_type, name, request, timeout: float = 60.0):
    client = node.create_client(service_type, name)
    try:
        assert client.wait_for_service(timeout_sec=timeout), f"service {name} did not appear"
        future = client.call_async(request)
        assert spin_until(node, future.done, timeout), f"no answer from {name}"
        return future.result()
    finally:
        node.destroy_client(client)


def _state(node) -> str:
    from lifecycle_msgs.srv import GetState

    return _call(node, GetState, f"{NODE}/get_state", GetState.Request()).current_state.label


def _transition(node, transition_id: int) -> bool:
    from lifecycle_msgs.srv import ChangeState

    request = ChangeState.Request()
    request.transition.id = transition_id
    return _call(node, ChangeState, f"{NODE}/change_state", request).success


def test_lifecycle_transitions_without_autostart(ros, small_street_map, tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from lifecycle_msgs.msg import Transition

    statuses = []
    ros.create_subscription(DiagnosticArray, "/diagnostics", lambda m: statuses.extend(m.status), 10)

    def has_endpoint(kind: str, topic: str) -> bool:
        names = ros.get_publisher_names_and_types_by_node if kind == "pub" else ros.get_subscriber_names_and_types_by_node
        try:
            return topic in dict(names("scenesqueezer_localizer", "/"))
        except Exception:  # noqa: BLE001 - the node is not discovered yet
            return False

    process = start_node(["-p", "autostart:=false", "-p", f"map_path:={small_street_map}", "-p", "device:=cpu",
                          "-p", "publish_point_cloud:=false"], tmp_path / "node.log")
    try:
        assert _state(ros) == "unconfigured"
        assert not has_endpoint("pub", f"{NODE}/result") and not has_endpoint("sub", "/image_raw")

        assert _transition(ros, Transition.TRANSITION_CONFIGURE)
        assert _state(ros) == "inactive"
        # configured: publishers up and the map loaded (diagnostics say so), but nothing subscribed
        assert spin_until(ros, lambda: has_endpoint("pub", f"{NODE}/result"), 30)
        assert spin_until(ros, lambda: any("waiting for CameraInfo" in s.message for s in statuses), 30), \
            [s.message for s in statuses]
        assert all(s.level != DiagnosticStatus.ERROR for s in statuses)
        assert not has_endpoint("sub", "/image_raw")

        assert _transition(ros, Transition.TRANSITION_ACTIVATE)
        assert _state(ros) == "active"
        assert spin_until(ros, lambda: has_endpoint("sub", "/image_raw") and has_endpoint("sub", "/camera_info"), 30)

        assert _transition(ros, Transition.TRANSITION_DEACTIVATE)
        assert spin_until(ros, lambda: not has_endpoint("sub", "/image_raw"), 30)
        assert _transition(ros, Transition.TRANSITION_CLEANUP)
        assert _state(ros) == "unconfigured"
        assert spin_until(ros, lambda: not has_endpoint("pub", f"{NODE}/result"), 30)
        # and up again: configure loads the map once more
        statuses.clear()
        assert _transition(ros, Transition.TRANSITION_CONFIGURE)
        assert spin_until(ros, lambda: any("waiting for CameraInfo" in s.message for s in statuses), 30)
    finally:
        stop_node(process)
    assert process.returncode == 0, (tmp_path / "node.log").read_text()
