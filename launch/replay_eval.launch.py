"""Replay a rosbag2 into the localizer node and record its poses for evaluation.

ros2 launch scenesqueezer replay_eval.launch.py bag:=/bags/run1 map_path:=/maps/site.sqz \
    image:=/camera/image_raw camera_info:=/camera/camera_info output:=/tmp/run1_poses
Then: scenesqueezer evaluate ... (compares the recorded ~/result against ground truth).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, TimerAction
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
    record = ExecuteProcess(
        cmd=["ros2", "bag", "record", "-o", LaunchConfiguration("output"),
             "/scenesqueezer_localizer/result", "/scenesqueezer_localizer/pose"],
        name="record_results", output="screen")
    play = ExecuteProcess(
        cmd=["ros2", "bag", "play", LaunchConfiguration("bag"), "--rate", LaunchConfiguration("rate")],
        name="play_bag", output="screen")
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 folder to replay"),
        DeclareLaunchArgument("map_path", description="SceneMap or CompressedMap file"),
        DeclareLaunchArgument("image", default_value="/camera/image_raw"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info"),
        DeclareLaunchArgument("output", default_value="scenesqueezer_results",
                              description="rosbag2 folder for the node's results"),
        DeclareLaunchArgument("rate", default_value="0.5",
                              description="playback rate; below 1 leaves the CPU localizer time per frame"),
        localize,
        record,
        # Give the node time to load its map before the first frame arrives.
        TimerAction(period=5.0, actions=[play]),
    ])
