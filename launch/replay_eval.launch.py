"""Replay a rosbag2 into the localizer node and write an evaluation report.

ros2 launch scenesqueezer replay_eval.launch.py bag:=/bags/run1 map_path:=/maps/site.sqz \
    image:=/camera/image_raw camera_info:=/camera/camera_info output:=/tmp/run1_report

Starts the node (localize.launch.py) and the evaluator, `scenesqueezer replay --connect`: once the
node has its map and its subscriptions are matched, the evaluator publishes the bag's camera info
and images with their original stamps (no `ros2 bag play` needed), records every ~/result and
~/pose, matches them to the bag's ground-truth poses by stamp and writes metrics.json, summary.md
and the plots into `output`. By default each frame is sent once the node answered the previous
one, so no frame is dropped and the report measures the map, not the machine. The launch ends
when the report is written; a failure (missing bag, a map the node cannot load) ends it with a
non-zero exit code and a one-line reason.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from scenesqueezer_ros.launch_steps import cli_step, end_launch_on_failure, on_success


def _evaluator(context):
    # Resolved here: the pacing argument picks which replay options are passed.
    pace_by_node = LaunchConfiguration("as_fast_as_node").perform(context).strip().lower()
    if pace_by_node not in ("true", "false"):
        raise ValueError(f"as_fast_as_node must be true or false, not {pace_by_node!r}")
    pacing = ["--as-fast-as-node"] if pace_by_node == "true" else ["--rate", LaunchConfiguration("rate")]
    evaluate = cli_step("replay_eval", [
        "replay", LaunchConfiguration("bag"), LaunchConfiguration("map_path"), "--connect", *pacing,
        "--output", LaunchConfiguration("output"), "--image-topic", LaunchConfiguration("image"),
        "--camera-info-topic", LaunchConfiguration("camera_info")])
    return [evaluate, on_success(evaluate, shutdown_reason="replay evaluation finished; report written")]


def generate_launch_description() -> LaunchDescription:
    localize = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution(
            [FindPackageShare("scenesqueezer"), "launch", "localize.launch.py"])),
        launch_arguments={
            "map_path": LaunchConfiguration("map_path"),
            "image": LaunchConfiguration("image"),
            "camera_info": LaunchConfiguration("camera_info"),
            "image_qos": LaunchConfiguration("image_qos"),
            "device": LaunchConfiguration("device"),
        }.items(),
    )
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 folder to replay (images, camera info, ground-truth poses)"),
        DeclareLaunchArgument("map_path", description="map the node localizes against (.ssmap or .sqz)"),
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="the bag's image topic (the node subscribes it)"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info",
                              description="the bag's CameraInfo topic (the node subscribes it)"),
        DeclareLaunchArgument("output", default_value="scenesqueezer_report",
                              description="report folder: metrics.json, summary.md, plots"),
        DeclareLaunchArgument("as_fast_as_node", default_value="true",
                              description="true: send each frame once the node answered the previous one (no frame "
                                          "dropped); false: play at `rate`"),
        DeclareLaunchArgument("rate", default_value="1.0",
                              description="with as_fast_as_node:=false, playback speed factor of the bag's timing; "
                                          "frames the node is too busy for are dropped and count as failures"),
        DeclareLaunchArgument("image_qos", default_value="reliable",
                              description="the node's image subscription QoS: reliable | sensor_data (the "
                                          "evaluator publishes reliably, which both accept)"),
        DeclareLaunchArgument("device", default_value="auto", description="the node's device: auto | cpu | cuda"),
        localize,
        # The evaluator waits for the node itself (map loaded, subscriptions matched): no timer needed.
        OpaqueFunction(function=_evaluator),
        end_launch_on_failure(),  # the evaluator's failure, or the node's
    ])
