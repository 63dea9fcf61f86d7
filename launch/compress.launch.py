"""Build a map from a dataset and compress it, from launch arguments.

ros2 launch scenesqueezer compress.launch.py dataset:=/data/strecha/fountain \
    map:=/maps/fountain.ssmap compressed_map:=/maps/fountain.sqz features:=xfeat [target_size:=500KB]

Runs `scenesqueezer build-map`, then `scenesqueezer compress` once the map was written. A step that
fails ends the launch with a non-zero exit code and a one-line reason (its own error is above it).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration

from scenesqueezer_ros.launch_steps import cli_step, end_launch_on_failure, on_success


def generate_launch_description() -> LaunchDescription:
    dataset = LaunchConfiguration("dataset")
    scene_map = LaunchConfiguration("map")
    compressed = LaunchConfiguration("compressed_map")
    build = cli_step("build_map", ["build-map", dataset, scene_map, "--features", LaunchConfiguration("features")])
    # "--target-size=" + value is one argument; an empty value means "use the ratio"
    compress = cli_step("compress", ["compress", scene_map, compressed, "--ratio", LaunchConfiguration("ratio"),
                                     ["--target-size=", LaunchConfiguration("target_size")]])
    return LaunchDescription([
        DeclareLaunchArgument("dataset", description="dataset folder (images/, sparse/, splits.json) or a rosbag2"),
        DeclareLaunchArgument("map", description="uncompressed map file (.ssmap) to write"),
        DeclareLaunchArgument("compressed_map", description="compressed map file (.sqz) to write"),
        DeclareLaunchArgument("features", default_value="xfeat",
                              description="feature setup: xfeat | xfeat-lighterglue | aliked | sift"),
        DeclareLaunchArgument("ratio", default_value="0.015", description="fraction of each cluster's points kept"),
        DeclareLaunchArgument("target_size", default_value="",
                              description="file size to fit instead of the ratio, e.g. 500KB (chooses ratio and codes)"),
        build,
        on_success(build, then=[compress]),  # compress only a map that was built
        end_launch_on_failure(),
    ])
