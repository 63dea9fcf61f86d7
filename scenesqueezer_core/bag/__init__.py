"""Rosbag2 input and output: export a dataset split to a bag, turn a bag into a dataset, message conversions.

Pure Python (rosbags), no ROS install needed. This is the low layer that map building reads bags
with; replaying a bag through the localizer and its report live in ``scenesqueezer_core.replay``,
the DDS replay in ``scenesqueezer_ros.replay``.
"""

from .export import BagTopics, export_bag, is_bag
from .read import BagImport, bag_to_dataset, scan_bag

__all__ = ["BagImport", "BagTopics", "bag_to_dataset", "export_bag", "is_bag", "scan_bag"]
