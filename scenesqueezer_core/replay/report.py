"""Evaluation report of a replay: metrics.json, summary.md, per-query records and PNG plots.

``metrics.json`` holds exactly the keys of ``scenesqueezer evaluate`` (``compute_metrics``);
``queries.json`` holds one record per query; plots are drawn with matplotlib's Agg backend.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path, atomic_write_text
from ..evaluate import THRESHOLDS, compute_metrics
from ..geometry import pose_error
from ..localization import FailureCode
from ..types import Pose

STAGES = ("extract", "retrieve", "match", "pnp")
PLOTS = {
    "trajectory": "trajectory.png",
    "error_cdf": "error_cdf.png",
    "latency": "latency_by_stage.png",
    "recall": "recall_vs_threshold.png",
}


@dataclass
class QueryRecord:
    """One query of a replay: ground truth, the estimate (None when not localized), timings (s)."""

    name: str
    stamp_ns: int
    truth: Pose
    estimate: Pose | None
    timings: dict[str, float] = field(default_factory=dict)
    failure_reason: str = ""
    num_inliers: int = 0
    end_to_end_s: float | None = None  # DDS only: image published -> result received
    failure_code: FailureCode = FailureCode.NONE

    def errors(self) -> tuple[float, float]:
        return pose_error(self.estimate, self.truth) if self.estimate is not None else (np.inf, np.inf)

    def to_json(self) -> dict[str, Any]:
        t_err, r_err = self.errors()
        out = {"name": self.name, "stamp_ns": self.stamp_ns, "success": self.estimate is not None,
               "failure_code": str(self.failure_code), "failure_reason": self.failure_reason,
               "num_inliers": self.num_inliers,
               "translation_error_m": None if not np.isfinite(t_err) else float(t_err),
               "rotation_error_deg": None if not np.isfinite(r_err) else float(r_err),
               "timings": self.timings, "end_to_end_s": self.end_to_end_s,
               "truth_qvec_wxyz": self.truth.qvec_wxyz.tolist(), "truth_tvec": self.truth.t.tolist()}
        if self.estimate is not None:
            out["qvec_wxyz"] = self.estimate.qvec_wxyz.tolist()
            out["tvec"] = self.estimate.t.tolist()
        return out


def replay_metrics(records: list[QueryRecord], map_bytes: int) -> dict[str, Any]:
    truths = {r.name: r.truth for r in records}
    estimates = {r.name: r.estimate for r in records}
    seconds = [r.timings["total"] for r in records if "total" in r.timings]
    return compute_metrics(estimates, truths, map_bytes, seconds)


def write_report(records: list[QueryRecord], out_dir: str | os.PathLike, map_bytes: int,
                 info: dict[str, Any] | None = None, title: str = "SceneSqueezer replay") -> dict[str, Any]:
    """Write the report folder (replaced atomically) and return its metrics."""
    info = dict(info or {})
    metrics = replay_metrics(records, map_bytes)
    out_dir = Path(out_dir)
    with atomic_path(out_dir, is_dir=True) as tmp:
        atomic_write_text(tmp / "metrics.json", json.dumps(metrics, indent=1) + "\n")
        atomic_write_text(tmp / "queries.json", json.dumps(
            {**info, "queries": [r.to_json() for r in records]}, indent=1) + "\n")
        plot_all(records, tmp)
        atomic_write_text(tmp / "summary.md", summary_markdown(metrics, records, info, title))
    return metrics


def summary_markdown(metrics: dict[str, Any], records: list[QueryRecord], info: dict[str, Any], title: str) -> str:
    def fmt(value, digits=3, unit=""):
        return "n/a" if value is None else f"{value:.{digits}f}{unit}"

    lines = [f"# {title}", ""]
    for key in ("mode", "bag", "map", "image_topic", "rate"):
        if info.get(key) is not None:
            lines.append(f"- **{key.replace('_', ' ')}**: `{info[key]}`")
    lines += ["", "| metric | value |", "| --- | --- |",
              f"| queries | {metrics['num_queries']} |",
              f"| localized | {metrics['num_localized']} / {metrics['num_queries']} |"]
    lines += [f"| recall {key.replace('_', ' / ')} | {100 * value:.1f} % |" for key, value in metrics["recall"].items()]
    lines += [f"| median translation error | {fmt(metrics['median_translation_m'], 3, ' m')} |",
              f"| median rotation error | {fmt(metrics['median_rotation_deg'], 3, ' deg')} |",
              f"| map size | {metrics['map_bytes'] / 1e6:.3f} MB |",
              f"| median time / query | {fmt(metrics['median_seconds_per_query'], 3, ' s')} |"]
    e2e = [r.end_to_end_s for r in records if r.end_to_end_s is not None]
    if e2e:
        lines.append(f"| median end-to-end latency (DDS) | {np.median(e2e):.3f} s |")
    lines += ["", "| stage | median [ms] | 90th percentile [ms] |", "| --- | --- | --- |"]
    for stage in (*STAGES, "total"):
        values = [r.timings[stage] * 1e3 for r in records if stage in r.timings]
        if values:
            lines.append(f"| {stage} | {np.median(values):.1f} | {np.percentile(values, 90):.1f} |")
    codes = Counter(str(r.failure_code) for r in records if r.estimate is None)
    if codes:
        lines += ["", "Failures by code (an example reason of each):", ""]
        for code, count in codes.most_common():
            example = next(r.failure_reason for r in records if r.estimate is None and str(r.failure_code) == code)
            lines.append(f"- {count} x {code}: {example}")
    lines += ["", "## Plots", ""]
    lines += [f"- [{label}]({name})" for label, name in (
        ("Top view: ground truth vs estimates", PLOTS["trajectory"]), ("Error CDFs", PLOTS["error_cdf"]),
        ("Latency by stage", PLOTS["latency"]), ("Recall vs threshold", PLOTS["recall"]))]
    lines += [""] + [f"![{key}]({name})" for key, name in PLOTS.items()]
    return "\n".join(lines) + "\n"


def _errors(records: list[QueryRecord]) -> np.ndarray:
    return np.array([r.errors() for r in records], dtype=np.float64).reshape(-1, 2)


def plot_all(records: list[QueryRecord], out_dir: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    paths = {}
    for key, draw in (("trajectory", plot_trajectory), ("error_cdf", plot_error_cdfs),
                      ("latency", plot_latency), ("recall", plot_recall)):
        fig = draw(records)
        paths[key] = out_dir / PLOTS[key]
        with atomic_path(paths[key]) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
    return paths


def _top_view_axes(centers: np.ndarray, ups: np.ndarray) -> tuple[int, int]:
    """The two world axes of the ground plane: drop the axis the cameras' mean up vector follows."""
    up_axis = int(np.argmax(np.abs(ups.mean(axis=0)))) if len(ups) else 2
    first, second = (i for i in range(3) if i != up_axis)
    return first, second


