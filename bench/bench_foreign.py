#!/usr/bin/env python
"""Pose safety benchmark: foreign images must get no pose, true queries should.

    python bench/bench_foreign.py [--maps street:0:24 street:0:200 street:7:120 castle fountain kitti 7scenes]
        [--compressed street:0:200 kitti] [--compressed-ratio 0.2] [--map-files SPEC=PATH ...]
        [--foreign-real castle fountain kitti 7scenes]
        [--real-foreign-max 20] [--checks on off] [--off-foreign] [--set key=value ...] [--map-cache DIR ...]
        [--out outputs/bench/foreign] [--markdown FILE] [--dump outputs/bench/foreign_checks.json]

Each map (synthetic `preset:seed:frames`, or a real set of ../shared/data by short name: castle,
fountain, castle_p19, entry, kitti, 7scenes, or by folder name) is localized against
- its own queries (synthetic `query_day` + `query_night`, real `query`): published poses,
  correct ones (0.25 m, 2 deg) and wrong ones (> 0.5 m or 5 deg off), and
- foreign images, images of another place, where every published pose is a false positive:
  the real sets of `--foreign-real` that show another place (Strecha castle-P30 and fountain-P11: all
  41 photographs; KITTI 06 and 7-Scenes: their `query` split, at most `--real-foreign-max` (20) evenly
  spaced frames each), and the day and night queries (3 + 3) of each of eight synthetic worlds of
  other seeds and presets. So KITTI queries run on the 7-Scenes map and the reverse, Strecha on
  KITTI and the reverse, synthetic images on every real map and real images on every synthetic map.
  The Strecha sets count as one place: fountain-P11 and castle-P30 are photographs of the same
  courtyard (their fountain images localize in the castle map with one consistent rigid transform),
  and castle-P19 shows the same castle as P30, so none is foreign to another.
`--map-files SPEC=PATH ...` checks prebuilt maps too (the size curve's .sqz files: `--maps` with no entry,
`--out` the curve's folder, `--map-files street:1:160=street_seed1_160f_kcp_pq8_0.001.sqz 7scenes=...`).
`--compressed SPEC ...` also runs those maps compressed (QP, `--compressed-ratio`; entries not in
--maps are skipped). `--checks on off` runs the default localizer settings (overridden by `--set
key=value`) and every pose check off (`checks_disabled_conf()`, own queries only unless
`--off-foreign`): the second shows which own poses the checks refuse, right or wrong. Prints one table per setting. `--dump FILE` writes every localization (map, image, own or
foreign, real or synthetic, outcome, errors, and each check's statistic and limit where results
carry `checks`) as JSON, which bench/bench_checks.py plots.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from bench_real import checks_off_conf, failure_kind
from common import REPO, SHARED, emit

from scenesqueezer_core.compression.compress import compress_map  # noqa: E402
from scenesqueezer_core.dataset import load_dataset, read_image  # noqa: E402
from scenesqueezer_core.geometry import pose_error  # noqa: E402
from scenesqueezer_core.localization import Localizer  # noqa: E402
from scenesqueezer_core.mapping import build_map  # noqa: E402
from scenesqueezer_core.synthetic import render_query_images  # noqa: E402

FOREIGN_WORLDS = [("street", 0), ("street", 3), ("street", 5), ("street", 7), ("street", 9), ("street", 11),
                  ("courtyard", 3), ("courtyard", 4)]
REAL = {"castle": "strecha_castle_p30", "fountain": "strecha_fountain_p11", "castle_p19": "strecha_castle_p19",
        "entry": "strecha_entry_p10", "kitti": "kitti06_51", "7scenes": "sevenscenes_redkitchen"}
# Strecha photographs as foreign images: every image (both splits), as before the real robot sets came
ALL_IMAGES = {"strecha_castle_p30", "strecha_fountain_p11"}
IMAGES_PER_SPLIT = 6  # at most: a 12-frame world plans 3 queries per split
DEFAULT_MAP_CACHE = [REPO / "outputs" / "bench" / "real"]  # bench_real.py's maps (same set, same features)


def place(folder: str) -> str:
    """Real sets of one place are not foreign to each other (the Strecha scenes share a courtyard)."""
    return "strecha" if folder.startswith("strecha_") else folder


def real_folder(spec: str) -> str | None:
    if spec in REAL:
        return REAL[spec]
    if (SHARED / spec / "splits.json").exists():
        return spec
    return None


def prepare(spec: str, out: Path, map_cache: list[Path],
            map_file: Path | None = None) -> tuple[str, Path, Path, tuple[str, int] | str]:
    """(label, dataset folder, map path, own place: a synthetic world or a real place) of one --maps entry.

    `map_file`: a prebuilt map of that place (.ssmap or .sqz) to use instead of building or finding one.
    """
    folder = real_folder(spec)
    if folder is not None:
        root = SHARED / folder
        candidates = [d / name for d in map_cache for name in (f"{folder}_xfeat.ssmap", f"{folder}.ssmap")]
        map_path = next((p for p in candidates if p.exists()), out / f"{folder}_xfeat.ssmap")
        own = place(folder)
    else:
        preset, seed, frames = spec.split(":")
        root = out / f"{preset}_seed{seed}_{frames}f"
        if not (root / "splits.json").exists():
            from scenesqueezer_core.synthetic import generate_scene

            generate_scene(root, preset=preset, seed=int(seed), num_frames=int(frames))
        map_path = out / f"{root.name}_xfeat.ssmap"
        own = (preset, int(seed))
    if map_file is not None:
        if not map_file.exists():
            raise SystemExit(f"--map-files {spec}={map_file}: no such file")
        return f"{spec} {map_file.name}", root, map_file, own
    if not map_path.exists():
        build_map(root, map_path, features="xfeat", device="cpu")
    return spec, root, map_path, own


def clean(value, keep_inf: bool = False):
    """JSON-safe: NaN becomes None, +-inf None or (keep_inf) the string "inf" / "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value) if keep_inf and not math.isnan(value) else None
    return value


