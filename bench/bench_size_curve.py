#!/usr/bin/env python
"""The recall-vs-bytes curve (issue 18): recall (0.25 m, 2°) and (0.5 m, 5°) against file bytes for
the uncompressed map and every selection method x descriptor code size, compared at equal bytes.

    python bench/bench_size_curve.py [--quick] [--synthetic street:1 street:2 street:0:200] [--frames 160]
        [--real strecha_castle_p30 strecha_fountain_p11 kitti06_51[:0.001,0.002] sevenscenes_redkitchen]
        [--map-cache /tmp/real] [--methods qp learned kcp random] [--codes dsq pq32 pq16 pq8]
        [--budgets 0.0005 0.001 0.002 0.005 0.01] [--real-budgets ...] [--max-queries N]
        [--out outputs/bench/size_curve] [--markdown FILE] [--png docs/img/size_curve.png]

Every point of the curve is a byte budget, a share of the uncompressed .ssmap's bytes (--budgets;
--real-budgets for the real sets, default the same; `set:b1,b2` gives one set its own): each method x code size is compressed with
`target_size` = that share and its `codes` given, so the ratio search of `compress --target-size`
picks the largest point budget whose file fits. The maps of one budget therefore have equal bytes
up to the search's resolution (it aims at 98 % of the target); the table gives every file's actual
bytes, and nothing is interpolated. A budget below the smallest map of a scene (every cluster at
its minimum points) is reported as "does not fit".

Synthetic scenes (preset:seed, seeds below 100: never seen by the learned selection's training,
seeds >= 200, nor by the product quantizer's codebooks, courtyard seed 7) are rendered and mapped
with xfeat, cached under --out; `query_day` and `query_night` are reported separately, pooled over
the seeds (recall over all their queries; bytes: the mean over the seeds). Real sets are read from
../shared/data, their uncompressed map from --map-cache (`<set>.ssmap`) or built under --out.
`--max-queries N` localizes N evenly spaced queries of each split (the same ones on every map).
Learned selection runs only on xfeat maps of scenes its training did not see (its model card lists
castle-P30 and fountain-P11 mapping images among the training data).

--quick: one synthetic seed, QP and random, dsq and pq8, budgets 0.1 % and 0.5 %, castle-P30 and
KITTI only, at most 20 queries per split. Results (RESULTS.json per map and split, the compressed
maps and rows.json) are cached under --out and reused when newer than the source map.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import REPO, SHARED, emit

from scenesqueezer_core.compression.compress import compress_map
from scenesqueezer_core.dataset import load_dataset, read_image
from scenesqueezer_core.errors import ConfigError
from scenesqueezer_core.evaluate import evaluate_results, write_results
from scenesqueezer_core.localization import Localizer
from scenesqueezer_core.mapping import build_map
from scenesqueezer_core.maps.mapfile import read_map_file
from scenesqueezer_core.synthetic import generate_scene

METHODS = ["qp", "learned", "kcp", "random"]
CODES = ["dsq", "pq32", "pq16", "pq8"]
BUDGETS = [0.0005, 0.001, 0.002, 0.005, 0.01]
REAL_SETS = ["strecha_castle_p30", "strecha_fountain_p11", "kitti06_51", "sevenscenes_redkitchen"]
SYNTHETIC = ["street:1", "street:2", "street:3"]
# sets whose mapping images trained the shipped learned selection (scenesqueezer_core/weights/LEARNED_MODEL_CARD.md)
LEARNED_TRAINING_SETS = ("strecha_castle_p30", "strecha_fountain_p11")
THRESHOLD_KEYS = ("0.25m_2deg", "0.5m_5deg")


def synthetic_scene(out: Path, spec: str, frames: int) -> tuple[str, Path, Path]:
    preset, seed, *own = spec.split(":")  # preset:seed[:frames]
    frames = int(own[0]) if own else frames
    if int(seed) >= 100:
        raise SystemExit(f"synthetic seed {seed} is not held out (seeds >= 100 may be training seeds)")
    name = f"{preset}_seed{seed}_{frames}f"
    scene = out / name
    if not (scene / "splits.json").exists():
        generate_scene(scene, preset=preset, seed=int(seed), num_frames=frames)
    map_path = out / f"{name}.ssmap"
    if not map_path.exists():
        build_map(scene, map_path, features="xfeat", device="cpu")
    return name, scene, map_path


def real_map(name: str, out: Path, map_cache: Path | None) -> Path:
    for path in ([map_cache / f"{name}_xfeat.ssmap", map_cache / f"{name}.ssmap"] if map_cache else []) + [
            out / f"{name}_xfeat.ssmap"]:
        if path.exists() and read_map_file(path, verify=False).meta.get("feature_setup", "xfeat") == "xfeat":
            return path
    path = out / f"{name}_xfeat.ssmap"
    build_map(SHARED / name, path, features="xfeat", device="cpu")
    return path


def spread(names: list[str], limit: int | None) -> list[str]:
    """At most ``limit`` evenly spaced names (all when limit is None or larger)."""
    if limit is None or len(names) <= limit:
        return list(names)
    return [names[round(i * (len(names) - 1) / (limit - 1))] for i in range(limit)] if limit > 1 else names[:1]


def localize(map_path: Path, scene: Path, split: str, limit: int | None, results: Path) -> dict:
    """Recall counts of ``map_path`` on (a spread of) ``split``; RESULTS.json cached when newer than the map."""
    if not results.exists() or results.stat().st_mtime < map_path.stat().st_mtime:
        dataset = load_dataset(scene)
        frames = {f.name: f for f in dataset.split(split)}
        localizer = Localizer.from_file(map_path, None, "cpu")
        found = {name: localizer.localize(read_image(frames[name].image_path), frames[name].camera)
                 for name in spread(list(frames), limit)}
        write_results(results, found, {"map": str(map_path), "map_bytes": map_path.stat().st_size,
                                       "dataset": str(scene), "split": split})
    m = evaluate_results(results, scene)  # over the localized names only (the spread)
    n = m["num_queries"]
    return {"n": n, "localized": m["num_localized"],
            **{k: round(m["recall"][k] * n) for k in THRESHOLD_KEYS},
            "seconds_per_query": m["median_seconds_per_query"]}


def compressed(source: Path, out: Path, stem: str, method: str, codes: str, budget: float,
               workers: int) -> tuple[Path | None, dict]:
    """The map of ``method`` and ``codes`` that fits ``budget`` x the source bytes (None: it cannot)."""
    path = out / f"{stem}_{method}_{codes}_{budget:g}.sqz"
    info_path = path.with_suffix(".json")
    if path.exists() and info_path.exists() and path.stat().st_mtime >= source.stat().st_mtime:
        return path, json.loads(info_path.read_text())
    target = int(budget * source.stat().st_size)
    t0 = time.perf_counter()
    try:
        report = compress_map(source, path, {"method": method, "codes": codes, "target_size": target},
                              executor="process" if workers > 1 else "serial", workers=workers)
    except ConfigError as exc:
        print(f"  {path.name}: does not fit ({str(exc).split(';')[0]})", flush=True)
        return None, {"target": target}
    info = {"target": target, "points": report["num_points_kept"], "ratio": report["ratio"],
            "seconds": time.perf_counter() - t0}
    info_path.write_text(json.dumps(info) + "\n")
    print(f"  {path.name}: {path.stat().st_size} B (target {target}), {info['points']} points, ratio "
          f"{info['ratio']:.4f}, {info['seconds']:.0f} s", flush=True)
    return path, info


def pct(count: int, n: int) -> str:
    return f"{100 * count / n:.1f}" if n else "n/a"


def curve_tables(rows: list[dict]) -> tuple[str, str, list[dict]]:
    """The pooled curve table, the best-PQ-vs-best-DSQ table, and the pooled rows (for the plot)."""
    pooled: dict[tuple, dict] = {}
    for r in rows:
        key = (r["group"], r["split"], r["method"], r["codes"], r["budget"])
        p = pooled.setdefault(key, {"group": r["group"], "split": r["split"], "method": r["method"], "codes": r["codes"],
                                    "budget": r["budget"], "bytes": [], "source_bytes": [], "points": [], "n": 0,
                                    "fit": True, **{k: 0 for k in THRESHOLD_KEYS}})
        if r["bytes"] is None:
            p["fit"] = False
            continue
        p["bytes"].append(r["bytes"])
        p["source_bytes"].append(r["source_bytes"])
        p["points"].append(r["points"])
        p["n"] += r["n"]
        for k in THRESHOLD_KEYS:
            p[k] += r[k]
    table = ["| scene | queries | map | codes | budget | bytes (mean) | % of uncompr. | points | B / point "
             "| R 0.25m,2° | (% of uncompr.) | R 0.5m,5° | (% of uncompr.) |", "|" + "---|" * 13]
    reference = {(p["group"], p["split"]): p for p in pooled.values() if p["method"] == "uncompressed"}
    out_rows = []
    order = {m: i for i, m in enumerate(["uncompressed", *METHODS])}
    for p in sorted(pooled.values(), key=lambda p: (p["group"], p["split"], p["method"] != "uncompressed", p["budget"], order.get(p["method"], 9),
                                                    CODES.index(p["codes"]) if p["codes"] in CODES else -1)):
        ref = reference.get((p["group"], p["split"]))
        budget = "-" if p["method"] == "uncompressed" else f"{100 * p['budget']:g} %"
        if not p["fit"] or not p["bytes"]:
            table.append(f"| {p['group']} | {p['split']} | {p['method']} | {p['codes']} | {budget} | does not fit "
                         + "| " * 7 + "|")
            continue
        b = sum(p["bytes"]) / len(p["bytes"])
        share = 100 * sum(x / s for x, s in zip(p["bytes"], p["source_bytes"])) / len(p["bytes"])
        points = sum(p["points"]) / len(p["points"])
        p.update(mean_bytes=b, share=share)
        out_rows.append(p)
        cells = []
        for k in THRESHOLD_KEYS:
            rel = (f"{100 * p[k] / ref[k]:.0f} %" if ref and ref[k] else "n/a")
            cells += [f"{pct(p[k], p['n'])} ({p[k]}/{p['n']})", rel]
        table.append(f"| {p['group']} | {p['split']} | {p['method']} | {p['codes']} | {budget} | {b / 1e3:,.1f} kB "
                     f"| {share:.3f} | {points:,.0f} | {b / max(points, 1):.1f} | " + " | ".join(cells) + " |")
    best = ["| scene | queries | budget | best DSQ map: R 0.25m,2° | best PQ map: R 0.25m,2° | PQ - DSQ (pp) "
            "| best DSQ: R 0.5m,5° | best PQ: R 0.5m,5° | PQ - DSQ (pp) |", "|" + "---|" * 9]
    groups = sorted({(p["group"], p["split"], p["budget"]) for p in out_rows if p["method"] != "uncompressed"})
    for g, s, budget in groups:
        same = [p for p in out_rows if (p["group"], p["split"], p["budget"]) == (g, s, budget)
                and p["method"] != "uncompressed"]
        cells = []
        for k in THRESHOLD_KEYS:
            dsq = [p for p in same if p["codes"] == "dsq"]
            pq = [p for p in same if p["codes"] != "dsq"]
            if not dsq or not pq:
                cells += [f"{pct(bd[k], bd['n'])} ({bd['method']})" if dsq else "does not fit" for bd in
                          [max(dsq, key=lambda p: p[k] / p["n"]) if dsq else None]]
                cells += [f"{pct(bp[k], bp['n'])} ({bp['method']} {bp['codes']})" if pq else "does not fit" for bp in
                          [max(pq, key=lambda p: p[k] / p["n"]) if pq else None]]
                cells += ["n/a"]
                continue
            bd = max(dsq, key=lambda p: p[k] / p["n"])
            bp = max(pq, key=lambda p: p[k] / p["n"])
            cells += [f"{pct(bd[k], bd['n'])} ({bd['method']})", f"{pct(bp[k], bp['n'])} ({bp['method']} {bp['codes']})",
                      f"{100 * (bp[k] / bp['n'] - bd[k] / bd['n']):+.1f}"]
        best.append(f"| {g} | {s} | {100 * budget:g} % | " + " | ".join(cells) + " |")
    return "\n".join(table), "\n".join(best), out_rows


def plot(pooled: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(p["group"], p["split"]) for p in pooled})
    if not panels:
        return
    colors = {"qp": "tab:blue", "learned": "tab:green", "kcp": "tab:orange", "random": "tab:gray"}
    styles = {"dsq": ("-", "o"), "pq32": ("--", "s"), "pq16": ("-.", "^"), "pq8": (":", "v")}
    fig, axes = plt.subplots(2, len(panels), figsize=(3.6 * len(panels), 6.4), squeeze=False)
    for col, (group, split) in enumerate(panels):
        here = [p for p in pooled if (p["group"], p["split"]) == (group, split)]
        for row, k in enumerate(THRESHOLD_KEYS):
            ax = axes[row][col]
            for p in here:
                if p["method"] == "uncompressed":
                    ax.axhline(100 * p[k] / p["n"], color="black", lw=1, label="uncompressed")
                    ax.annotate(f"uncompr. {p['mean_bytes'] / 1e6:.0f} MB", (0.02, 100 * p[k] / p["n"]),
                                xycoords=("axes fraction", "data"), fontsize=6, va="bottom")
            for method in METHODS:
                for codes, (ls, marker) in styles.items():
                    line = sorted((p for p in here if p["method"] == method and p["codes"] == codes),
                                  key=lambda p: p["mean_bytes"])
                    if line:
                        ax.plot([p["mean_bytes"] for p in line], [100 * p[k] / p["n"] for p in line], ls=ls,
                                marker=marker, color=colors[method], ms=4, lw=1, label=f"{method} {codes}")
            ax.set_xscale("log")
            ax.set_ylim(-3, 103)
            ax.grid(alpha=0.3, which="both")
            ax.set_title(f"{group} {split}" if row == 0 else "", fontsize=8)
            ax.set_ylabel(f"recall {k.replace('_', ', ').replace('deg', '°')} (%)" if col == 0 else "", fontsize=8)
            ax.set_xlabel("file bytes (log)" if row == 1 else "", fontsize=8)
            ax.tick_params(labelsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes.ravel():
        h, lab = ax.get_legend_handles_labels()
        for hh, ll in zip(h, lab):
            if ll not in labels:
                handles.append(hh)
                labels.append(ll)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a reduced grid (see the docstring)")
    parser.add_argument("--synthetic", nargs="*", default=None, help="preset:seed[:frames] (seed < 100), default " + " ".join(SYNTHETIC))
    parser.add_argument("--frames", type=int, default=160)
    parser.add_argument("--real", nargs="*", default=None, help="real sets of ../shared/data, each optionally with its own budgets (kitti06_51:0.001,0.002); "
                        "default " + " ".join(REAL_SETS))
    parser.add_argument("--map-cache", default=None, help="folder of prebuilt <set>.ssmap maps of the real sets")
    parser.add_argument("--methods", nargs="+", default=None, help="default " + " ".join(METHODS))
    parser.add_argument("--codes", nargs="+", default=None, help="default " + " ".join(CODES))
    parser.add_argument("--budgets", nargs="+", type=float, default=None,
                        help="shares of the uncompressed bytes, default " + " ".join(map(str, BUDGETS)))
    parser.add_argument("--real-budgets", nargs="+", type=float, default=None, help="default: --budgets")
    parser.add_argument("--max-queries", type=int, default=None, help="evenly spaced queries per split (default: all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "outputs" / "bench" / "size_curve"))
    parser.add_argument("--markdown", default=None)
    parser.add_argument("--png", default=str(REPO / "docs" / "img" / "size_curve.png"))
    args = parser.parse_args()
    q = args.quick
    synthetic = args.synthetic if args.synthetic is not None else (SYNTHETIC[:1] if q else SYNTHETIC)
    real = args.real if args.real is not None else (["strecha_castle_p30", "kitti06_51"] if q else REAL_SETS)
    methods = args.methods or (["qp", "random"] if q else METHODS)
    codes_list = args.codes or (["dsq", "pq8"] if q else CODES)
    budgets = args.budgets or ([0.001, 0.005] if q else BUDGETS)
    real_budgets = args.real_budgets or budgets
    limit = args.max_queries if args.max_queries is not None else (20 if q else None)
    out = Path(args.out)
    (out / "results").mkdir(parents=True, exist_ok=True)
    map_cache = Path(args.map_cache) if args.map_cache else None

    def jobs():  # (group, stem, scene, map path, splits, budgets, learned applies), each made when its turn comes
        for spec in synthetic:
            name, scene, map_path = synthetic_scene(out, spec, args.frames)
            yield (f"synthetic {spec.split(':')[0]}", name, scene, map_path, ["query_day", "query_night"], budgets,
                   True)
        for spec in real:
            name, _, own = spec.partition(":")  # set[:b1,b2]: this set's own budgets
            yield (name, name, SHARED / name, real_map(name, out, map_cache), ["query"],
                   [float(b) for b in own.split(",")] if own else real_budgets, name not in LEARNED_TRAINING_SETS)

    rows: list[dict] = []
    t_all = time.perf_counter()
    for group, stem, scene, source, splits, set_budgets, learned_ok in jobs():
        print(f"{stem} ({source}, {source.stat().st_size / 1e6:.1f} MB):", flush=True)
        source_bytes = source.stat().st_size
        maps = [("uncompressed", "-", 1.0, source, {"points": len(read_map_file(source, verify=False).arrays["points_xyz"])})]
        for budget in set_budgets:
            for method in methods:
                if method == "learned" and not learned_ok:
                    continue
                for codes in codes_list:
                    path, info = compressed(source, out, stem, method, codes, budget, args.workers)
                    maps.append((method, codes, budget, path, info))
        for method, codes, budget, path, info in maps:
            for split in splits:
                row = {"group": group, "scene": stem, "split": split, "method": method, "codes": codes,
                       "budget": budget, "source_bytes": source_bytes, "bytes": None, "points": info.get("points"),
                       "n": 0, **{k: 0 for k in THRESHOLD_KEYS}}
                if path is not None:
                    t0 = time.perf_counter()
                    counts = localize(path, scene, split, limit, out / "results" / f"{path.stem}__{split}.json")
                    row.update(counts, bytes=path.stat().st_size)
                    print(f"  {method} {codes} {budget:g} {split}: {path.stat().st_size} B, "
                          + ", ".join(f"{k} {counts[k]}/{counts['n']}" for k in THRESHOLD_KEYS)
                          + f" ({time.perf_counter() - t0:.0f} s)", flush=True)
                rows.append(row)
        (out / "rows.json").write_text(json.dumps(rows, indent=1) + "\n")
    table, best, pooled = curve_tables(rows)
    plot(pooled, Path(args.png))
    n_note = f"at most {limit} evenly spaced queries per split" if limit else "every query"
    text = (f"## Recall vs file bytes (issue 18 curve; xfeat; {n_note}; synthetic: "
            f"{', '.join(synthetic) or 'none'} (preset:seed[:frames], default {args.frames} frames), pooled; real: {', '.join(real) or 'none'})\n\n"
            f"Budgets: {', '.join(f'{100 * b:g} %' for b in budgets)} of the uncompressed bytes (real sets: "
            f"{', '.join(f'{100 * b:g} %' for b in real_budgets)}, or their own after the set's name); each map is the largest of its method and codes "
            f"that fits (`--target-size`). Recall counts over all queries (a failure is a miss); '% of uncompr.' "
            f"is the recall relative to the uncompressed map's.\n\n" + table
            + "\n\n### Best PQ map vs best DSQ map at equal bytes (any selection method)\n\n" + best
            + f"\n\nPlot: {args.png}. Total {time.perf_counter() - t_all:.0f} s.\n")
    return emit(text, args.markdown)


if __name__ == "__main__":
    raise SystemExit(main())
