"""Compact point geometry of compressed maps: 16-bit fixed-point coordinates with a stated error
bound, a spatial point order that keeps the fixed-point blocks small, and packed integer ids.

Coordinates: points are cut, in file order, into blocks of ``XYZ_BLOCK_POINTS``; each block stores
its bounding-box corner and step (float32, (3,) each) and every coordinate as a uint16 count of
steps, ``step = block extent / 65535`` per axis. **Error bound**: every decoded coordinate lies
within half a step of the original, plus float32 rounding of the corner and step (a few ulp of
the coordinate, the precision float32 storage had before). Ordering the points along a Morton
(Z-order) curve first (``spatial_order``) keeps each block's extent, hence its step, small.
"""

from __future__ import annotations

import numpy as np

XYZ_BLOCK_POINTS = 256
XYZ_MAX_LEVEL = np.iinfo(np.uint16).max  # 65535 steps per block and axis
MORTON_BITS = 16  # per axis: 48-bit keys


def spatial_order(xyz: np.ndarray) -> np.ndarray:
    """(P,) permutation that sorts points ``(P, 3)`` along a Morton curve over their bounding box."""
    xyz = np.asarray(xyz, dtype=np.float64)
    if len(xyz) == 0:
        return np.zeros(0, np.int64)
    low = xyz.min(axis=0)
    extent = max(float((xyz.max(axis=0) - low).max()), 1e-12)
    cells = np.minimum(((xyz - low) / extent * (1 << MORTON_BITS)).astype(np.uint64), (1 << MORTON_BITS) - 1)
    key = np.zeros(len(xyz), np.uint64)
    for bit in range(MORTON_BITS):
        for axis in range(3):
            key |= ((cells[:, axis] >> np.uint64(bit)) & np.uint64(1)) << np.uint64(3 * bit + axis)
    return np.argsort(key, kind="stable")


def quantize_points(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points (P, 3) finite -> (block corners (B, 3) float32, block steps (B, 3) float32,
    fixed-point coordinates (P, 3) uint16), B = ceil(P / XYZ_BLOCK_POINTS)."""
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"points must have shape (P, 3), got {xyz.shape}")
    if not np.all(np.isfinite(xyz)):
        raise ValueError("points hold values that are not finite")
    count = len(xyz)
    blocks = -(-count // XYZ_BLOCK_POINTS)
    block_of = np.arange(count) // XYZ_BLOCK_POINTS
    low = np.full((blocks, 3), np.inf)
    high = np.full((blocks, 3), -np.inf)
    np.minimum.at(low, block_of, xyz)
    np.maximum.at(high, block_of, xyz)
    corner = low.astype(np.float32)
    # float32 rounding may move the corner above the lowest point: step from the stored corner, and
    # round the step up, so that 65535 steps still reach the highest point
    span = high - corner.astype(np.float64)
    step = np.nextafter((span / XYZ_MAX_LEVEL).astype(np.float32), np.float32(np.inf))
    step = np.where(span > 0, step, np.float32(0)).astype(np.float32)
    safe_step = np.where(step > 0, step.astype(np.float64), 1.0)
    levels = np.rint((xyz - corner[block_of].astype(np.float64)) / safe_step[block_of])
    fixed = np.clip(levels, 0, XYZ_MAX_LEVEL).astype(np.uint16)
    return corner, step, fixed


def dequantize_points(corner: np.ndarray, step: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """Inverse of quantize_points: (P, 3) float32 coordinates."""
    return dequantize_rows(corner, step, fixed, np.arange(len(fixed)))


def dequantize_rows(corner: np.ndarray, step: np.ndarray, fixed: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(n, 3) float32 coordinates of the points ``rows`` (n,) non-negative ids (dequantize_points' rows)."""
    block_of = rows // XYZ_BLOCK_POINTS
    xyz = (np.asarray(corner[block_of], np.float64)
           + np.asarray(fixed[rows], np.float64) * np.asarray(step[block_of], np.float64))
    return xyz.astype(np.float32)


def max_quantization_error(corner: np.ndarray, step: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """(P, 3) the stated bound of each coordinate's error: half its block's step plus float32 rounding."""
    block_of = np.arange(len(fixed)) // XYZ_BLOCK_POINTS
    decoded = np.abs(dequantize_points(corner, step, fixed)).astype(np.float64)
    ulp = np.spacing(np.maximum(decoded, np.abs(np.asarray(corner, np.float64)[block_of])).astype(np.float32))
    return 0.5 * np.asarray(step, np.float64)[block_of] + 2.0 * ulp.astype(np.float64)


def smallest_unsigned(values: np.ndarray) -> np.ndarray:
    """Non-negative integers in the smallest unsigned dtype that holds their maximum (at least uint8)."""
    values = np.asarray(values)
    if values.size and int(values.min()) < 0:
        raise ValueError("ids must be non-negative to pack them unsigned")
    top = int(values.max()) if values.size else 0
    return values.astype(np.min_scalar_type(top) if top > 0 else np.uint8)


class PackedPoints:
    """(P, 3) float32 coordinates that stay in their 16-bit file form and are decoded when indexed.

    A compressed map's stages read the coordinates of a few thousand points per query (a
    candidate's points, the inliers, the occluders), never all of them, so decoding the rows asked
    for costs next to nothing, while a decoded (P, 3) float32 copy would take twice the file's
    6 bytes per point (the memory-mapped ``fixed`` array is the file itself). Indexing gives
    exactly ``dequantize_points(corner, step, fixed)[index]``; ``np.asarray`` decodes every point
    (the node does, once, to publish the map's point cloud).

    Hand-written because numpy has no lazily decoded array type; it supports what the localizer
    and the tests do with coordinates (integer, boolean and slice row indexing, ``len``, ``shape``,
    numpy conversion), not general array arithmetic.
    """

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, corner: np.ndarray, step: np.ndarray, fixed: np.ndarray) -> None:
        self.corner, self.step, self.fixed = corner, step, fixed  # (B, 3), (B, 3) float32, (P, 3) uint16

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.fixed), 3)

    def __len__(self) -> int:
        return len(self.fixed)

    def __getitem__(self, index) -> np.ndarray:
        """Rows ``index`` (an integer array, a boolean mask, a slice or an int) as float32 (n, 3) / (3,)."""
        if isinstance(index, tuple):
            raise TypeError("PackedPoints indexes rows only; index the decoded rows for columns")
        index = np.asarray(index) if isinstance(index, (list, np.ndarray)) else index
        if isinstance(index, np.ndarray) and index.dtype.kind in "iu":
            rows = index  # the stages' case: no (P,) range to build
            if rows.size and (int(rows.max()) >= len(self.fixed) or int(rows.min()) < -len(self.fixed)):
                raise IndexError(f"point index out of range for {len(self.fixed)} points")
            rows = np.where(rows < 0, rows + len(self.fixed), rows)
        else:
            rows = np.arange(len(self.fixed))[index]
        return dequantize_rows(self.corner, self.step, self.fixed, rows)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        xyz = dequantize_points(self.corner, self.step, self.fixed)
        return xyz if dtype is None else xyz.astype(dtype)
