"""Rosbag2 workflows: export a dataset split to a bag, turn a bag into a dataset, replay and report.

Pure Python (rosbags), no ROS install needed; the DDS replay lives in ``scenesqueezer_ros.replay``.
"""

from .export import BagTopics, export_bag, is_bag
from .offline import ReplayOutcome, replay_offline
from .read import BagImport, bag_to_dataset, scan_bag

__all__ = ["BagImport", "BagTopics", "ReplayOutcome", "bag_to_dataset", "export_bag", "is_bag", "replay_offline",
           "scan_bag"]