def check_outcomes(result) -> list[dict] | None:
    checks = getattr(result, "checks", None)
    if checks is None:
        return None
    return [{"name": c.name, "statistic": clean(float(c.statistic), keep_inf=True), "limit": clean(float(c.limit)),
             "passed": bool(c.passed)} for c in checks]


def record(result, **fields) -> dict:
    code = getattr(result, "failure_code", None)
    return {**fields, "success": bool(result.success),
            "failure": failure_kind({"success": result.success, "failure_reason": result.failure_reason,
                                     "failure_code": None if code is None else str(code)}),
            "failure_reason": result.failure_reason, "num_inliers": int(result.num_inliers),
            "num_correspondences": int(result.num_correspondences), "inlier_ratio": clean(float(result.inlier_ratio)),
            "median_reprojection_error_px": clean(float(result.median_reprojection_error_px)),
            "occluded_inlier_share": clean(float(result.occluded_inlier_share)),
            "seconds": clean(float(result.timings.get("total", float("nan")))),
            "checks": check_outcomes(result)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--maps", nargs="*", default=["street:0:24", "street:0:200", "street:7:120", "castle",
                                                      "fountain", "kitti", "7scenes"])
    parser.add_argument("--compressed", nargs="*", default=["street:0:200", "kitti"],
                        help="--maps entries to also run compressed (none: \"\")")
    parser.add_argument("--compressed-ratio", type=float, default=0.2)
    parser.add_argument("--recompress", action="store_true", help="rebuild cached compressed maps")
    parser.add_argument("--map-files", nargs="*", default=[], metavar="SPEC=PATH",
                        help="prebuilt maps (.ssmap or .sqz, e.g. bench_size_curve.py's) checked as well, each "
                             "with the --maps spec of the place it maps (its own queries and foreign images follow "
                             "from it; a synthetic spec's scene is read from --out)")
    parser.add_argument("--foreign-real", nargs="*", default=["castle", "fountain", "kitti", "7scenes"],
                        help="real sets whose images serve as foreign images of maps of other places")
    parser.add_argument("--real-foreign-max", type=int, default=20,
                        help="at most this many (evenly spaced) query frames of kitti / 7scenes as foreign images")
    parser.add_argument("--no-synthetic-foreign", action="store_true", help="no synthetic worlds as foreign images")
    parser.add_argument("--checks", nargs="+", choices=("on", "off"), default=["on", "off"],
                        help="on: default settings (with --set); off: every pose check off")
    parser.add_argument("--set", nargs="*", default=[], help="localizer options key=value (the 'on' run)")
    parser.add_argument("--off-foreign", action="store_true",
                        help="the checks-off run localizes the foreign images too (by default only the own queries: "
                             "the checks-on results already carry every check's statistic for foreign images)")
    parser.add_argument("--map-cache", nargs="*", default=[str(p) for p in DEFAULT_MAP_CACHE],
                        help="folders of prebuilt real-set maps (<set>_xfeat.ssmap or <set>.ssmap)")
    parser.add_argument("--out", default=str(REPO / "outputs" / "bench" / "foreign"))
    parser.add_argument("--markdown", default=None)
    parser.add_argument("--dump", default=str(REPO / "outputs" / "bench" / "foreign_checks.json"),
                        help="per-localization JSON for bench_checks.py (\"\": none)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    conf_on = {k: float(v) for k, v in (item.split("=", 1) for item in args.set)}
    settings = {"on": conf_on, "off": checks_off_conf()}
    foreign_real = []
    for spec in args.foreign_real:
        folder = real_folder(spec)
        if folder is None:
            parser.error(f"--foreign-real {spec}: no such real set in {SHARED}")
        foreign_real.append(folder)

    foreign_cache: dict[tuple | str, list] = {}  # images rendered / read once for every map

    def real_images(folder: str) -> list:
        if folder not in foreign_cache:
            dataset = load_dataset(SHARED / folder)
            frames = dataset.split("query") + (dataset.split("mapping") if folder in ALL_IMAGES else [])
            if folder not in ALL_IMAGES and len(frames) > args.real_foreign_max:
                step = len(frames) / args.real_foreign_max
                frames = [frames[int(i * step)] for i in range(args.real_foreign_max)]
            foreign_cache[folder] = [(f"{folder}/{f.name}", "real", read_image(f.image_path), f.camera)
                                     for f in frames]
        return foreign_cache[folder]

    def foreign_images(own) -> list:
        items = []
        for folder in foreign_real:
            if place(folder) != own:
                items += real_images(folder)
        for world in [] if args.no_synthetic_foreign else FOREIGN_WORLDS:
            if world == own:
                continue
            for split in ("query_day", "query_night"):
                key = (*world, split)
                if key not in foreign_cache:
                    foreign_cache[key] = [(f"{world[0]}{world[1]}/{split}/{i}", "synthetic", rgb, cam) for i, (rgb, cam)
                                          in enumerate(render_query_images(*world, split, IMAGES_PER_SPLIT))]
                items += foreign_cache[key]
        return items

    header = ["| map | own queries | published | correct (0.25 m, 2°) | wrong (> 0.5 m or 5°) | foreign images "
              "(real + synthetic) | foreign poses (false positives) | s / image |", "|" + "---|" * 8]
    rows = {setting: list(header) for setting in args.checks}
    false_positives: dict[str, list[str]] = {setting: [] for setting in args.checks}
    records: list[dict] = []
    map_cache = [Path(p) for p in args.map_cache]
    jobs = [prepare(spec, out, map_cache) for spec in args.maps]
    for entry in args.map_files:
        spec, sep, path = entry.partition("=")
        if not sep:
            parser.error(f"--map-files {entry}: expected SPEC=PATH, e.g. street:1:160=curve/street_seed1_160f_qp_pq8_0.001.sqz")
        jobs.append(prepare(spec, out, map_cache, Path(path)))
    for spec in [c for c in args.compressed if c]:
        job = next((j for j in jobs if j[0] == spec), None)
        if job is None:
            print(f"--compressed {spec} is not one of --maps: skipped", flush=True)
            continue
        label, root, map_path, own = job
        sqz = out / f"{map_path.stem}_qp_{args.compressed_ratio}.sqz"
        if args.recompress or not sqz.exists() or sqz.stat().st_mtime < map_path.stat().st_mtime:
            compress_map(map_path, sqz, {"ratio": args.compressed_ratio, "method": "qp"}, executor="serial")
        jobs.append((f"{label} compressed (QP {args.compressed_ratio})", root, sqz, own))
    t_all = time.perf_counter()
    for label, root, map_path, own in jobs:
        map_kind = "synthetic" if isinstance(own, tuple) else "real"
        dataset = load_dataset(root)
        splits = [s for s in ("query_day", "query_night") if s in dataset.splits] or ["query"]
        own_frames = [f for s in splits for f in dataset.split(s)]
        foreign = foreign_images(own)
        for setting in args.checks:
            localizer = Localizer.from_file(map_path, settings[setting], device="cpu")
            common = {"map": label, "map_kind": map_kind, "map_bytes": map_path.stat().st_size, "checks_setting": setting}
            published = correct = wrong = 0
            t0 = time.perf_counter()
            for frame in own_frames:
                result = localizer.localize(read_image(frame.image_path), frame.camera)
                entry = record(result, **common, image=frame.name, image_kind=map_kind, role="own",
                               error_m=None, error_deg=None, outcome="failed")
                if result.success:
                    published += 1
                    dt, dr = pose_error(result.cam_from_world, frame.cam_from_world)
                    ok, bad = dt < 0.25 and dr < 2.0, dt > 0.5 or dr > 5.0
                    correct += ok
                    wrong += bad
                    entry.update(error_m=float(dt), error_deg=float(dr),
                                 outcome="correct" if ok else "wrong" if bad else "between")
                records.append(entry)
            fps = []
            run_foreign = setting == "on" or args.off_foreign
            for name, kind, rgb, camera in foreign if run_foreign else []:
                result = localizer.localize(rgb, camera)
                records.append(record(result, **common, image=name, image_kind=kind, role="foreign", error_m=None,
                                      error_deg=None, outcome="foreign_pose" if result.success else "failed"))
                if result.success:
                    fps.append(f"{name} ({result.num_inliers} inliers, {result.median_reprojection_error_px:.1f} px)")
            seconds = (time.perf_counter() - t0) / max(len(own_frames) + len(foreign) * run_foreign, 1)
            n_real = sum(1 for item in foreign if item[1] == "real")
            false_positives[setting] += [f"{label}: {fp}" for fp in fps]
            rows[setting].append(f"| {label} | {len(own_frames)} | {published} | {correct} | {wrong} | {len(foreign)} "
                                 f"({n_real} + {len(foreign) - n_real}) | {len(fps) if run_foreign else 'not run'} "
                                 f"| {seconds:.2f} |")
            print(f"checks {setting}: {rows[setting][-1]}", flush=True)
    if args.dump:
        dump = Path(args.dump)
        dump.parent.mkdir(parents=True, exist_ok=True)
        dump.write_text(json.dumps({"settings": {k: settings[k] for k in args.checks}, "records": records}) + "\n")
        print(f"wrote {len(records)} localizations to {dump}")
    titles = {"on": "default localizer settings" + (f" with {conf_on}" if conf_on else ""),
              "off": f"every pose check off ({settings['off']})"}
    sections = []
    for setting in args.checks:
        sections.append(f"### Pose safety, {titles[setting]}\n\n" + "\n".join(rows[setting])
                        + "\n\nFalse positives: " + ("; ".join(false_positives[setting]) or "none"
                                                      if setting == "on" or args.off_foreign else "not run"))
    text = ("## Pose safety: own queries and foreign images\n\n" + "\n\n".join(sections)
            + f"\n\nTotal {time.perf_counter() - t_all:.0f} s.\n")
    return emit(text, args.markdown)


if __name__ == "__main__":
    sys.exit(main())
