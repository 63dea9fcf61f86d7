#!/usr/bin/env python
"""Real-data benchmark: every real set of ../shared/data, uncompressed and compressed, checks on and off.

    python bench/bench_real.py [--sets strecha_fountain_p11 kitti06_51 ...] [--features xfeat]
        [--ratios 0.05 0.1 0.2] [--method qp] [--no-checks-off] [--recompress] [--map-cache DIR]
        [--out outputs/bench/real] [--markdown outputs/bench/real.md]

For each real set (a folder of ../shared/data, or $SCENESQUEEZER_SHARED_DATA, with splits.json
holding `mapping` and `query`; read in place, never copied) the map is built from `mapping` and the
`query` split is localized against the uncompressed SceneMap and against compressed maps (QP at each
`--ratios`), with the default localizer settings and again with every pose check off
(`checks_disabled_conf()`). Per set and map it prints: localized, recall
at the four thresholds of evaluate.py, median translation / rotation error over the localized
queries, median seconds per query, map bytes (and % of the uncompressed map), and a histogram of
the failure reasons (`failure_code` when results carry one, else the kind of `failure_reason`).

Built maps are cached under --out (`<set>_<features>.ssmap`, `<set>_<features>_<method>_<ratio>.sqz`)
and reused when present; `--map-cache DIR` also reuses `DIR/<set>_<features>.ssmap` or
`DIR/<set>.ssmap` (checked to be a map of --features). A cached compressed map older than its source
map is rebuilt; `--recompress` rebuilds them all (needed after a change to compression itself). Every run's RESULTS.json goes to
`--out/results/` (bench_checks.py reads them).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

from common import REPO, SHARED, emit, number_or_na

from scenesqueezer_core.compression.compress import compress_map  # noqa: E402
from scenesqueezer_core.evaluate import THRESHOLDS, evaluate_results, load_results  # noqa: E402
from scenesqueezer_core.evaluate import localize_dataset  # noqa: E402
from scenesqueezer_core.localization import checks_disabled_conf  # noqa: E402
from scenesqueezer_core.mapping import build_map  # noqa: E402
from scenesqueezer_core.maps.mapfile import read_map_file  # noqa: E402


MEDIANS = ("median_translation_m", "median_rotation_deg", "median_seconds_per_query")  # table columns, in order
# failure_reason texts of the localizer -> short names (used only when results carry no failure_code)
_REASON_KINDS = [
    (r"keypoints in the image", "few_keypoints"),
    (r"no retrieved candidate", "no_candidate"),
    (r"^ambiguous", "hypothesis_margin"),
    (r"final RANSAC", "final_pnp"),
    (r"^only \d+ inliers", "min_inliers"),
    (r"^inlier ratio", "inlier_ratio"),
    (r"not finite", "non_finite"),
    (r"does not face", "cheirality"),
    (r"scene depths from the map frames", "distance_to_candidate"),
    (r"median reprojection error", "reprojection_error"),
    (r"hidden behind map points", "occluded_inliers"),
]


def checks_off_conf() -> dict:
    """Every pose check off (the localizer's own switch)."""
    return dict(checks_disabled_conf())


def failure_kind(entry: dict) -> str | None:
    """Short name of why a result failed (None for a success)."""
    if entry.get("success"):
        return None
    code = entry.get("failure_code")
    if code not in (None, "", "none"):
        return str(code)
    reason = entry.get("failure_reason", "")
    for pattern, kind in _REASON_KINDS:
        if re.search(pattern, reason):
            return kind
    words = re.sub(r"[\d.%]+", "", reason).split()
    return "_".join(words[:3]) or "unknown"


def discover_sets(root: Path) -> list[str]:
    """Real sets of the shared data folder: folders with images/ and a splits.json of mapping + query."""
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        splits = folder / "splits.json"
        if (folder / "images").is_dir() and splits.exists():
            try:
                keys = json.loads(splits.read_text())
            except json.JSONDecodeError:
                continue
            if keys.get("mapping") and keys.get("query"):
                found.append(folder.name)
    # small sets first: a partial run has something to show early
    return sorted(found, key=lambda name: len(json.loads((root / name / "splits.json").read_text())["query"]))


def scene_map(name: str, features: str, out: Path, map_cache: Path | None) -> Path:
    """The uncompressed map of a set: from --map-cache, from the --out cache, or built now."""
    candidates = [out / f"{name}_{features}.ssmap"]
    if map_cache is not None:
        candidates = [map_cache / f"{name}_{features}.ssmap", map_cache / f"{name}.ssmap"] + candidates
    for path in candidates:
        if path.exists():
            setup = read_map_file(path, verify=False).meta.get("feature_setup", features)
            if setup != features:
                print(f"  {path} is a {setup} map, not {features}: skipped", flush=True)
                continue
            return path
    path = out / f"{name}_{features}.ssmap"
    t0 = time.perf_counter()
    build_map(SHARED / name, path, features=features, device="cpu")
    print(f"  built {path} in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


def compressed_map(source: Path, name: str, features: str, method: str, ratio: float, out: Path,
                   recompress: bool = False) -> Path:
    """A cached compressed map, rebuilt when missing, older than its source map, or with --recompress."""
    path = out / f"{name}_{features}_{method}_{ratio:g}.sqz"
    if recompress or not path.exists() or path.stat().st_mtime < source.stat().st_mtime:
        t0 = time.perf_counter()
        compress_map(source, path, {"ratio": ratio, "method": method}, executor="serial")
        print(f"  compressed {path.name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=None, help="set folders (default: every real set found)")
    parser.add_argument("--features", default="xfeat")
    parser.add_argument("--ratios", nargs="*", type=float, default=[0.05, 0.1, 0.2],
                        help="compression ratios (QP keep budget per cluster); none: uncompressed only")
    parser.add_argument("--method", default="qp", help="compression method")
    parser.add_argument("--no-checks-off", action="store_true", help="skip the run with every check off")
    parser.add_argument("--recompress", action="store_true",
                        help="rebuild the cached compressed maps (after a change to compression or the .sqz contents)")
    parser.add_argument("--map-cache", default=None, help="folder of prebuilt <set>.ssmap maps to reuse")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(REPO / "outputs" / "bench" / "real"))
    parser.add_argument("--markdown", default=str(REPO / "outputs" / "bench" / "real.md"))
    args = parser.parse_args()
    out = Path(args.out)
    (out / "results").mkdir(parents=True, exist_ok=True)
    available = discover_sets(SHARED)
    sets = args.sets or available
    unknown = [s for s in sets if s not in available]
    if unknown:
        parser.error(f"not real sets of {SHARED}: {unknown}; found {available}")
    if not sets:
        parser.error(f"no real set found in {SHARED} (set SCENESQUEEZER_SHARED_DATA)")
    settings = [("on", None)] + ([] if args.no_checks_off else [("off", checks_off_conf())])

    header = ("| set | map | bytes (% of uncompressed) | localized | R 0.25m/2° | R 0.5m/5° | R 5m/10° | R 0.25m/1° "
              "| median m | median ° | s / query | failures |")
    rows: dict[str, list[str]] = {label: [header, "|" + "---|" * 12] for label, _ in settings}
    summary: list[dict] = []
    t_all = time.perf_counter()
    for name in sets:
        print(f"{name}:", flush=True)
        root = SHARED / name
        source = scene_map(name, args.features, out, Path(args.map_cache) if args.map_cache else None)
        source_bytes = source.stat().st_size
        maps = [("uncompressed", source)]
        for ratio in args.ratios:
            maps.append((f"{args.method} {ratio:g}",
                         compressed_map(source, name, args.features, args.method, ratio, out, args.recompress)))
        for map_label, map_path in maps:
            size = map_path.stat().st_size
            for checks, conf in settings:
                stem = f"{name}__{map_path.stem}__checks_{checks}"
                results_path = out / "results" / f"{stem}.json"
                t0 = time.perf_counter()
                localize_dataset(map_path, root, results_path, split="query", conf=conf, device=args.device,
                                 progress=False)
                wall = time.perf_counter() - t0
                metrics = evaluate_results(results_path, root, split="query")
                entries = load_results(results_path)["results"]
                failures = Counter(k for k in (failure_kind(e) for e in entries.values()) if k)
                failure_text = ", ".join(f"{k} {n}" for k, n in failures.most_common()) or "-"
                recall = metrics["recall"]
                n = metrics["num_queries"]
                row = (f"| {name} | {map_label} | {size / 1e6:.2f} MB ({100 * size / source_bytes:.2f} %) "
                       f"| {metrics['num_localized']} / {n} | "
                       + " | ".join(f"{round(recall[k] * n)} ({100 * recall[k]:.0f} %)" for k in THRESHOLDS)
                       + "".join(f" | {number_or_na(metrics[k])}" for k in MEDIANS) + f" | {failure_text} |")
                rows[checks].append(row)
                print(f"  checks {checks:3s} {row}  ({wall:.0f} s)", flush=True)
                summary.append({"set": name, "map": map_label, "map_path": str(map_path), "checks": checks,
                                "bytes": size, "bytes_share": size / source_bytes, "metrics": metrics,
                                "failures": dict(failures), "results": str(results_path), "wall_s": wall})
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    titles = {"on": "default localizer settings (every check on)",
              "off": f"every pose check off ({checks_off_conf()})"}
    sections = [f"### Real data, {titles[checks]}\n\n" + "\n".join(rows[checks]) for checks, _ in settings]
    text = (f"## Real data: {', '.join(sets)} ({args.features}; compressed: {args.method} at ratios "
            f"{', '.join(f'{r:g}' for r in args.ratios) or 'none'})\n\n"
            "Recall counts queries within each threshold over all queries (a failure is a miss); median errors over "
            "the localized ones; failures: why the other queries got no pose.\n\n"
            + "\n\n".join(sections) + f"\n\nTotal {time.perf_counter() - t_all:.0f} s.\n")
    return emit(text, args.markdown)


if __name__ == "__main__":
    sys.exit(main())
