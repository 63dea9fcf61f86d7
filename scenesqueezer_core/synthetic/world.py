"""Worlds of textured planar rectangles (metres, z up, ground at z = 0) and the scene presets.

A plane is the rectangle ``origin + s * u + t * v`` with ``s`` in ``[0, width]`` and ``t`` in
``[0, height]``; ``u`` and ``v`` are orthonormal. Its texture image is laid out so that texture
column grows with ``s`` and texture row grows with ``t`` (``v`` points "down the texture"; for a
facade ``v`` points down in the world). The visible side of a plane is the side its normal
``u x v`` points away from.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import ConfigError
from .trajectory import CourtyardPath, Path3D, StraightPath

# Average distance between consecutive mapping frames (metres): consecutive frames overlap strongly.
FRAME_SPACING_M = 0.7


@dataclass(frozen=True)
class Plane:
    """A textured rectangle. ``kind`` selects the texture generator; ``style`` seeds its look."""

    name: str
    kind: str  # "facade" | "side" | "ground_road" | "ground_plain" | "ground_paving"
    origin: tuple[float, float, float]
    u: tuple[float, float, float]
    v: tuple[float, float, float]
    width: float
    height: float
    pixels_per_metre: float
    style: int  # per-plane seed of the texture generator

    @property
    def normal(self) -> np.ndarray:
        """(3,) unit normal ``u x v``; the visible side is the one it points away from."""
        return np.cross(np.asarray(self.u), np.asarray(self.v))

    def point(self, s: float | np.ndarray, t: float | np.ndarray) -> np.ndarray:
        """World point(s) at plane coordinates (s, t) metres: (3,) or (N, 3)."""
        s = np.asarray(s, dtype=np.float64)[..., None]
        t = np.asarray(t, dtype=np.float64)[..., None]
        return np.asarray(self.origin) + s * np.asarray(self.u) + t * np.asarray(self.v)

    @property
    def corners(self) -> np.ndarray:
        """(4, 3) corners in order (0,0), (W,0), (W,H), (0,H)."""
        s = np.array([0.0, self.width, self.width, 0.0])
        t = np.array([0.0, 0.0, self.height, self.height])
        return self.point(s, t)

    @property
    def texture_size(self) -> tuple[int, int]:
        """(width_px, height_px) of the level-0 texture."""
        return (max(2, round(self.width * self.pixels_per_metre)),
                max(2, round(self.height * self.pixels_per_metre)))


@dataclass
class World:
    """Planes plus the camera path the trajectories follow and scene-wide look parameters."""

    preset: str
    seed: int
    planes: list[Plane]
    path: Path3D
    road_half_width: float = 0.0  # street presets: road markings are drawn for |y| < this
    fog_near: float = 40.0  # metres; haze starts here ...
    fog_far: float = 120.0  # ... and hides everything beyond, so far planes need no texture
    sky_seed: int = 0
    extras: dict = field(default_factory=dict)

    @functools.cached_property
    def plane_arrays(self) -> dict[str, np.ndarray]:
        """Stacked plane geometry for vectorised culling: origin/u/v/normal (P, 3), size (P, 2), corners (P, 4, 3)."""
        return {
            "origin": np.array([p.origin for p in self.planes], dtype=np.float64).reshape(-1, 3),
            "u": np.array([p.u for p in self.planes], dtype=np.float64).reshape(-1, 3),
            "v": np.array([p.v for p in self.planes], dtype=np.float64).reshape(-1, 3),
            "normal": np.array([p.normal for p in self.planes], dtype=np.float64).reshape(-1, 3),
            "size": np.array([(p.width, p.height) for p in self.planes], dtype=np.float64).reshape(-1, 2),
            "corners": np.array([p.corners for p in self.planes], dtype=np.float64).reshape(-1, 4, 3),
        }

    def to_json(self) -> dict:
        return {
            "preset": self.preset,
            "seed": self.seed,
            "road_half_width": self.road_half_width,
            "fog_near": self.fog_near,
            "fog_far": self.fog_far,
            "path": self.path.to_json(),
            "planes": [asdict(p) for p in self.planes],
        }


def _vec(*xs: float) -> tuple[float, float, float]:
    return (float(xs[0]), float(xs[1]), float(xs[2]))


def facade_facing(start_xy: np.ndarray, end_xy: np.ndarray, height: float) -> dict:
    """Frame of a vertical wall from ``start_xy`` to ``end_xy`` (left to right seen from its visible side).

    Returns ``origin`` (top-left corner), ``u`` (along the wall), ``v`` (down) and ``width``.
    """
    start_xy = np.asarray(start_xy, dtype=np.float64)
    end_xy = np.asarray(end_xy, dtype=np.float64)
    along = end_xy - start_xy
    width = float(np.linalg.norm(along))
    along /= width
    return {
        "origin": _vec(start_xy[0], start_xy[1], height),
        "u": _vec(along[0], along[1], 0.0),
        "v": _vec(0.0, 0.0, -1.0),
        "width": width,
    }


def _wall(name: str, kind: str, start_xy, end_xy, height: float, ppm: float, style: int) -> Plane:
    frame = facade_facing(start_xy, end_xy, height)
    return Plane(name, kind, frame["origin"], frame["u"], frame["v"], frame["width"], float(height), ppm, style)


def _ground_tiles(name: str, kind: str, x0: float, x1: float, y0: float, y1: float, ppm: float,
                  tile: float, rng: np.random.Generator) -> list[Plane]:
    """Horizontal planes tiling [x0, x1] x [y0, y1] at z = 0, normal up (visible from above)."""
    planes = []
    n_x = max(1, math.ceil((x1 - x0) / tile))
    n_y = max(1, math.ceil((y1 - y0) / tile))
    xs = np.linspace(x0, x1, n_x + 1)
    ys = np.linspace(y0, y1, n_y + 1)
    for i in range(n_x):
        for j in range(n_y):
            # u = +x, v = -y: u x v = -z, so the visible side is the top (+z).
            planes.append(Plane(
                f"{name}_{i}_{j}", kind, _vec(xs[i], ys[j + 1], 0.0), _vec(1, 0, 0), _vec(0, -1, 0),
                float(xs[i + 1] - xs[i]), float(ys[j + 1] - ys[j]), ppm, int(rng.integers(2**31)),
            ))
    return planes


def build_street(seed: int, num_frames: int) -> World:
    """A straight street canyon along +x: building rows on both sides, cross streets, ground."""
    rng = np.random.default_rng([seed, 101])
    half_road = float(rng.uniform(5.0, 8.0))  # street 10-16 m wide
    sidewalk = float(rng.uniform(2.0, 3.5))
    building_depth = 12.0
    fog_far = 120.0
    path_length = max(1, num_frames - 1) * FRAME_SPACING_M
    # Buildings continue past both ends of the path so a forward view never sees the street end.
    x_start, x_end = -fog_far - 10.0, path_length + fog_far + 10.0
    planes: list[Plane] = []
    max_setback = 1.5
    for side, sign in (("left", 1.0), ("right", -1.0)):
        x = x_start
        index = 0
        while x < x_end:
            if index > 0 and rng.random() < 0.08:
                # A cross street: a gap with a far building row closing the view through it.
                gap = float(rng.uniform(9.0, 14.0))
                far_y = sign * (half_road + sidewalk + building_depth + rng.uniform(6.0, 14.0))
                height = float(rng.uniform(8.0, 20.0))
                start, end = (np.array([x, far_y]), np.array([x + gap, far_y]))
                if sign < 0:
                    start, end = end, start
                planes.append(_wall(f"{side}_cross_{index}", "facade", start, end, height, 40.0,
                                    int(rng.integers(2**31))))
                x += gap
                index += 1
                continue
            width = float(rng.uniform(8.0, 22.0))
            height = float(rng.uniform(8.0, 20.0))
            setback = float(rng.uniform(0.0, max_setback)) if rng.random() < 0.5 else 0.0
            front_y = sign * (half_road + sidewalk + setback)
            back_y = sign * (half_road + sidewalk + setback + building_depth)
            x0, x1 = x, x + width
            # Seen from the street, "left to right" runs +x on the left row and -x on the right row.
            if sign > 0:
                front = (np.array([x0, front_y]), np.array([x1, front_y]))
                side_a = (np.array([x0, back_y]), np.array([x0, front_y]))  # wall at x0, faces -x
                side_b = (np.array([x1, front_y]), np.array([x1, back_y]))  # wall at x1, faces +x
            else:
                front = (np.array([x1, front_y]), np.array([x0, front_y]))
                side_a = (np.array([x0, front_y]), np.array([x0, back_y]))
                side_b = (np.array([x1, back_y]), np.array([x1, front_y]))
            planes.append(_wall(f"{side}_facade_{index}", "facade", *front, height, 64.0, int(rng.integers(2**31))))
            planes.append(_wall(f"{side}_sideA_{index}", "side", *side_a, height, 32.0, int(rng.integers(2**31))))
            planes.append(_wall(f"{side}_sideB_{index}", "side", *side_b, height, 32.0, int(rng.integers(2**31))))
            x = x1
            index += 1
    inner = half_road + sidewalk + max_setback
    outer = half_road + sidewalk + building_depth + 16.0
    planes += _ground_tiles("road", "ground_road", x_start, x_end, -inner, inner, 64.0, 12.0, rng)
    planes += _ground_tiles("ground_left", "ground_plain", x_start, x_end, inner, outer, 24.0, 30.0, rng)
    planes += _ground_tiles("ground_right", "ground_plain", x_start, x_end, -outer, -inner, 24.0, 30.0, rng)
    lane_y = float(-half_road / 2.0)  # drive in the right-hand lane
    path = StraightPath(start=(0.0, lane_y, 1.6), length=path_length, lateral_limit=half_road - 1.0)
    return World("street", seed, planes, path, road_half_width=half_road, fog_near=40.0, fog_far=fog_far,
                 sky_seed=int(rng.integers(2**31)), extras={"sidewalk": sidewalk})


def build_courtyard(seed: int, num_frames: int) -> World:
    """A closed rectangular courtyard: rows of facades on all four sides facing in, paved ground."""
    rng = np.random.default_rng([seed, 202])
    size_x = float(rng.uniform(32.0, 48.0))
    size_y = float(rng.uniform(28.0, 40.0))
    corners = [np.array(c, dtype=np.float64) for c in ((0, 0), (size_x, 0), (size_x, size_y), (0, size_y))]
    planes: list[Plane] = []
    # Walk the boundary clockwise seen from above, so "left to right" seen from inside runs along it.
    boundary = [corners[0], corners[3], corners[2], corners[1], corners[0]]
    for side_index in range(4):
        start, end = boundary[side_index], boundary[side_index + 1]
        length = float(np.linalg.norm(end - start))
        direction = (end - start) / length
        position = 0.0
        index = 0
        while position < length - 1e-6:
            width = float(rng.uniform(7.0, 16.0))
            if length - (position + width) < 5.0:
                width = length - position
            height = float(rng.uniform(8.0, 20.0))
            a = start + direction * position
            b = start + direction * (position + width)
            planes.append(_wall(f"side{side_index}_facade_{index}", "facade", a, b, height, 64.0,
                                int(rng.integers(2**31))))
            position += width
            index += 1
    planes += _ground_tiles("paving", "ground_paving", 0.0, size_x, 0.0, size_y, 64.0, 12.0, rng)
    path = CourtyardPath(size=(size_x, size_y), height=1.6, frame_spacing=FRAME_SPACING_M,
                         length=max(1, num_frames - 1) * FRAME_SPACING_M)
    return World("courtyard", seed, planes, path, fog_near=80.0, fog_far=200.0,
                 sky_seed=int(rng.integers(2**31)), extras={"size": [size_x, size_y]})


PRESETS: dict[str, Callable[[int, int], World]] = {
    "street": build_street,
    "courtyard": build_courtyard,
}


def build_world(preset: str, seed: int, num_frames: int) -> World:
    if preset not in PRESETS:
        raise ConfigError(f"unknown scene preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[preset](int(seed), int(num_frames))
