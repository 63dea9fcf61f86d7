#!/usr/bin/env python
"""Each pose check's statistic for correct poses, wrong poses and foreign images, real and synthetic.

    python bench/bench_checks.py [--dump outputs/bench/foreign_checks.json ...] [--real-summary
        outputs/bench/real/summary.json] [--png-dir docs/img] [--markdown outputs/bench/checks.md]

Reads the per-localization dump of bench/bench_foreign.py (`--dump`; run with `--checks on off`)
and, optionally, bench/bench_real.py's summary (its checks-off runs: every real set, uncompressed and
compressed; it then replaces bench_foreign's own queries of real maps). Own queries come from the runs with every check off, where each query keeps its pose
whatever the checks say: correct within (0.25 m, 2°), wrong beyond (0.5 m or 5°). Foreign images
come from the checks-on run, whose results carry every check's statistic (the localizer evaluates
all checks, then fails on the first that did not pass): every foreign image whose estimate reached
the checks is a pose the checks must stop. Each check's limit is its default (per query, the limit
in force in the checks-on run, e.g. the reprojection limit scaled by the focal-length ratio). For
results without `checks` (older localizers), the statistics LocalizationResult has (inliers,
inlier ratio, median reprojection error, occluded share) stand in, from checks-off runs only.

Draws one PNG per check (`<png-dir>/check_<name>.png`: the statistic per group, real and synthetic in
different colours, the default limit as a vertical line) and prints a table: per check, how many
correct poses it refuses and how many wrong / foreign poses it stops, with the default limit.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

from common import REPO, SHARED, emit

# Before result.checks: the statistics LocalizationResult carries, with the checks' defaults
FALLBACK_CHECKS = {  # name: (result field, default limit, the statistic must reach the limit)
    "min_inliers": ("num_inliers", 40.0, True),
    "min_inlier_ratio": ("inlier_ratio", 0.2, True),
    "reprojection_error": ("median_reprojection_error_px", 4.0, False),
    "occlusion": ("occluded_inlier_share", 0.15, False),
}
LOG_SCALE = {"min_inliers", "hypothesis_margin", "near_map_frames", "num_inliers"}
GROUPS = [  # (label, role/outcome filter, image kind)
    ("correct own pose, real", "correct", "real"),
    ("correct own pose, synthetic", "correct", "synthetic"),
    ("wrong own pose, real", "wrong", "real"),
    ("wrong own pose, synthetic", "wrong", "synthetic"),
    ("foreign image, real", "foreign", "real"),
    ("foreign image, synthetic", "foreign", "synthetic"),
]
COLOURS = {"real": "#1f77b4", "synthetic": "#ff7f0e"}
MARKERS = {"correct": "o", "wrong": "x", "foreign": "^"}


def check_definitions() -> dict[str, tuple[float, bool]]:
    """{check name: (default limit, is a minimum)} from the localizer's POSE_CHECKS when it has them."""
    try:
        from scenesqueezer_core.localization import DEFAULT_LOCALIZER_CONF, POSE_CHECKS
    except ImportError:
        return {name: (limit, minimum) for name, (_, limit, minimum) in FALLBACK_CHECKS.items()}
    return {check.name: (float(check(DEFAULT_LOCALIZER_CONF).conf_limit), bool(check.is_minimum))
            for check in POSE_CHECKS}


def real_summary_records(path: Path) -> list[dict]:
    """Own-query records of bench_real's checks-off runs (correct / wrong from the ground truth)."""
    from scenesqueezer_core.dataset import load_dataset
    from scenesqueezer_core.evaluate import load_results, result_pose
    from scenesqueezer_core.geometry import pose_error

    records = []
    for run in json.loads(path.read_text()):
        if run["checks"] != "off":
            continue
        truth = load_dataset(SHARED / run["set"], check_images=False)
        on = next((r for r in json.loads(path.read_text()) if r["checks"] == "on" and r["set"] == run["set"]
                   and r["map"] == run["map"]), None)
        on_results = load_results(on["results"])["results"] if on else {}
        for name, entry in load_results(run["results"])["results"].items():
            pose = result_pose(entry)
            outcome = "failed"
            if pose is not None:
                dt, dr = pose_error(pose, truth.frames[name].cam_from_world)
                outcome = "correct" if dt < 0.25 and dr < 2.0 else "wrong" if dt > 0.5 or dr > 5.0 else "between"
            on_checks = on_results.get(name, {}).get("checks")
            records.append({**entry, "map": f"{run['set']} {run['map']}", "image": name, "role": "own",
                            "image_kind": "real", "map_kind": "real", "outcome": outcome, "checks_setting": "off",
                            "on_checks": on_checks, "source": "bench_real"})
    return records


