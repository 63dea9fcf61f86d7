"""The `scenesqueezer` command line: documented options, the core/ROS split of its commands."""

import argparse
import ast

from scenesqueezer_core import cli as core_cli
from scenesqueezer_ros import cli as ros_cli
from scenesqueezer_ros.testing import REPO_ROOT


def _sub_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_sub_command_documents_each_argument_and_its_default():
    undocumented = []
    for name, parser in _sub_parsers(ros_cli.build_parser()).items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                continue
            label = f"{name} {'/'.join(action.option_strings) or action.dest}"
            if not action.help:
                undocumented.append(f"{label}: no help")
            elif action.option_strings and action.nargs != 0 and not action.required:
                # what `--help` prints: the formatter appends the default, or the text names it
                if "default" not in formatter._get_help_string(action):
                    undocumented.append(f"{label}: default not stated")
    assert not undocumented, undocumented


def test_help_shows_the_values_of_defaults():
    text = " ".join(_sub_parsers(ros_cli.build_parser())["compress"].format_help().split())  # unwrapped
    assert "(default: 0.015)" in text and "(default: 0)" in text


def test_core_cli_refuses_replay_over_dds_naming_the_ros_command(capsys):
    assert core_cli.main(["replay", "no_bag", "no_map.sqz"]) == 2
    error = capsys.readouterr().err
    assert "scenesqueezer_ros.cli" in error and "--offline" in error


def test_ros_cli_runs_replay_and_demo_core_cli_the_rest():
    ros_parsers, core_parsers = _sub_parsers(ros_cli.build_parser()), _sub_parsers(core_cli.build_parser())
    assert set(ros_parsers) == set(core_parsers)
    for name, parser in ros_parsers.items():
        ros_func, core_func = parser.get_default("func"), core_parsers[name].get_default("func")
        assert (ros_func is not core_func) == (name in ("replay", "demo")), name


def test_core_never_imports_scenesqueezer_ros():
    """Counting imports inside functions too: the ROS layer sits above the core."""
    offenders = []
    for path in sorted((REPO_ROOT / "scenesqueezer_core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            offenders += [f"{path.relative_to(REPO_ROOT)}:{node.lineno} {name}" for name in names
                          if name.split(".")[0] == "scenesqueezer_ros"]
    assert not offenders, offenders
