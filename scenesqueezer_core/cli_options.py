"""Argparse pieces shared by the `scenesqueezer` sub-commands (core and ROS entry points)."""

from __future__ import annotations

import argparse

from .localization import read_conf_file


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to an option's help, unless the help already says what the default is
    or there is none to show (a flag, or None whose meaning the help explains)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        # identity, not ==: a default of 0 is shown, a flag's False is not
        if ("default" in text or action.required
                or any(action.default is nothing for nothing in (None, False, argparse.SUPPRESS))):
            return text
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose sub-parsers show option defaults (HelpFormatter) unless told otherwise."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def add_localizer_options(p: argparse.ArgumentParser) -> None:
    """The localizer settings a command line can override (localize, replay)."""
    p.add_argument("--conf", metavar="FILE.yaml", default=None,
                   help="localizer settings for a site: the node's parameter file (config/localizer.yaml: "
                        "every localizer option and pose check threshold; its node options are ignored here) or a "
                        "flat 'option: value' YAML; unknown keys are an error (default: the localizer's defaults)")
    # None: the localizer's own default, kept in one place (the core's localizer conf, mirrored in
    # config/localizer.yaml), not repeated here.
    p.add_argument("--top-k", type=int, default=None,
                   help="map clusters retrieved per query (default: the localizer's, top_k in config/localizer.yaml)")
    p.add_argument("--min-inliers", type=int, default=None,
                   help="fewer PnP inliers make a failure (default: the localizer's, min_inliers in "
                        "config/localizer.yaml)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda")


def localizer_conf_from_args(args: argparse.Namespace) -> dict:
    """The localizer conf overrides given by add_localizer_options' options (unset ones left out).

    --conf FILE gives every option (defaults filled in); --top-k / --min-inliers override it.
    """
    conf = read_conf_file(args.conf) if args.conf else {}
    if args.top_k is not None:
        conf["top_k"] = args.top_k
    if args.min_inliers is not None:
        conf["min_inliers"] = args.min_inliers
    return conf
