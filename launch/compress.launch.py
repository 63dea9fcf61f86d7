"""Build a map from a dataset and compress it, from launch arguments.

ros2 launch scenesqueezer compress.launch.py dataset:=/data/strecha/fountain \
    map:=/maps/fountain.ssmap compressed_map:=/maps/fountain.sqz features:=xfeat
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration


def generate_launch_description() -> LaunchDescription:
    dataset = LaunchConfiguration("dataset")
    scene_map = LaunchConfiguration("map")
    compressed = LaunchConfiguration("compressed_map")
    build = ExecuteProcess(
        cmd=["scenesqueezer", "build-map", dataset, scene_map,
             "--features", LaunchConfiguration("features")],
        name="build_map", output="screen")
    compress = ExecuteProcess(
        cmd=["scenesqueezer", "compress", scene_map, compressed,
             "--ratio", LaunchConfiguration("ratio")],
        name="compress", output="screen")
    return LaunchDescription([
        DeclareLaunchArgument("dataset", description="dataset folder (COLMAP text model + splits.json)"),
        DeclareLaunchArgument("map", description="uncompressed map file to write"),
        DeclareLaunchArgument("compressed_map", description="compressed map file to write"),
        DeclareLaunchArgument("features", default_value="xfeat", description="xfeat | xfeat-lighterglue | aliked | sift"),
        DeclareLaunchArgument("ratio", default_value="0.015", description="fraction of each cluster's points kept"),
        build,
        # Compress only after the map was built successfully.
        RegisterEventHandler(OnProcessExit(
            target_action=build,
            on_exit=lambda event, context: [compress] if event.returncode == 0 else [])),
    ])