def statistic(record: dict, name: str) -> tuple[float | None, float | None]:
    """(statistic, limit in force in the checks-on run or None) of one check in one record."""
    checks = record.get("checks")
    if checks is not None:
        value = next((c["statistic"] for c in checks if c["name"] == name), None)
    else:
        field = FALLBACK_CHECKS.get(name, (None,))[0]
        value = record.get(field) if field else None
        if name in ("min_inliers", "min_inlier_ratio") and not record.get("num_correspondences"):
            value = None  # no final PnP ran: nothing was measured
    limit = None
    for c in record.get("on_checks") or []:
        if c["name"] == name:
            limit = c["limit"]
    if value is None:
        return None, limit
    value = float(value)  # "inf" (e.g. no conflicting hypothesis) parses to inf
    return (None if math.isnan(value) else value), limit


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dump", nargs="*", default=[str(REPO / "outputs" / "bench" / "foreign_checks.json")])
    parser.add_argument("--real-summary", default=str(REPO / "outputs" / "bench" / "real" / "summary.json"),
                        help="bench_real.py's summary.json (\"\": none)")
    parser.add_argument("--png-dir", default=str(REPO / "docs" / "img"))
    parser.add_argument("--json", default=str(REPO / "outputs" / "bench" / "checks_statistics.json"))
    parser.add_argument("--markdown", default=str(REPO / "outputs" / "bench" / "checks.md"))
    args = parser.parse_args()

    records: list[dict] = []
    for path in args.dump:
        payload = json.loads(Path(path).read_text())
        on = {(r["map"], r["image"]): r for r in payload["records"] if r["checks_setting"] == "on"}
        off = {(r["map"], r["image"]): r for r in payload["records"] if r["checks_setting"] == "off"}
        for key, r in off.items():  # own queries: only a checks-off run tells whether a refused pose was right
            if r["role"] == "own" or r.get("checks") is None:
                records.append({**r, "on_checks": (on.get(key) or {}).get("checks"), "source": "bench_foreign"})
        for key, r in on.items():  # foreign images: the checks-on run measured every check (result.checks)
            if r["role"] == "foreign" and r.get("checks") is not None:
                records.append({**r, "outcome": "foreign", "on_checks": r["checks"], "source": "bench_foreign"})
    if args.real_summary and Path(args.real_summary).exists():
        # bench_real covers every real set's own queries (uncompressed and compressed): bench_foreign's own
        # queries of real maps would count the same localizations twice
        records = [r for r in records if not (r["role"] == "own" and r["map_kind"] == "real")]
        records += real_summary_records(Path(args.real_summary))
    if not records:
        parser.error("no checks-off localizations found: run bench_foreign.py --checks on off (or bench_real.py)")
    definitions = check_definitions()
    with_checks = any(r.get("checks") is not None for r in records)
    names = list(definitions) if with_checks else list(FALLBACK_CHECKS)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    png_dir = Path(args.png_dir)
    png_dir.mkdir(parents=True, exist_ok=True)
    rows = ["| check | limit | correct own poses refused (real / synthetic) | wrong own poses stopped | foreign estimates "
            "stopped (real / synthetic images) | correct: range | foreign: range |", "|" + "---|" * 7]
    stats_out: dict[str, dict] = {}
    rng = np.random.default_rng(0)
    for name in names:
        default_limit, minimum = definitions.get(name, (float("nan"), False))
        values: dict[str, list[tuple[float, float]]] = defaultdict(list)  # group -> (statistic, limit)
        for r in records:
            if r["outcome"] == "foreign_pose":  # a foreign image's pose of a checks-off run
                r = {**r, "outcome": "foreign"}
            if r["outcome"] not in ("correct", "wrong", "foreign"):
                continue
            value, limit = statistic(r, name)
            if value is None:
                continue
            key = f"{r['outcome']}|{r['image_kind']}"
            values[key].append((value, limit if limit is not None and math.isfinite(limit) else default_limit))
        if not any(values.values()):
            continue

        def refused(items):
            return sum(1 for v, lim in items if math.isfinite(lim) and (v < lim if minimum else v > lim))

        def span(items):
            return f"{min(v for v, _ in items):.3g} – {max(v for v, _ in items):.3g}" if items else "-"


        correct = values["correct|real"] + values["correct|synthetic"]
        foreign = values["foreign|real"] + values["foreign|synthetic"]
        wrong = values["wrong|real"] + values["wrong|synthetic"]
        rows.append(f"| {name} | {'≥' if minimum else '≤'} {default_limit:g} "
                    f"| {refused(values['correct|real'])} of {len(values['correct|real'])} / "
                    f"{refused(values['correct|synthetic'])} of {len(values['correct|synthetic'])} "
                    f"| {refused(wrong)} of {len(wrong)} "
                    f"| {refused(values['foreign|real'])} of {len(values['foreign|real'])} / "
                    f"{refused(values['foreign|synthetic'])} of {len(values['foreign|synthetic'])} "
                    f"| {span(correct)} | {span(foreign)} |")
        stats_out[name] = {"limit": default_limit, "is_minimum": minimum,
                           **{k: [v for v, _ in items] for k, items in values.items()}}

        fig, ax = plt.subplots(figsize=(9.5, 4.4), dpi=110)
        labels = []
        for row, (label, outcome, kind) in enumerate(GROUPS):
            items = values.get(f"{outcome}|{kind}", [])
            infinite = sum(1 for v, _ in items if math.isinf(v))
            labels.append(f"{label} ({len(items)}" + (f"; {infinite} at ∞, not drawn)" if infinite else ")"))
            x = np.array([v for v, _ in items if math.isfinite(v)])
            if not len(x):
                continue
            if name in LOG_SCALE:
                x = np.maximum(x, 1e-3)
            y = row + rng.uniform(-0.25, 0.25, len(x))
            ax.scatter(x, y, s=14, alpha=0.6, color=COLOURS[kind], marker=MARKERS[outcome],
                       linewidths=1.0 if outcome == "wrong" else 0.3)
        if math.isfinite(default_limit):
            ax.axvline(default_limit, color="crimson", linestyle="--", linewidth=1.5,
                       label=f"default limit {default_limit:g} (a pose passes when {'≥' if minimum else '≤'})")
            ax.legend(loc="upper right", fontsize=8)
        if name in LOG_SCALE:
            ax.set_xscale("log")
        ax.set_yticks(range(len(GROUPS)))
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_ylim(len(GROUPS) - 0.5, -0.5)
        ax.set_xlabel(f"{name} statistic (own queries: every check off; foreign images: checks on, all measured)",
                      fontsize=8)
        ax.set_title(f"Pose check {name}: correct vs wrong own poses vs foreign images", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        fig.savefig(png_dir / f"check_{name}.png")
        plt.close(fig)
        print(f"wrote {png_dir / f'check_{name}.png'}", flush=True)

    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(stats_out) + "\n")
    sources = sorted({r["source"] for r in records})
    maps = sorted({r["map"] for r in records})
    text = ("## Pose checks: statistic of correct poses, wrong poses and foreign images\n\n"
            f"{len(records)} localizations ({', '.join(sources)}; {len(maps)} maps): own queries with every check "
            "off, foreign images with the checks on (every check measured). "
            + ("Statistics from each result's `checks`." if with_checks else
               "Statistics from LocalizationResult's fields (results carry no `checks` yet).")
            + " Refused / stopped: the statistic is beyond the default limit (the limit of the checks-on run "
              "for that query where there is one).\n\n" + "\n".join(rows) + "\n")
    return emit(text, args.markdown)


if __name__ == "__main__":
    sys.exit(main())
