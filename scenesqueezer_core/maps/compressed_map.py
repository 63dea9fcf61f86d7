"""CompressedMap (.sqz): per co-visible cluster a 1024-byte global code, the representative frame's
intrinsics and pose, and the kept points' positions and uint8 descriptor codes (seed section C).

The file is self-contained except for the shipped decoders, which it names by feature type, code
kind (``maps.descriptor_codes``) and content hash: loading refuses a map whose decoders differ from
the installed ones.

In memory a map holds the codes, not float descriptors: ``candidate_features`` decodes one
cluster's codes when the localizer asks for it (the localizer keeps no copy of its own). Codes
that a codebook lookup decodes (product quantization) are decoded at every request; DSQ codes,
whose decoder is a network, are decoded once per point into a 16-bit fixed-point store (twice the
codes; ``maps.decoded_descriptors``), not once per cluster into float32 (4 times the codes per
cluster holding the point). Point coordinates of a version-2 file stay in their 16-bit form too
(``packed_geometry.PackedPoints``) and are decoded for the rows a stage reads.

File layout versions (``mapfile.FORMAT_VERSIONS``): version 1 stored ``points_xyz`` as float32,
ids as int32/int64 and always colours. Version 2 (written now) stores coordinates as 16-bit fixed
point in blocks (``maps.packed_geometry``: error at most half a block step, recorded at compression
as ``info["points_xyz_max_error_m"]``), ids and offsets in the smallest unsigned dtype, and colours
only when kept (``info["stores_colors"]``). Both load into the same arrays, except the
coordinates (float32 for version 1, ``PackedPoints`` for version 2).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MapFileError
from ..features import FEATURE_SETUPS, extractor_name
from ..features.base import Features
from .decoded_descriptors import FixedPointDescriptorStore
from .descriptor_codes import DESCRIPTOR_CODES, DSQ_CODES, DescriptorCodec, load_descriptor_codec
from .mapfile import map_file_bytes, read_map_file, require_arrays, write_map_file
from ..retrieval import VladModel
from ..types import Camera, Pose
from .global_model import load_global_model
from .packed_geometry import XYZ_BLOCK_POINTS, PackedPoints, quantize_points, smallest_unsigned

COMPRESSED_MAP_KIND = "compressed_map"
# The in-memory arrays; version-1 files hold exactly these (points_color always).
ARRAY_NAMES = ["cluster_rotations", "cluster_translations", "cluster_global_codes", "cluster_point_offsets",
               "cluster_point_ids", "points_xyz", "points_codes", "points_color"]
# Version 2 stores points_xyz as these three (packed_geometry) and points_color only when kept.
PACKED_XYZ_ARRAY_NAMES = ["points_xyz_block_corner", "points_xyz_block_step", "points_xyz_fixed"]
V2_ARRAY_NAMES = [n for n in ARRAY_NAMES if n not in ("points_xyz", "points_color")] + PACKED_XYZ_ARRAY_NAMES
# Optional (added after the first release, same container version; older readers ignore them).
# Maps without the frame centres fall back to the representative frame's centre; the two come together.
FRAME_CENTER_ARRAY_NAMES = ["cluster_frame_offsets", "cluster_frame_centers"]
# Maps without the multi-view bits have no trusted occluders: the localizer's occlusion check is off.
OPTIONAL_ARRAY_NAMES = FRAME_CENTER_ARRAY_NAMES + ["points_multiview_bits"]
# Shown for every point of a map compressed without colours (the ROS point cloud needs one).
NO_COLOR_GREY = 128


@dataclass
class CompressedMap:
    """C clusters, P kept points (a point may belong to several clusters)."""

    feature_setup: str
    cameras: list[Camera]  # C representative-frame cameras
    cluster_rotations: np.ndarray  # (C, 3, 3) float64 cam_from_world of the representative frame
    cluster_translations: np.ndarray  # (C, 3) float64
    cluster_global_codes: np.ndarray  # (C, 1024) uint8 quantized global descriptor
    cluster_point_offsets: np.ndarray  # (C + 1,) int64
    cluster_point_ids: np.ndarray  # (S,) int32 kept points of each cluster
    points_xyz: np.ndarray | PackedPoints  # (P, 3) float32; loaded from a version-2 file: decoded when indexed
    points_codes: np.ndarray  # (P, B) uint8 quantized descriptors
    points_color: np.ndarray  # (P, 3) uint8 (NO_COLOR_GREY everywhere when the file stores none)
    # camera centres of every frame of each cluster: where a true query can stand (near-frame check)
    cluster_frame_offsets: np.ndarray | None = None  # (C + 1,) int64
    cluster_frame_centers: np.ndarray | None = None  # (F, 3) float32
    # bit i (np.packbits order) set: point i is multi-view (SceneMap.multiview_points; occlusion check)
    points_multiview_bits: np.ndarray | None = None  # (ceil(P / 8),) uint8
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    # filled at load: the models and the decoded global descriptors
    descriptor_codec: DescriptorCodec | None = None
    global_descriptors: np.ndarray | None = None  # (C, G) float32
    vlad: VladModel | None = None

    @property
    def descriptor_codes(self) -> str:
        """Which codes points_codes holds (a maps.descriptor_codes name; maps before them hold DSQ codes)."""
        return str((self.info.get("models") or {}).get("descriptor_codes", DSQ_CODES))

    # One code per point (seen from several clusters: 1.6 times on the demo map), decoded on demand
    # (LocalizationDatabase).
    points_share_descriptors = True
    decodes_on_demand = True

    @property
    def stores_colors(self) -> bool:
        return bool(self.info.get("stores_colors", True))

    def point_descriptors(self, point_ids: np.ndarray) -> np.ndarray:
        """(N, D) float32 decoded descriptors of points ``(N,)`` (decoded now, not cached)."""
        if self.descriptor_codec is None:
            raise MapFileError("this compressed map was not loaded from a file; load it with CompressedMap.load")
        return self.descriptor_codec.decode(np.asarray(self.points_codes[np.asarray(point_ids, dtype=np.int64)]))

    @functools.cached_property
    def decoded_descriptors(self) -> Callable[[np.ndarray], np.ndarray]:
        """(n,) point ids -> (n, D) float32 descriptors: decoded now for codes that decode cheaply,
        else from the 16-bit store of every point decoded so far (``maps.decoded_descriptors``)."""
        if self.descriptor_codec is None:
            raise MapFileError("this compressed map was not loaded from a file; load it with CompressedMap.load")
        if self.descriptor_codec.decodes_cheaply:
            return self.point_descriptors
        return FixedPointDescriptorStore(len(self.points_xyz), int(self.descriptor_codec.in_dim), self.point_descriptors)

    @functools.cached_property
    def points_multiview(self) -> np.ndarray:
        """(P,) bool from points_multiview_bits; all False for maps written before them (no trusted occluders)."""
        count = len(self.points_xyz)
        if self.points_multiview_bits is None:
            return np.zeros(count, dtype=bool)
        return np.unpackbits(np.asarray(self.points_multiview_bits), count=count).astype(bool)

    @property
    def num_clusters(self) -> int:
        return len(self.cameras)

    @property
    def candidate_ids(self) -> np.ndarray:
        return np.arange(self.num_clusters, dtype=np.int64)

    @property
    def file_bytes(self) -> int:
        return self.path.stat().st_size if self.path else 0

    @property
    def own_residual_px(self) -> float:
        """The source SceneMap's own reprojection noise, measured at compression (0 in older files:
        the kept points' projections into the representative frames have no residual to measure)."""
        return float(self.info.get("source_residual_px", 0.0))

    def cluster_points(self, cluster: int) -> np.ndarray:
        return np.asarray(self.cluster_point_ids[self.cluster_point_offsets[cluster]:self.cluster_point_offsets[cluster + 1]],
                          dtype=np.int64)

    def candidate_pose(self, index: int) -> Pose:
        return Pose(self.cluster_rotations[index], self.cluster_translations[index])

    def candidate_camera(self, index: int) -> Camera:
        return self.cameras[index]

    def candidate_centers(self, index: int) -> np.ndarray:
        """(K, 3) camera centres of the cluster's frames (the representative frame's alone in older maps)."""
        if self.cluster_frame_centers is None or self.cluster_frame_offsets is None:
            return self.candidate_pose(index).center[None]
        start, stop = int(self.cluster_frame_offsets[index]), int(self.cluster_frame_offsets[index + 1])
        return np.asarray(self.cluster_frame_centers[start:stop], dtype=np.float64)

    def candidate_features(self, index: int) -> tuple[Features, np.ndarray]:
        """Kept points of a cluster projected into its representative frame (keypoint positions for
        learned matchers); points behind that frame are dropped."""
        ids, cam_pts = self._points_in_front(index)
        camera = self.cameras[index]
        keypoints = camera.project(cam_pts).astype(np.float32)
        feats = Features(keypoints, np.ones(len(ids), np.float32), self.decoded_descriptors(ids),
                         (camera.width, camera.height))
        return feats, ids

    def candidate_point_ids(self, index: int) -> np.ndarray:
        """(N,) int64: the point ids of ``candidate_features(index)``, without decoding or projecting."""
        return self._points_in_front(index)[0]

    def _points_in_front(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(N,) ids of the cluster's points in front of its representative frame, (N, 3) in that frame."""
        ids = self.cluster_points(index)
        cam_pts = self.candidate_pose(index).transform(self.points_xyz[ids])
        front = cam_pts[:, 2] > 1e-3
        return ids[front], cam_pts[front]

    # ---------------------------------------------------------------- file I/O
    def _manifest(self) -> dict[str, Any]:
        return {
            "feature_setup": self.feature_setup,
            "cameras": [{"model": c.model, "width": c.width, "height": c.height, "params": c.params.tolist()}
                        for c in self.cameras],
            "info": self.info,
        }

    def file_arrays(self) -> dict[str, np.ndarray]:
        """The arrays of a version-2 file: fixed-point coordinates, packed ids, colours when kept.
        Raises ValueError for points or ids that cannot be packed (not finite, negative)."""
        corner, step, fixed = quantize_points(np.asarray(self.points_xyz))
        arrays = {
            "cluster_rotations": self.cluster_rotations, "cluster_translations": self.cluster_translations,
            "cluster_global_codes": self.cluster_global_codes,
            "cluster_point_offsets": smallest_unsigned(self.cluster_point_offsets),
            "cluster_point_ids": smallest_unsigned(self.cluster_point_ids),
            "points_xyz_block_corner": corner, "points_xyz_block_step": step, "points_xyz_fixed": fixed,
            "points_codes": self.points_codes,
        }
        if self.stores_colors:
            arrays["points_color"] = self.points_color
        if self.cluster_frame_offsets is not None:
            arrays["cluster_frame_offsets"] = smallest_unsigned(self.cluster_frame_offsets)
        if self.cluster_frame_centers is not None:
            arrays["cluster_frame_centers"] = self.cluster_frame_centers
        if self.points_multiview_bits is not None:
            arrays["points_multiview_bits"] = self.points_multiview_bits
        return arrays

    def save(self, path: str | os.PathLike) -> Path:
        """Write the map as the newest file version (see the module docstring); atomic."""
        self.path = write_map_file(path, COMPRESSED_MAP_KIND, self._manifest(), self.file_arrays())
        return self.path

    def serialized_bytes(self) -> int:
        """The size save() would write, without writing."""
        return map_file_bytes(COMPRESSED_MAP_KIND, self._manifest(), self.file_arrays())

    @classmethod
    def load(cls, path: str | os.PathLike, verify: bool = True) -> CompressedMap:
        container = read_map_file(path, expected_kind=COMPRESSED_MAP_KIND, verify=verify)
        meta = container.meta
        try:
            cameras = [Camera(c["model"], int(c["width"]), int(c["height"]), np.asarray(c["params"]))
                       for c in meta["cameras"]]
            feature_setup = str(meta["feature_setup"])
            info = dict(meta.get("info", {}))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MapFileError(f"compressed map {path}: manifest lacks or garbles {exc}; recompress the map") from exc
        arrays: dict[str, Any] = dict(container.arrays)
        if container.version == 1:
            require_arrays(container, ARRAY_NAMES)
        else:
            require_arrays(container, V2_ARRAY_NAMES + (["points_color"] if info.get("stores_colors", True) else []))
            arrays["points_xyz"] = _unpack_points(path, *(arrays.pop(n) for n in PACKED_XYZ_ARRAY_NAMES))
            if "points_color" not in arrays:
                arrays["points_color"] = np.broadcast_to(np.uint8(NO_COLOR_GREY), (len(arrays["points_xyz"]), 3))
        optional: dict[str, Any] = {k: arrays[k] for k in OPTIONAL_ARRAY_NAMES if k in arrays}
        required: dict[str, Any] = {k: arrays[k] for k in ARRAY_NAMES}
        if sum(k in optional for k in FRAME_CENTER_ARRAY_NAMES) == 1:
            raise MapFileError(f"compressed map {path} holds only one of {' and '.join(FRAME_CENTER_ARRAY_NAMES)}; "
                               "recompress the map")
        cmap = cls(feature_setup=feature_setup, cameras=cameras, info=info, path=Path(path),
                   **required, **optional)
        cmap.validate()
        cmap._decode()
        return cmap

    def _decode(self) -> None:
        models = self.info.get("models")
        try:
            names = {key: str(models[key]) for key in ("descriptor_features", "descriptor_hash",
                                                       "global_features", "global_hash")}
        except (KeyError, TypeError) as exc:
            raise MapFileError(f"compressed map {self.path}: manifest lacks the model names ({exc}); "
                               "recompress the map") from exc
        if {names["descriptor_features"], names["global_features"]} != {extractor_name(self.feature_setup)}:
            raise MapFileError(f"compressed map {self.path}: its models are for '{names['descriptor_features']}' / "
                               f"'{names['global_features']}' features but the map says '{self.feature_setup}'; "
                               "recompress the map")
        models = names
        codes = self.descriptor_codes
        if codes not in DESCRIPTOR_CODES:
            raise MapFileError(f"compressed map {self.path} holds descriptor codes {codes!r}, this version knows "
                               f"{', '.join(DESCRIPTOR_CODES)}; update scenesqueezer or recompress the map")
        descriptor_model = load_descriptor_codec(models["descriptor_features"], codes)
        if descriptor_model.content_hash != models["descriptor_hash"]:
            raise MapFileError(
                f"compressed map {self.path} was made with {codes} descriptor codebooks {models['descriptor_hash'][:12]}, "
                f"the installed ones are {descriptor_model.content_hash[:12]}; recompress the map with this version"
            )
        vlad, global_model = load_global_model(models["global_features"])
        if global_model.content_hash != models["global_hash"]:
            raise MapFileError(
                f"compressed map {self.path} was made with global quantizer {models['global_hash'][:12]}, "
                f"the installed one is {global_model.content_hash[:12]}; recompress the map with this version"
            )
        if self.points_codes.shape[1] != descriptor_model.code_dim:
            raise MapFileError(f"compressed map {self.path}: descriptor codes have {self.points_codes.shape[1]} bytes, "
                               f"the quantizer expects {descriptor_model.code_dim}; recompress the map")
        if self.cluster_global_codes.shape[1] != global_model.code_dim:
            raise MapFileError(f"compressed map {self.path}: global codes have {self.cluster_global_codes.shape[1]} "
                               f"bytes, the quantizer expects {global_model.code_dim}; recompress the map")
        self.descriptor_codec = descriptor_model
        self.global_descriptors = global_model.decode(np.asarray(self.cluster_global_codes))
        self.vlad = vlad

    def validate(self) -> None:
        """Check every array's dtype, shape and cross-references before anything indexes with them."""
        problems = []
        if self.feature_setup not in FEATURE_SETUPS:
            problems.append(f"unknown feature setup {self.feature_setup!r} (known: {', '.join(sorted(FEATURE_SETUPS))})")
        c = self.num_clusters

        def check(name: str, kinds: str, shape: tuple) -> bool:
            """dtype kind in ``kinds`` ('u', 'i', 'f') and shape matching ``shape`` (None: any size)."""
            array = getattr(self, name)
            ok = (array.dtype.kind in kinds and array.ndim == len(shape)
                  and all(want is None or have == want for have, want in zip(array.shape, shape)))
            if not ok:
                problems.append(f"{name} has dtype {array.dtype} and shape {tuple(array.shape)}, expected "
                                f"{'/'.join(kinds)} kind and shape {tuple('N' if w is None else w for w in shape)}")
            return ok

        p = len(self.points_xyz) if self.points_xyz.ndim >= 1 else -1
        check("cluster_rotations", "f", (c, 3, 3))
        check("cluster_translations", "f", (c, 3))
        check("cluster_global_codes", "u", (c, None))
        check("points_xyz", "f", (None, 3))
        check("points_codes", "u", (p, None))
        check("points_color", "u", (p, 3))
        if check("cluster_point_offsets", "iu", (c + 1,)) and check("cluster_point_ids", "iu", (None,)):
            offsets, ids = self.cluster_point_offsets, self.cluster_point_ids
            if int(offsets[0]) != 0 or int(offsets[-1]) != len(ids) or np.any(np.diff(offsets.astype(np.int64)) < 0):
                problems.append("cluster point offsets do not match the point ids")
            elif len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= p):
                problems.append("a cluster names a point that does not exist")
        if not problems:
            # packed coordinates are finite when their corners and steps are (checked in _unpack_points)
            finite_names = ["cluster_rotations", "cluster_translations"]
            finite_names += [] if isinstance(self.points_xyz, PackedPoints) else ["points_xyz"]
            for name in finite_names:
                if not np.all(np.isfinite(getattr(self, name))):
                    problems.append(f"{name} holds values that are not finite")
        if self.cluster_frame_offsets is not None and self.cluster_frame_centers is not None:
            if check("cluster_frame_offsets", "iu", (c + 1,)) and check("cluster_frame_centers", "f", (None, 3)):
                offsets, centers = self.cluster_frame_offsets, self.cluster_frame_centers
                if (int(offsets[0]) != 0 or np.any(np.diff(offsets.astype(np.int64)) < 1)
                        or int(offsets[-1]) != len(centers)):
                    problems.append("cluster frame offsets do not match the frame centres")
                elif not np.all(np.isfinite(centers)):
                    problems.append("cluster frame centres are not finite")
        if self.points_multiview_bits is not None and check("points_multiview_bits", "u", ((max(p, 0) + 7) // 8,)) \
                and self.points_multiview_bits.dtype != np.uint8:
            problems.append(f"points_multiview_bits has dtype {self.points_multiview_bits.dtype}, expected uint8")
        if problems:
            raise MapFileError(f"compressed map {self.path} is inconsistent: {'; '.join(problems)}; recompress it")


def _unpack_points(path, corner: np.ndarray, step: np.ndarray, fixed: np.ndarray) -> PackedPoints:
    """The (P, 3) float32 coordinates of a version-2 file, decoded when indexed (kept in their 16-bit
    form: a decoded copy would double the file's bytes per point), after checking the packed arrays
    fit together."""
    blocks = -(-len(fixed) // XYZ_BLOCK_POINTS) if fixed.ndim == 2 else -1
    ok = (fixed.ndim == 2 and fixed.shape[1] == 3 and fixed.dtype == np.uint16
          and all(a.ndim == 2 and a.shape == (blocks, 3) and a.dtype == np.float32 for a in (corner, step))
          and np.all(np.isfinite(corner)) and np.all(np.isfinite(step)))
    if not ok:
        raise MapFileError(f"compressed map {path} is inconsistent: the packed point coordinates "
                           f"({', '.join(PACKED_XYZ_ARRAY_NAMES)}) do not fit together; recompress it")
    return PackedPoints(corner, step, fixed)

