#!/usr/bin/env python
"""Are a map's "wrong" poses wrong, or is the ground truth inconsistent between passes?

    python bench/bench_gt_consistency.py --map MAP.sqz --source-map MAP.ssmap --dataset DIR
        [--split query] [--threshold 0.25 2] [--markdown FILE]

Handheld and SLAM ground truth (7-Scenes' KinectFusion poses, for one) drifts a little between
passes over the same place. A map triangulated from several passes then holds points that fit
each pass's poses but not each other's, and a query registered on points of another pass gets a
pose consistent with *that* pass: a few degrees from its own ground truth, with inliers that fit
the estimate tightly and the ground-truth pose loosely. A truly wrong pose (aliasing) fits neither.

For every query whose pose (every check off) lies beyond the threshold, this prints: the final
inliers' median reprojection error at the estimated pose and at the ground-truth pose, the share
of inliers beyond the RANSAC threshold at the ground truth, and how far in the capture order
(dataset frame order) the map frames that observed those inliers lie from the query (the median
gap, and the share within 5 % of the sequence). ``--source-map`` is the uncompressed map the
compressed one was made from (its tracks name the observing frames; points are found by position).
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.spatial import cKDTree

from common import emit

from scenesqueezer_core.dataset import load_dataset, read_image  # noqa: E402
from scenesqueezer_core.geometry import pose_error  # noqa: E402
from scenesqueezer_core.localization import Localizer, checks_disabled_conf  # noqa: E402
from scenesqueezer_core.localization.localizer import prepare_image  # noqa: E402
from scenesqueezer_core.maps.scene_map import SceneMap  # noqa: E402

NEAR_IN_SEQUENCE = 0.05  # share of the capture order counted as "the same pass"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--map", required=True)
    parser.add_argument("--source-map", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--split", default="query")
    parser.add_argument("--threshold", nargs=2, type=float, default=[0.25, 2.0], metavar=("METRES", "DEGREES"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args()

    dataset = load_dataset(args.dataset, check_images=False)
    order = {name: i for i, name in enumerate(sorted(dataset.frames))}
    source = SceneMap.load(args.source_map)
    observers = source.visibility().tocsc()  # (frames, points)
    source_points = cKDTree(np.asarray(source.points_xyz))
    localizer = Localizer.from_file(args.map, checks_disabled_conf(), device=args.device)
    points_xyz = np.asarray(localizer.database.points_xyz)
    ransac_px = float(localizer.conf["ransac_threshold_px"])

    rows, queries = [], dataset.split(args.split)
    for frame in queries:
        image, camera = prepare_image(read_image(frame.image_path), frame.camera, int(localizer.conf["max_image_size"]))
        query = localizer.extractor.extract(image)
        retrieved = localizer.retrieval(query)
        registered = localizer.pose_estimation.register_candidates(
            query.keypoints, camera, localizer.matching.matches(query, retrieved.indices))
        if not registered:
            continue
        estimate = localizer.pose_estimation.estimate(query.keypoints, camera, registered)
        if estimate.pose is None:
            continue
        translation, rotation = pose_error(estimate.pose, frame.cam_from_world)
        if translation <= args.threshold[0] and rotation <= args.threshold[1]:
            continue
        inliers = estimate.correspondences[estimate.inlier_mask]  # (I, 2) query keypoint, map point
        xyz = points_xyz[inliers[:, 1]]

        def residuals(pose, xyz=xyz, inliers=inliers, keypoints=query.keypoints, camera=camera):
            return np.linalg.norm(camera.project(pose.transform(xyz)) - keypoints[inliers[:, 0]], axis=1)

        at_truth = residuals(frame.cam_from_world)
        _, source_ids = source_points.query(xyz)
        seen_by = np.concatenate([observers[:, int(p)].indices for p in source_ids])
        gaps = np.abs(np.array([order[source.frame_names[f]] for f in seen_by]) - order[frame.name]) / len(order)
        rows.append((frame.name, translation, rotation, len(inliers), float(np.median(residuals(estimate.pose))),
                     float(np.median(at_truth)), float(np.mean(at_truth > ransac_px)), float(np.median(gaps)),
                     float(np.mean(gaps <= NEAR_IN_SEQUENCE))))

    lines = [f"## Poses beyond ({args.threshold[0]:g} m, {args.threshold[1]:g}°) on {args.map} "
             f"({len(rows)} of {len(queries)} {args.split} queries, every check off)", "",
             "| query | error m / ° | inliers | median residual at estimate px | at ground truth px "
             f"| inliers beyond {ransac_px:g} px at ground truth | median sequence gap of observing frames "
             f"| observations within {100 * NEAR_IN_SEQUENCE:g} % of the sequence |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, t, r, count, at_estimate, at_truth, beyond, gap, near in rows:
        lines.append(f"| {name} | {t:.2f} / {r:.1f} | {count} | {at_estimate:.1f} | {at_truth:.1f} | {100 * beyond:.0f} % "
                     f"| {100 * gap:.0f} % | {100 * near:.0f} % |")
    return emit("\n".join(lines) + "\n", args.markdown)


if __name__ == "__main__":
    raise SystemExit(main())
