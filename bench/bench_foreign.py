#!/usr/bin/env python
"""Pose safety benchmark: foreign images must get no pose, true queries should.

    python bench/bench_foreign.py [--maps street:0:24 street:0:200 street:7:120 castle fountain]
        [--compressed street:0:200] [--compressed-ratio 0.2] [--set key=value ...] [--out outputs/bench/foreign]
        [--markdown FILE]

Each map (synthetic `preset:seed:frames`, or a Strecha scene by name) is localized against
- its own queries (synthetic `query_day` + `query_night`, Strecha `query`): published poses,
  correct ones (0.25 m, 2 deg) and wrong ones (> 0.5 m or 5 deg off), and
- foreign images: the 41 Strecha photographs (for synthetic maps) and the day and night queries
  (3 + 3) of each of eight synthetic worlds of other seeds and presets; every published pose is a
  false positive. fountain-P11 and castle-P30 are photographs of the same courtyard (their fountain images
  localize in the castle map with one consistent rigid transform), so they are not foreign to each
  other and are left out of each other's set.
`--compressed SPEC` also runs that map compressed (QP, `--compressed-ratio`; "" for none). `--set` overrides
localizer options (e.g. `--set max_median_reprojection_error_px=0 max_occluded_inliers=1` for the
checks off). Prints one table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import REPO, SHARED, emit

from scenesqueezer_core.compression.compress import compress_map  # noqa: E402
from scenesqueezer_core.dataset import load_dataset, read_image  # noqa: E402
from scenesqueezer_core.geometry import pose_error  # noqa: E402
from scenesqueezer_core.localize import Localizer  # noqa: E402
from scenesqueezer_core.mapping import build_map  # noqa: E402
from scenesqueezer_core.synthetic import render_query_images  # noqa: E402

FOREIGN_WORLDS = [("street", 0), ("street", 3), ("street", 5), ("street", 7), ("street", 9), ("street", 11),
                  ("courtyard", 3), ("courtyard", 4)]
STRECHA = {"castle": "strecha_castle_p30", "fountain": "strecha_fountain_p11"}
IMAGES_PER_SPLIT = 6  # at most: a 12-frame world plans 3 queries per split


def prepare(spec: str, out: Path) -> tuple[str, Path, Path, tuple[str, int] | None]:
    """(label, dataset folder, map path, own synthetic world or None) of one --maps entry."""
    if spec in STRECHA:
        root = SHARED / STRECHA[spec]
        map_path = out / f"{spec}_xfeat.ssmap"
        own = None
    else:
        preset, seed, frames = spec.split(":")
        root = out / f"{preset}_seed{seed}_{frames}f"
        if not (root / "splits.json").exists():
            from scenesqueezer_core.synthetic import generate_scene

            generate_scene(root, preset=preset, seed=int(seed), num_frames=int(frames))
        map_path = out / f"{root.name}_xfeat.ssmap"
        own = (preset, int(seed))
    if not map_path.exists():
        build_map(root, map_path, features="xfeat", device="cpu")
    return spec, root, map_path, own


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--maps", nargs="+", default=["street:0:24", "street:0:200", "street:7:120", "castle", "fountain"])
    parser.add_argument("--compressed", default="street:0:200", help="a --maps entry to also run compressed")
    parser.add_argument("--compressed-ratio", type=float, default=0.2)
    parser.add_argument("--set", nargs="*", default=[], help="localizer options key=value")
    parser.add_argument("--out", default=str(REPO / "outputs" / "bench" / "foreign"))
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    conf = {k: float(v) for k, v in (item.split("=", 1) for item in args.set)}

    foreign_cache: dict[tuple | str, list] = {}  # images rendered / read once for every map

    def foreign_images(own: tuple[str, int] | None, strecha_map: bool):
        items = []
        if not strecha_map:
            for name in STRECHA.values():
                if name not in foreign_cache:
                    dataset = load_dataset(SHARED / name)
                    foreign_cache[name] = [(f"{name}/{f.name}", read_image(f.image_path), f.camera)
                                           for f in dataset.split("query") + dataset.split("mapping")]
                items += foreign_cache[name]
        for world in FOREIGN_WORLDS:
            if world == own:
                continue
            for split in ("query_day", "query_night"):
                key = (*world, split)
                if key not in foreign_cache:
                    foreign_cache[key] = render_query_images(*world, split, IMAGES_PER_SPLIT)
                items += [(f"{world[0]}{world[1]}/{split}/{i}", rgb, cam) for i, (rgb, cam) in enumerate(foreign_cache[key])]
        return items

    rows = ["| map | own queries | published | correct (0.25 m, 2°) | wrong (> 0.5 m or 5°) | foreign images "
            "| foreign poses (false positives) |", "|" + "---|" * 7]
    false_positives = []
    jobs = [prepare(spec, out) for spec in args.maps]
    to_compress = next((j for j in jobs if j[0] == args.compressed), None)
    if args.compressed and to_compress is None:
        parser.error(f"--compressed {args.compressed} is not one of --maps")
    if to_compress:
        label, root, map_path, own = to_compress
        sqz = out / f"{map_path.stem}_qp_{args.compressed_ratio}.sqz"
        compress_map(map_path, sqz, {"ratio": args.compressed_ratio, "method": "qp"})
        jobs.append((f"{label} compressed (QP {args.compressed_ratio})", root, sqz, own))
    for label, root, map_path, own in jobs:
        localizer = Localizer.from_file(map_path, conf, device="cpu")
        dataset = load_dataset(root)
        splits = [s for s in ("query_day", "query_night") if s in dataset.splits] or ["query"]
        published = correct = wrong = total = 0
        for frame in (f for s in splits for f in dataset.split(s)):
            total += 1
            result = localizer.localize(read_image(frame.image_path), frame.camera)
            if result.success:
                published += 1
                dt, dr = pose_error(result.cam_from_world, frame.cam_from_world)
                correct += dt < 0.25 and dr < 2.0
                wrong += dt > 0.5 or dr > 5.0
        foreign = foreign_images(own, own is None)
        fps = []
        for name, rgb, camera in foreign:
            result = localizer.localize(rgb, camera)
            if result.success:
                fps.append(f"{name} ({result.num_inliers} inliers, {result.median_reprojection_error_px:.1f} px)")
        false_positives += [f"{label}: {fp}" for fp in fps]
        rows.append(f"| {label} | {total} | {published} | {correct} | {wrong} | {len(foreign)} | {len(fps)} |")
        print(rows[-1], flush=True)
    text = ("## Pose safety: own queries and foreign images" + (f" (localizer options {conf})" if conf else "")
            + "\n\n" + "\n".join(rows) + "\n\nFalse positives: " + ("; ".join(false_positives) or "none") + "\n")
    return emit(text, args.markdown)


if __name__ == "__main__":
    sys.exit(main())