def plot_trajectory(records: list[QueryRecord]):
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    truths = np.array([r.truth.center for r in records]).reshape(-1, 3)
    ups = np.array([r.truth.R.T @ np.array([0.0, -1.0, 0.0]) for r in records]).reshape(-1, 3)
    a, b = _top_view_axes(truths, ups)
    names = "xyz"
    err = _errors(records)[:, 0]
    ok = np.isfinite(err)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    ax.plot(truths[:, a], truths[:, b], "-", color="0.55", lw=1.2, zorder=1)
    ax.scatter(truths[:, a], truths[:, b], s=22, facecolors="none", edgecolors="0.3", label="ground truth", zorder=2)
    if ok.any():
        est = np.array([r.estimate.center for r, good in zip(records, ok) if good])
        for t, e in zip(truths[ok], est):
            ax.plot([t[a], e[a]], [t[b], e[b]], "-", color="0.7", lw=0.6, zorder=1)
        clipped = np.clip(err[ok], 1e-3, None)
        norm = LogNorm(vmin=min(clipped.min(), 0.01), vmax=max(clipped.max(), 1.0))
        sc = ax.scatter(est[:, a], est[:, b], c=clipped, cmap="viridis", norm=norm, s=36, marker="o",
                        edgecolors="k", linewidths=0.4, label="estimate (colour: error)", zorder=3)
        fig.colorbar(sc, ax=ax, label="translation error [m]")
    if (~ok).any():
        ax.scatter(truths[~ok, a], truths[~ok, b], marker="x", s=50, color="tab:red",
                   label=f"not localized ({int((~ok).sum())})", zorder=4)
    ax.set_xlabel(f"{names[a]} [m]")
    ax.set_ylabel(f"{names[b]} [m]")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(f"Top view: ground truth vs estimates ({int(ok.sum())} / {len(records)} localized)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return fig


def plot_error_cdfs(records: list[QueryRecord]):
    import matplotlib.pyplot as plt

    err = _errors(records)
    n = max(len(records), 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    specs = ((0, "translation error [m]", "Translation error CDF", sorted({t for t, _ in THRESHOLDS.values()})),
             (1, "rotation error [deg]", "Rotation error CDF", sorted({r for _, r in THRESHOLDS.values()})))
    for col, label, title, marks in specs:
        ax = axes[col]
        values = np.sort(err[np.isfinite(err[:, col]), col])
        if len(values):
            floor = max(values.min(), 1e-4)
            xs = np.concatenate([[floor], np.clip(values, floor, None)])
            ys = np.concatenate([[0.0], np.arange(1, len(values) + 1) / n])
            ax.step(xs, ys, where="post", color="tab:blue", lw=2, label="localized queries")
            ax.set_xscale("log")
        for mark in marks:
            ax.axvline(mark, color="0.5", ls="--", lw=0.8)
            ax.text(mark, 1.01, f"{mark:g}", ha="center", va="bottom", fontsize=7, color="0.35")
        ax.axhline(len(values) / n, color="tab:red", ls=":", lw=1,
                   label=f"localized fraction ({len(values)} / {len(records)})")
        ax.set_ylim(0, 1.05)
        ax.set_xlabel(label + " (log scale)")
        ax.set_ylabel("fraction of all queries")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_latency(records: list[QueryRecord]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    series = [(stage, [r.timings[stage] * 1e3 for r in records if stage in r.timings]) for stage in (*STAGES, "total")]
    e2e = [r.end_to_end_s * 1e3 for r in records if r.end_to_end_s is not None]
    if e2e:
        series.append(("end-to-end over DDS", e2e))
    arrays = [(label, np.asarray(v)) for label, v in series if len(v)]
    positive = np.concatenate([v[v > 0] for _, v in arrays]) if arrays else np.array([])
    if len(positive):
        bins = np.logspace(np.log10(max(positive.min(), 1e-3)), np.log10(positive.max() * 1.05 + 1e-9), 30)
        for label, values in series:
            ax.hist(np.clip(values, bins[0], None), bins=bins, histtype="step", lw=1.8,
                    label=f"{label} (median {np.median(values):.1f} ms)")
        ax.set_xscale("log")
    ax.set_xlabel("latency per query [ms] (log scale)")
    ax.set_ylabel("number of queries")
    ax.set_title("Localization latency by stage")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_recall(records: list[QueryRecord]):
    import matplotlib.pyplot as plt

    err = _errors(records)
    n = max(len(records), 1)
    finite = err[np.isfinite(err[:, 0]), 0]
    high = max(10.0, float(finite.max()) * 2 if len(finite) else 10.0)
    thresholds = np.logspace(-3, np.log10(high), 200)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    # Dashed styles keep curves visible where they coincide (rotation rarely limits recall).
    for (rot_deg, color), style in zip(((1.0, "tab:purple"), (2.0, "tab:blue"), (5.0, "tab:green"),
                                        (10.0, "tab:orange")), ("-", "--", "-.", ":")):
        recall = [np.sum((err[:, 0] <= t) & (err[:, 1] <= rot_deg)) / n for t in thresholds]
        ax.plot(thresholds, recall, color=color, ls=style, lw=1.8, label=f"rotation <= {rot_deg:g} deg")
    points: dict[tuple[float, float], list[str]] = {}
    for key, (t, r) in THRESHOLDS.items():
        value = float(np.sum((err[:, 0] <= t) & (err[:, 1] <= r)) / n)
        points.setdefault((t, value), []).append(key)
    for (t, value), keys in points.items():
        ax.plot([t], [value], "ko", ms=5)
        ax.annotate(f"{', '.join(keys)}: {100 * value:.0f} %", (t, value), textcoords="offset points",
                    xytext=(4, -12), fontsize=7)
    ax.set_xscale("log")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("translation threshold [m] (log scale)")
    ax.set_ylabel("recall (fraction of all queries)")
    ax.set_title("Recall vs threshold")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left", fontsize=8)
    return fig
