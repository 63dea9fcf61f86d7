"""The `scenesqueezer` command: the core's command line (scenesqueezer_core.cli) plus the commands
that need DDS, which live here where both layers are visible:

    scenesqueezer replay BAG MAP [--rate R | --as-fast-as-node] [--connect] ...   through the ROS 2 node
    scenesqueezer demo [--workdir DIR]        ends with a replay of the query bag through the node

Every other sub-command (and `replay --offline`) is the core's. Nothing ROS is imported before a
DDS command runs, so `scenesqueezer --help` and the offline commands work without ROS 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scenesqueezer_core import cli as core_cli
from scenesqueezer_core.bag.cli import cmd_replay_offline, print_replay_outcome, replay_inputs


def _cmd_replay(args: argparse.Namespace) -> int:
    if args.offline:
        return cmd_replay_offline(args)
    from .replay import replay_over_dds

    conf, output, topics = replay_inputs(args)
    outcome = replay_over_dds(args.bag, args.map_path, output, rate=args.rate,
                              as_fast_as_node=args.as_fast_as_node or args.rate is None, connect=args.connect,
                              node_name=args.node_name, conf=conf, device=args.device,
                              domain_id=args.domain_id, **topics)
    print_replay_outcome(args, outcome)
    return 0


def _replay_demo_bag(bag: Path, map_path: Path, report_dir: Path) -> dict:
    from .replay import replay_over_dds

    # paced by the node: every query is answered, so the report measures the map, not the machine
    return replay_over_dds(bag, map_path, report_dir, as_fast_as_node=True).metrics


def _cmd_demo(args: argparse.Namespace) -> int:
    from scenesqueezer_core.demo import run_demo

    try:
        import rclpy  # noqa: F401
        from scenesqueezer.msg import LocalizationResult  # noqa: F401
    except ImportError as exc:  # rclpy or the generated messages are missing
        print(f"[demo] ROS 2 is not importable ({exc}): the demo will skip its DDS replay; run `make setup`")
        replay = None
    else:
        replay = _replay_demo_bag
    return run_demo(Path(args.workdir), features=args.features, frames=args.frames, seed=args.seed,
                    replay_over_dds=replay)


HANDLERS = {"replay": _cmd_replay, "demo": _cmd_demo}


def build_parser() -> argparse.ArgumentParser:
    return core_cli.build_parser(HANDLERS)


def main(argv: list[str] | None = None) -> int:
    return core_cli.main(argv, handlers=HANDLERS)


if __name__ == "__main__":
    sys.exit(main())
