"""Run the SceneSqueezer localizer node.

ros2 launch scenesqueezer localize.launch.py map_path:=/maps/site.ssmap image:=/camera/image_raw \
    camera_info:=/camera/camera_info image_transport:=compressed publish_tf:=true

The node is a lifecycle node; with `autostart:=true` (the default) it configures and activates
itself, so this launch brings it up in one step. `autostart:=false` leaves it to a lifecycle manager.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    arguments = [
        DeclareLaunchArgument("map_path", description="SceneMap (.ssmap) or CompressedMap (.sqz) file"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution(
            [FindPackageShare("scenesqueezer"), "config", "localizer.yaml"]),
            description="YAML with the node's parameters"),
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="image topic (+ /compressed with image_transport:=compressed)"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info",
                              description="CameraInfo topic"),
        DeclareLaunchArgument("image_transport", default_value="raw", description="raw | compressed"),
        DeclareLaunchArgument("image_qos", default_value="reliable",
                              description="QoS of the image and camera-info subscriptions: reliable (multi-MB "
                                          "frames between processes) | sensor_data (best effort)"),
        DeclareLaunchArgument("device", default_value="auto", description="auto | cpu | cuda"),
        DeclareLaunchArgument("publish_tf", default_value="false",
                              description="publish the localization on /tf (tf_mode in params_file)"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="configure and activate the lifecycle node at start-up; false: wait "
                                          "for a lifecycle manager"),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
    ]
    node = Node(
        package="scenesqueezer",
        executable="scenesqueezer_localizer_node",
        name="scenesqueezer_localizer",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "map_path": LaunchConfiguration("map_path"),
                "image_transport": LaunchConfiguration("image_transport"),
                "image_qos": LaunchConfiguration("image_qos"),
                "device": LaunchConfiguration("device"),
                "publish_tf": LaunchConfiguration("publish_tf"),
                "autostart": LaunchConfiguration("autostart"),
            },
        ],
        # Topics are remapped rather than set by parameter so that namespacing works as usual.
        remappings=[
            ("image_raw", LaunchConfiguration("image")),
            ("image_raw/compressed", [LaunchConfiguration("image"), "/compressed"]),
            ("camera_info", LaunchConfiguration("camera_info")),
        ],
    )
    return LaunchDescription([*arguments, node])
