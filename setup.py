"""pip install . : the Python packages, console scripts, and what launch_ros needs to find them.

launch_ros resolves Node(package="scenesqueezer", executable=E) through the ament index on
AMENT_PREFIX_PATH to <prefix>/lib/scenesqueezer/E; data_files put the index marker, the launch and
config files and small executable wrappers there. `pip install -e` skips data_files: use a normal
install for `ros2 launch`. The custom messages are built by scripts/build_ros_msgs.sh (pip cannot
run rosidl).
"""

from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "scenesqueezer"
HERE = Path(__file__).parent


def files(folder: str, pattern: str = "*") -> list[str]:
    return sorted(str(p.relative_to(HERE)) for p in (HERE / folder).glob(pattern) if p.is_file())


setup(
    name=PACKAGE,
    version="0.1.0",
    description="Compresses 3D maps for camera relocalization; ROS 2 localizer node",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["scenesqueezer_core", "scenesqueezer_core.*",
                                    "scenesqueezer_ros", "scenesqueezer_ros.*"]),
    package_data={"scenesqueezer_core": ["weights/*.safetensors", "weights/*.json", "weights/*.md"]},
    include_package_data=False,
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", files("launch", "*.launch.py")),
        (f"share/{PACKAGE}/config", files("config", "*.yaml")),
        (f"lib/{PACKAGE}", files("scripts/ros/bin")),
    ],
    entry_points={
        "console_scripts": [
            "scenesqueezer = scenesqueezer_ros.cli:main",  # the core CLI + the DDS commands
            "scenesqueezer_localizer_node = scenesqueezer_ros.localizer_node:main",
        ]
    },
    extras_require={"ray": ["ray>=2.40"]},  # compress --executor ray
    zip_safe=False,
)
