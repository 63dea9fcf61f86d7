"""`scenesqueezer` command line: one sub-command per pipeline stage.

    scenesqueezer generate-scene OUT_DIR [--preset NAME] [--seed N] [--frames N]
    scenesqueezer build-map DATASET_DIR MAP_PATH [--features NAME] [--split mapping]
    scenesqueezer localize MAP_PATH DATASET_DIR --output RESULTS.json [--split query] [--top-k K]
    scenesqueezer evaluate RESULTS.json DATASET_DIR --output METRICS.json
    scenesqueezer compress MAP_PATH OUT.sqz [--ratio 0.015 | --target-size 500KB] [--method qp] [--codes dsq|pq32|pq16|pq8] [--no-colors]
    scenesqueezer train-quantizer ...
    scenesqueezer export-bag DATASET_DIR BAG_OUT [--split query] [--storage mcap|sqlite3] [--compressed]
    scenesqueezer replay BAG MAP [--rate R | --as-fast-as-node] [--offline | --connect] [--output REPORT_DIR]
    scenesqueezer demo [--workdir DIR]

This module has every command that needs no DDS (`python -m scenesqueezer_core.cli`, replay with
--offline); the `scenesqueezer` console script is scenesqueezer_ros.cli, which adds the replay
through the ROS 2 node. Every user-facing failure prints one line naming the cause and the fix and
exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from .cli_options import ArgumentParser, add_localizer_options, localizer_conf_from_args


def _quiet_native_logs() -> None:
    # pycolmap logs every triangulation step through glog; users want our summary, not that.
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        import pycolmap

        pycolmap.logging.minloglevel = 2
    except (ImportError, AttributeError):
        pass


def _cmd_generate_scene(args: argparse.Namespace) -> int:
    from .synthetic import generate_scene

    out = generate_scene(args.out_dir, preset=args.preset, seed=args.seed, num_frames=args.frames,
                         width=args.width, height=args.height)
    print(f"wrote synthetic scene to {out}")
    return 0


def _cmd_build_map(args: argparse.Namespace) -> int:
    from .mapping import build_map
    from .maps.scene_map import SceneMap

    path = build_map(args.dataset, args.map_path, features=args.features, split=args.split, device=args.device)
    scene_map = SceneMap.load(path)
    info = scene_map.info
    print(f"map {path}: {scene_map.num_frames} frames, {scene_map.num_points} points, "
          f"{info.get('num_verified_pairs')} verified pairs of {info.get('num_pairs')}, "
          f"{path.stat().st_size / 1e6:.2f} MB; timings {json.dumps({k: round(v, 2) for k, v in info['timings'].items()})}")
    return 0


def _cmd_localize(args: argparse.Namespace) -> int:
    from .evaluate import localize_dataset

    results = localize_dataset(args.map_path, args.dataset, args.output, split=args.split,
                               conf=localizer_conf_from_args(args), device=args.device)
    ok = sum(r.success for r in results.values())
    print(f"localized {ok} / {len(results)} queries; results in {args.output}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .atomic import atomic_write_text
    from .evaluate import evaluate_results, format_metrics_table

    metrics = evaluate_results(args.results, args.dataset, split=args.split)
    if args.output:
        atomic_write_text(args.output, json.dumps(metrics, indent=1) + "\n")
    print(format_metrics_table(metrics, title=f"evaluation of {args.results}"))
    return 0


def _cmd_compress(args: argparse.Namespace) -> int:
    from .compression.compress import compress_map_cli

    return compress_map_cli(args)


def _cmd_train_quantizer(args: argparse.Namespace) -> int:
    from .compression.train_quantizer import main as train_quantizer_main

    return train_quantizer_main(args.args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(args.workdir), features=args.features, frames=args.frames, seed=args.seed)


def build_parser(handlers: Mapping[str, Callable[[argparse.Namespace], int]] | None = None) -> argparse.ArgumentParser:
    """The `scenesqueezer` parser. ``handlers`` replaces the function of named sub-commands: the ROS
    entry point (scenesqueezer_ros.cli) runs `replay` and `demo` through the node over DDS that way,
    so that the core never imports the ROS layer."""
    parser = ArgumentParser(prog="scenesqueezer", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    p = sub.add_parser("generate-scene", help="render a synthetic scene with ground-truth poses")
    p.add_argument("out_dir", help="folder to write (images/, sparse/, splits.json)")
    p.add_argument("--preset", default="street", help="street | courtyard")
    p.add_argument("--seed", type=int, default=0, help="random seed of the scene and its trajectories")
    p.add_argument("--frames", type=int, default=200, help="number of mapping frames")
    p.add_argument("--width", type=int, default=640, help="image width, pixels")
    p.add_argument("--height", type=int, default=480, help="image height, pixels")
    p.set_defaults(func=_cmd_generate_scene)

    p = sub.add_parser("build-map", help="features + triangulation from known poses -> SceneMap")
    p.add_argument("dataset", help="dataset folder (images/, sparse/, splits.json; images/ only: SfM poses) or a rosbag2")
    p.add_argument("map_path", help="SceneMap file to write (.ssmap)")
    p.add_argument("--features", default="xfeat", help="feature setup: xfeat | xfeat-lighterglue | aliked | sift")
    p.add_argument("--split", default="mapping", help="split of splits.json whose images build the map")
    p.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda")
    p.set_defaults(func=_cmd_build_map)

    p = sub.add_parser("localize", help="localize a dataset split against a map (.ssmap or .sqz)")
    p.add_argument("map_path", help="SceneMap (.ssmap) or CompressedMap (.sqz)")
    p.add_argument("dataset", help="dataset folder (images/, sparse/ for the cameras, splits.json)")
    p.add_argument("--output", required=True, help="RESULTS.json to write (one pose or failure per image)")
    p.add_argument("--split", default="query", help="split of splits.json to localize")
    add_localizer_options(p)
    p.set_defaults(func=_cmd_localize)

    p = sub.add_parser("evaluate", help="recall / median errors of RESULTS.json against ground truth")
    p.add_argument("results", help="RESULTS.json from `scenesqueezer localize`")
    p.add_argument("dataset", help="dataset folder with the ground-truth poses")
    p.add_argument("--output", help="METRICS.json to write (default: print the table only)")
    p.add_argument("--split", default=None, help="evaluate this split (default: every image in RESULTS.json)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("compress", help="compress a SceneMap into a CompressedMap (.sqz)")
    p.add_argument("map_path", help="SceneMap to compress (.ssmap)")
    p.add_argument("output", help="CompressedMap file to write (.sqz)")
    p.add_argument("--ratio", type=float, default=0.015, help="fraction of each cluster's points to keep")
    p.add_argument("--method", default="qp", help="qp | learned | random | kc | kcp")
    p.add_argument("--target-size", default=None,
                   help="file size to fit, e.g. 500KB or 1.5MB (KB = 1000 B, KiB = 1024 B): chooses the ratio and, "
                        "unless --codes is given, the descriptor codes, and prints the choice (default: none, --ratio decides)")
    p.add_argument("--codes", default=None,
                   help="descriptor codes: dsq (8-bit, 64 B per XFeat point; the default) | pq32 | pq16 | pq8 "
                        "(product quantization, 32 / 16 / 8 B)")
    p.add_argument("--no-colors", action="store_true", help="store no point colours (3 B per point; only the ROS "
                                                            "point cloud shows them)")
    p.add_argument("--workers", type=int, default=None, help="process-pool size (default: CPU count)")
    p.add_argument("--executor", default="process", help="serial | process | ray (optional extra)")
    p.add_argument("--address", default=None, help="Ray cluster address with --executor ray (default: start a local Ray)")
    p.add_argument("--seed", type=int, default=0, help="random seed of clustering and random selection")
    p.set_defaults(func=_cmd_compress)

    p = sub.add_parser("train-quantizer", add_help=False,
                       help="train a DSQ descriptor quantizer (see `scenesqueezer train-quantizer --help`)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the trainer's own options")
    p.set_defaults(func=_cmd_train_quantizer)

    from .bag.cli import add_bag_commands
    from .learned.train import add_train_command

    add_bag_commands(sub)
    add_train_command(sub)

    p = sub.add_parser("demo", help="default scene -> map -> compressed map -> localize, evaluate; then a DDS "
                                    "replay through the ROS 2 node (with the `scenesqueezer` command)")
    p.add_argument("--workdir", default="outputs/demo", help="folder for every output (reused parts are kept)")
    p.add_argument("--features", default="xfeat", help="feature setup: xfeat | xfeat-lighterglue | aliked | sift")
    p.add_argument("--frames", type=int, default=200, help="mapping frames of the synthetic street")
    p.add_argument("--seed", type=int, default=0, help="random seed of the synthetic street")
    p.set_defaults(func=_cmd_demo)

    for name, handler in (handlers or {}).items():
        sub.choices[name].set_defaults(func=handler)
    return parser


def main(argv: list[str] | None = None,
         handlers: Mapping[str, Callable[[argparse.Namespace], int]] | None = None) -> int:
    from .errors import SceneSqueezerError

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(handlers)
    if argv[:1] == ["train-quantizer"]:
        # the quantizer trainer owns its options; argparse's REMAINDER would swallow `--help`
        args = argparse.Namespace(command="train-quantizer", args=argv[1:], verbose=False, func=_cmd_train_quantizer)
    else:
        args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _quiet_native_logs()
    try:
        return int(args.func(args) or 0)
    except SceneSqueezerError as exc:
        print(f"scenesqueezer {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"scenesqueezer {args.command}: interrupted; no partial output was kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
