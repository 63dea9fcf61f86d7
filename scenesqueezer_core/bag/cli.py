"""Bag sub-commands of ``scenesqueezer`` (registered by ``add_bag_commands`` from the main CLI).

    scenesqueezer export-bag DATASET_DIR BAG_OUT [--split query] [--storage mcap|sqlite3] [--compressed] [--rate HZ] [--rig]
    scenesqueezer bag-to-dataset BAG OUT_DIR [--image-topic T] [--pose-topic T | --tf-frames MAP CAMERA]
    scenesqueezer replay BAG MAP [--rate R | --as-fast-as-node] [--output REPORT_DIR] [--offline | --connect]

`replay` without --offline runs through the ROS 2 node: scenesqueezer_ros.cli registers that handler.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli_options import add_localizer_options, localizer_conf_from_args
from ..errors import ConfigError


def _cmd_export_bag(args: argparse.Namespace) -> int:
    from .export import export_bag

    path = export_bag(args.dataset, args.bag_out, split=args.split, storage=args.storage,
                      compressed=args.compressed, rate_hz=args.rate, encoding=args.encoding,
                      overwrite=args.overwrite, rig=args.rig)
    print(f"wrote {args.storage} bag {path} ({'rig frames of ' if args.rig else ''}split {args.split!r} "
          f"at {args.rate:g} Hz)")
    return 0


def _cmd_bag_to_dataset(args: argparse.Namespace) -> int:
    from .read import bag_to_dataset

    result = bag_to_dataset(args.bag, args.out_dir, image_topic=args.image_topic,
                            camera_info_topic=args.camera_info_topic, pose_topic=args.pose_topic,
                            tf_frames=tuple(args.tf_frames) if args.tf_frames else None,
                            min_translation=args.min_translation, min_rotation_deg=args.min_rotation_deg,
                            sync_tolerance_s=args.sync_tolerance)
    dropped = ", ".join(f"{n} {reason}" for reason, n in result.dropped.items()) or "none dropped"
    print(f"wrote dataset {result.dataset_dir}: {result.num_keyframes} keyframes of {result.num_synced} synchronized "
          f"images ({result.num_images} in the bag; {dropped})")
    return 0


def replay_inputs(args: argparse.Namespace) -> tuple[dict, Path, dict]:
    """The localizer conf overrides, the report folder and the topic options of a `replay` command line."""
    output = Path(args.output or f"replay_{Path(args.bag).resolve().name}")
    topics = dict(image_topic=args.image_topic, camera_info_topic=args.camera_info_topic, pose_topic=args.pose_topic,
                  tf_frames=tuple(args.tf_frames) if args.tf_frames else None)
    return localizer_conf_from_args(args), output, topics


def print_replay_outcome(args: argparse.Namespace, outcome) -> None:
    from ..evaluate import format_metrics_table

    print(format_metrics_table(outcome.metrics, title=f"replay of {args.bag} ({outcome.info['mode']})"))
    print(f"report: {outcome.report_dir / 'summary.md'}")


def cmd_replay_offline(args: argparse.Namespace) -> int:
    """`replay --offline`: the core alone. Replay over DDS is scenesqueezer_ros.cli's handler (the core
    never imports the ROS layer)."""
    if not args.offline:
        raise ConfigError("replay over DDS runs through the ROS 2 node: use the `scenesqueezer` command "
                          "(python -m scenesqueezer_ros.cli), or pass --offline to run the core alone")
    from ..replay.offline import replay_offline

    conf, output, topics = replay_inputs(args)
    outcome = replay_offline(args.bag, args.map_path, output, conf=conf, device=args.device, **topics)
    print_replay_outcome(args, outcome)
    return 0


def _add_topic_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image-topic", default=None, help="image topic (default: the bag's only Image/CompressedImage topic)")
    p.add_argument("--camera-info-topic", default=None, help="CameraInfo topic (default: detected)")
    p.add_argument("--pose-topic", default=None,
                   help="PoseStamped / PoseWithCovarianceStamped / Odometry topic with the camera pose in the map "
                        "(default: the bag's only such topic)")
    p.add_argument("--tf-frames", nargs=2, metavar=("MAP", "CAMERA"), default=None,
                   help="take poses from /tf: the map frame and the camera frame (default: from the pose topic)")


def add_bag_commands(sub) -> None:
    """Register export-bag, bag-to-dataset and replay on the main parser's sub-parsers."""
    p = sub.add_parser("export-bag", help="write a dataset split as a rosbag2 (images, CameraInfo, GT pose, TF)")
    p.add_argument("dataset", help="dataset folder (images/, sparse/, splits.json)")
    p.add_argument("bag_out", help="bag folder to create")
    p.add_argument("--split", default="query", help="split of splits.json to write")
    p.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"), help="rosbag2 storage plugin")
    p.add_argument("--compressed", action="store_true", help="sensor_msgs/CompressedImage (JPEG) instead of raw")
    p.add_argument("--rate", type=float, default=10.0, help="frame rate of the stamps, Hz")
    p.add_argument("--encoding", default="auto", choices=("auto", "rgb8", "bgr8", "mono8"),
                   help="image encoding (auto: mono8 for grey images, e.g. a grey camera's, else rgb8)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bag at BAG_OUT")
    p.add_argument("--rig", action="store_true",
                   help="the split's rig frames (rig.json): every camera on /image_<i>, /camera_info_<i>, "
                        "mountings on /tf_static, the rig base's ground truth (the node's `cameras` mode)")
    p.set_defaults(func=_cmd_export_bag)

    p = sub.add_parser("bag-to-dataset", help="rosbag2 -> dataset folder (synchronized keyframes with poses)")
    p.add_argument("bag", help="rosbag2 folder to read")
    p.add_argument("out_dir", help="dataset folder to write (images/, sparse/, splits.json)")
    _add_topic_options(p)
    p.add_argument("--min-translation", type=float, default=0.1, help="keyframe when moved this far, m")
    p.add_argument("--min-rotation-deg", type=float, default=5.0, help="keyframe when turned this much, deg")
    p.add_argument("--sync-tolerance", type=float, default=0.05, help="max image-pose stamp gap, s")
    p.set_defaults(func=_cmd_bag_to_dataset)

    p = sub.add_parser("replay", help="replay a query bag through the node (DDS) or the core (--offline) and report")
    p.add_argument("bag", help="rosbag2 folder with images, CameraInfo and ground-truth poses")
    p.add_argument("map_path", help="map (.ssmap or .sqz); with --connect only its size is used")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=float, default=None,
                      help="play at this speed factor of the bag's timing; frames the node is too busy for are "
                           "dropped and count as failures (default: pace by the node, as --as-fast-as-node)")
    pace.add_argument("--as-fast-as-node", action="store_true",
                      help="send each frame once the node answered the previous one: no frame dropped (the default)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--offline", action="store_true", help="direct core calls, no DDS")
    mode.add_argument("--connect", action="store_true",
                      help="use a running node (this ROS_DOMAIN_ID, named --node-name) instead of starting one")
    p.add_argument("--output", default=None, help="report folder (default: replay_<bag name>)")
    p.add_argument("--node-name", default="scenesqueezer_localizer", help="name of the localizer node")
    p.add_argument("--domain-id", type=int, default=None,
                   help="ROS_DOMAIN_ID of the private node (default: derived from the process id)")
    # the localizer's settings (a --conf FILE.yaml option belongs beside them)
    add_localizer_options(p)
    _add_topic_options(p)
    p.set_defaults(func=cmd_replay_offline)
