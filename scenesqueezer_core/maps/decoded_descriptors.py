"""Decoded descriptors of a compressed map, held in 16-bit fixed point and filled on demand.

The DSQ decoder is a network (1.3-3 ms per thousand codes on two CPU cores), too slow to run
for every retrieved cluster of every query, so decoded descriptors are kept. Kept as float32 they
took 4 times the codes (256 B per XFeat point, and once per cluster a point belongs to: 6.7 MB for
the demo's 1.26 MB map). Here each point is decoded once, the first time a cluster holding it is
asked for, and stored as int16 with one float32 scale per point (the row's largest magnitude maps
to 32767): 132 B per XFeat point, twice its DSQ code. int8 would halve that, but it moved cosine
similarities by up to 0.005 (demo and 7-Scenes QP maps), enough to flip borderline matches: on the
7-Scenes QP maps 2 fewer queries within (0.25 m, 2 deg) at ratios 0.05 and 0.2. int16 moves them
by at most 2e-5 (same maps, real descriptors).

Product-quantized codes decode by a codebook lookup (0.3 ms per 1500 codes), so maps of those
codes keep nothing decoded (``DescriptorCodec.decodes_cheaply``).

Hand-written because no library offers a lazily filled, per-row-scaled fixed-point array; numpy's
zero-filled allocation (calloc) keeps untouched rows out of the resident set.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

FIXED_MAX = 32767  # int16


class FixedPointDescriptorStore:
    """``decode`` ((n,) point ids -> (n, D) float32) memoised per point as int16 plus a scale.

    Shapes: ``values`` (P, D) int16, ``scales`` (P,) float32 (0: not decoded yet).
    """

    def __init__(self, num_points: int, dim: int, decode: Callable[[np.ndarray], np.ndarray]) -> None:
        self._decode = decode
        self.values = np.zeros((num_points, dim), dtype=np.int16)
        self.scales = np.zeros(num_points, dtype=np.float32)

    def __call__(self, point_ids: np.ndarray) -> np.ndarray:
        """(n,) int64 point ids -> (n, D) float32 descriptors (a new array; the caller may keep it)."""
        point_ids = np.asarray(point_ids, dtype=np.int64)
        missing = np.unique(point_ids[self.scales[point_ids] == 0])
        if len(missing):
            self.store(missing, self._decode(missing))
        return self.values[point_ids].astype(np.float32) * self.scales[point_ids, None]

    def store(self, point_ids: np.ndarray, descriptors: np.ndarray) -> None:
        """Keep (n, D) float ``descriptors`` of the (n,) distinct ``point_ids``."""
        peak = np.abs(descriptors).max(axis=1)
        # an all-zero row still gets a positive scale, so that it counts as decoded
        scale = np.where(peak > 0, peak / FIXED_MAX, 1.0).astype(np.float32)
        self.values[point_ids] = np.rint(descriptors / scale[:, None]).astype(np.int16)
        self.scales[point_ids] = scale

    @property
    def num_decoded(self) -> int:
        return int(np.count_nonzero(self.scales))
