#!/usr/bin/env python
"""Do the shipped learned models hold on real images? Synthetic maps against the real sets.

    python bench/bench_learned_real.py --maps MAP.ssmap [MAP.ssmap ...] [--features xfeat]
        [--samples 20000] [--markdown outputs/bench/learned_real.md]

The descriptor codecs (8-bit DSQ, the default, and the product quantizers pq32 / pq16 / pq8) and
the global-descriptor quantizer were trained on synthetic images (PQ also on Strecha entry-P10).
A model that only fits the synthetic textures would reconstruct real descriptors worse. For each
map (uncompressed .ssmap: build them with `scenesqueezer build-map`, or reuse bench_real.py's cache)
this prints, per model:

- descriptor codecs: median cosine between each sampled 3D point's descriptor and its
  decode(encode()), and the share of sampled points whose nearest other point (by descriptor) is
  still among the two nearest after coding -- what the matcher needs;
- global quantizer: the share of mapping frames whose most similar other frame (VLAD, cosine)
  is the same after coding, and the mean overlap of the top-5 lists -- what retrieval needs.

Read a real set's row against the synthetic rows: the models hold on real data when the real
figures are as good as the synthetic ones.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from common import emit

from scenesqueezer_core.maps.descriptor_codes import DESCRIPTOR_CODES, load_descriptor_codec  # noqa: E402
from scenesqueezer_core.maps.global_model import load_global_model  # noqa: E402
from scenesqueezer_core.maps.scene_map import SceneMap  # noqa: E402

NEIGHBOUR_QUERIES = 2000  # points whose nearest neighbour is checked (an (n, N) similarity matrix)
GLOBAL_FRAMES = 120  # mapping frames, evenly spread, described and ranked


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def descriptor_figures(descriptors: np.ndarray, decoded: np.ndarray) -> tuple[float, float]:
    """(N, D) originals and their decodings -> (median cosine, nearest neighbour kept among the top 2)."""
    original, coded = unit(descriptors), unit(decoded)
    cosine = float(np.median(np.sum(original * coded, axis=1)))
    probes = original[:NEIGHBOUR_QUERIES]
    rows = np.arange(len(probes))
    before = probes @ original.T
    before[rows, rows] = -np.inf
    after = probes @ coded.T
    after[rows, rows] = -np.inf
    nearest = before.argmax(axis=1)
    top2 = np.argpartition(-after, 2, axis=1)[:, :2]
    return cosine, float(np.mean((top2 == nearest[:, None]).any(axis=1)))


def global_figures(described: np.ndarray, decoded: np.ndarray) -> tuple[float, float]:
    """(F, G) frame descriptors and their decodings -> (top-1 kept, mean top-5 overlap)."""
    before, after = unit(described) @ unit(described).T, unit(described) @ unit(decoded).T
    np.fill_diagonal(before, -np.inf)
    np.fill_diagonal(after, -np.inf)
    top1 = float(np.mean(before.argmax(axis=1) == after.argmax(axis=1)))
    k = min(5, len(before) - 1)
    overlap = np.mean([len(set(np.argsort(-b)[:k]) & set(np.argsort(-a)[:k])) / k for b, a in zip(before, after)])
    return top1, float(overlap)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--maps", nargs="+", required=True, help="uncompressed maps (.ssmap), synthetic and real")
    parser.add_argument("--features", default="xfeat")
    parser.add_argument("--samples", type=int, default=20000, help="3D points sampled per map")
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args()

    codecs = {name: load_descriptor_codec(args.features, name) for name in DESCRIPTOR_CODES}
    vlad, global_quantizer = load_global_model(args.features)
    rng = np.random.default_rng(0)
    header = ("| map | points / frames | " + " | ".join(f"{c} cosine / NN kept" for c in DESCRIPTOR_CODES)
              + " | global top-1 kept / top-5 overlap |")
    lines = [f"## Learned models on real and synthetic maps ({args.features})", "",
             "Descriptor codecs: median cosine of decode(encode(d)) with d, and the share of points whose "
             "nearest other point stays among the two nearest after coding. Global quantizer: the share "
             "of frames whose most similar frame stays the same, and the mean top-5 overlap.", "",
             header, "|" + " --- |" * (header.count("|") - 1)]
    for path in args.maps:
        scene_map = SceneMap.load(path)
        if scene_map.feature_setup != args.features:
            raise SystemExit(f"{path} is a {scene_map.feature_setup} map; pass --features {scene_map.feature_setup}")
        descriptors = np.asarray(scene_map.point_descriptors(), dtype=np.float32)
        descriptors = descriptors[rng.choice(len(descriptors), min(args.samples, len(descriptors)), replace=False)]
        cells = []
        for codec in codecs.values():
            cosine, kept = descriptor_figures(descriptors, codec.decode(codec.encode(descriptors)))
            cells.append(f"{cosine:.3f} / {kept:.2f}")
        frames = np.unique(np.linspace(0, scene_map.num_frames - 1, min(GLOBAL_FRAMES, scene_map.num_frames)).astype(int))
        described = np.stack([vlad.describe(scene_map.frame_features(int(f)).descriptors) for f in frames])
        top1, overlap = global_figures(described, global_quantizer.decode(global_quantizer.encode(described)))
        lines.append(f"| {Path(path).stem} | {len(descriptors)} / {len(frames)} | " + " | ".join(cells)
                     + f" | {top1:.2f} / {overlap:.2f} |")
        print(lines[-1], flush=True)
    return emit("\n".join(lines) + "\n", args.markdown)


if __name__ == "__main__":
    raise SystemExit(main())
