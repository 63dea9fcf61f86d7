#!/usr/bin/env python
"""Run every benchmark and write all tables into one markdown report (outputs/bench/REPORT.md).

    python bench/run_all.py [--quick] [--out outputs/bench]

--quick skips the slowest parts (ALIKED, the scale scene, learned selection, pose safety) and
measures the real sets at one compression ratio only and the size curve on its --quick grid. Each benchmark also runs on its own;
see the scripts' docstrings. The report states the machine it ran on.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scenesqueezer_core.atomic import atomic_write_text  # noqa: E402


def run(script: str, *args: str, capture_to: Path | None = None) -> None:
    """Run one benchmark; with capture_to, its printed table becomes that markdown file."""
    cmd = [sys.executable, str(REPO / "bench" / script), *args]
    print("$", " ".join(cmd), flush=True)
    env = {**os.environ, "GLOG_minloglevel": "2"}
    if capture_to is None:
        subprocess.run(cmd, check=True, env=env)
        return
    proc = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    print(proc.stdout)
    atomic_write_text(capture_to, f"## {script}\n\n```\n{proc.stdout.strip()}\n```\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "outputs" / "bench"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    t0 = time.perf_counter()
    features = ["xfeat", "sift"] if args.quick else ["xfeat", "sift", "aliked"]
    run("bench_features.py", capture_to=out / "features.md")
    run("bench_pipeline.py", "--features", *features, "--out", str(out), "--markdown", str(out / "pipeline.md"))
    run("bench_compression.py", "--out", str(out), "--markdown", str(out / "compression.md"))
    scene = out / "street_seed0_200f"
    maps = [str(out / "synthetic-street-s0_xfeat_qp_0.03.sqz"), str(out / "synthetic-street-s0_xfeat.ssmap")]
    run("bench_registration.py", *sum((["--map", m] for m in maps), []), "--dataset", str(scene),
        "--markdown", str(out / "registration.md"))
    run("bench_memory.py", *sum((["--map", m] for m in maps), []), "--dataset", str(scene),
        "--markdown", str(out / "memory.md"))
    run("bench_smo.py", "--sizes", "1000", "10000", "--out", str(out / "smo.md"))
    # every real set of ../shared/data, uncompressed and QP-compressed, checks on and off (about 15 minutes)
    run("bench_real.py", "--out", str(out / "real"), "--markdown", str(out / "real.md"),
        *(["--ratios", "0.1"] if args.quick else []))
    # the shipped codecs and global quantizer on the real maps beside the synthetic one (a minute)
    run("bench_learned_real.py", "--maps", maps[1], *sorted(str(p) for p in (out / "real").glob("*_xfeat.ssmap")),
        "--markdown", str(out / "learned_real.md"))
    # recall vs file bytes per selection method and code size at equal bytes (issue 18); the full grid takes hours
    run("bench_size_curve.py", "--out", str(out / "size_curve"), "--markdown", str(out / "size_curve.md"),
        "--map-cache", str(out / "real"), "--png", str(out / "size_curve.png"), *(["--quick"] if args.quick else []))
    if not args.quick:  # about 20 minutes from scratch on 2 cores (scene and map are cached)
        run("bench_scale.py", "--out", str(out / "scale"), "--markdown", str(out / "scale.md"))
        # issue 20: the odometry prior on the demo scene, a 3-camera rig against its front camera
        # (a robot runs the compressed map, whose candidates are clusters; the uncompressed map's are frames)
        for map_path, suffix in ((maps[0], "_compressed"), (maps[1], "")):
            run("bench_prior.py", "--workdir", str(out), "--map", map_path, "--markdown", str(out / f"prior{suffix}.md"))
            run("bench_prior_dds.py", "--workdir", str(out), "--map", map_path,
                "--markdown", str(out / f"prior_dds{suffix}.md"))
        run("bench_rig.py", "--workdir", str(out / "rig"), "--markdown", str(out / "rig.md"))
        # about 45 and 40 minutes on 2 cores: learned vs baselines at equal bytes, pose safety
        run("bench_learned.py", "--out", str(out / "learned"), "--markdown", str(out / "learned.md"))
        run("bench_foreign.py", "--out", str(out / "foreign"), "--markdown", str(out / "foreign.md"),
            "--dump", str(out / "foreign_checks.json"), "--map-cache", str(out / "real"))
        # each check's statistic, correct vs wrong vs foreign (docs/img holds the committed plots)
        run("bench_checks.py", "--dump", str(out / "foreign_checks.json"), "--real-summary",
            str(out / "real" / "summary.json"), "--png-dir", str(out / "checks"), "--json",
            str(out / "checks_statistics.json"), "--markdown", str(out / "checks.md"))
    for name in ("features", "pipeline", "compression", "registration", "memory", "smo", "real", "learned_real", "size_curve", "scale",
                 "prior_compressed", "prior", "prior_dds_compressed", "prior_dds", "rig", "learned", "foreign", "checks"):
        path = out / f"{name}.md"
        if path.exists():
            parts.append(path.read_text())
    header = (f"# SceneSqueezer benchmark report\n\nMachine: {platform.platform()}, {os.cpu_count()} CPUs, "
              f"Python {platform.python_version()}; total {time.perf_counter() - t0:.0f} s.\n\n")
    atomic_write_text(out / "REPORT.md", header + "\n\n".join(parts))
    print(f"report: {out / 'REPORT.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
