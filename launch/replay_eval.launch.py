"""Replay a rosbag2 into the localizer node and write an evaluation report.

ros2 launch scenesqueezer replay_eval.launch.py bag:=/bags/run1 map_path:=/maps/site.sqz \
    image:=/camera/image_raw camera_info:=/camera/camera_info output:=/tmp/run1_report rate:=0.5

The evaluator (`scenesqueezer replay --connect`) publishes the bag's images and camera info with their
original stamps into the running node (so no `ros2 bag play` is needed), records every ~/result and
~/pose, matches them to the bag's ground-truth poses by stamp and writes metrics.json, summary.md and
the plots into `output`. The image/camera_info arguments must name the bag's topics.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, ExecuteProcess, IncludeLaunchDescription, \
    RegisterEventHandler, TimerAction
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    localize = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution(
            [FindPackageShare("scenesqueezer"), "launch", "localize.launch.py"])),
        launch_arguments={
            "map_path": LaunchConfiguration("map_path"),
            "image": LaunchConfiguration("image"),
            "camera_info": LaunchConfiguration("camera_info"),
            # Bags replay reliably; reliable QoS keeps multi-MB frames intact.
            "image_qos": "reliable",
        }.items(),
    )
    evaluate = ExecuteProcess(
        cmd=["scenesqueezer", "replay", LaunchConfiguration("bag"), LaunchConfiguration("map_path"),
             "--connect", "--rate", LaunchConfiguration("rate"), "--output", LaunchConfiguration("output"),
             "--image-topic", LaunchConfiguration("image"), "--camera-info-topic", LaunchConfiguration("camera_info")],
        name="scenesqueezer_replay_eval", output="screen")
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 folder to replay (images, camera info, ground-truth poses)"),
        DeclareLaunchArgument("map_path", description="SceneMap or CompressedMap file"),
        DeclareLaunchArgument("image", default_value="/camera/image_raw", description="the bag's image topic"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info", description="the bag's CameraInfo topic"),
        DeclareLaunchArgument("output", default_value="scenesqueezer_report", description="report folder"),
        DeclareLaunchArgument("rate", default_value="0.5",
                              description="playback rate; below 1 leaves the CPU localizer time per frame"),
        localize,
        # Give the node time to load its map before the first frame arrives.
        TimerAction(period=5.0, actions=[evaluate]),
        # The launch ends when the evaluation has written its report.
        RegisterEventHandler(OnProcessExit(target_action=evaluate, on_exit=[EmitEvent(event=Shutdown())])),
    ])
