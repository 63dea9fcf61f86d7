"""Plane textures: real photographs bundled with scikit-image mixed with procedural detail.

Every texture is a pure function of (plane, world), so parallel workers build identical textures
without sharing memory. Textures are ``(H, W, 4)`` uint8: RGB plus an emission channel (windows
lit at night). Ground textures are laid out in world coordinates (markings, paving joints and
noise continue seamlessly across tiles).
"""

from __future__ import annotations

import colorsys
import functools
from collections import OrderedDict

import cv2
import numpy as np

from ..errors import SceneSqueezerError
from .world import Plane, World

# scikit-image images that ship inside the wheel (no download). Others (e.g. "eagle") need pooch
# and the network, so they are never used.
PHOTO_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "colorwheel",
               "motorcycle_left", "motorcycle_right", "hubble_deep_field", "retina", "logo")
GRAY_NAMES = ("camera", "text", "page", "coins", "moon", "clock", "cell", "brick", "grass", "gravel")


def _load_skimage(name: str) -> np.ndarray:
    from skimage import data

    try:
        if name in ("motorcycle_left", "motorcycle_right"):
            left, right, _ = data.stereo_motorcycle()
            return left if name == "motorcycle_left" else right
        return getattr(data, name)()
    except Exception as exc:  # skimage raises ModuleNotFoundError / OSError / ValueError here
        raise SceneSqueezerError(
            f"cannot load the bundled scikit-image picture {name!r} ({exc}); the synthetic scenes need "
            "the images shipped inside the scikit-image wheel: reinstall it with "
            "`pip install --force-reinstall scikit-image` (no network access is needed afterwards)"
        ) from exc


@functools.lru_cache(maxsize=1)
def photo_library() -> tuple[np.ndarray, ...]:
    """Colour photographs as (H, W, 3) float32 in [0, 1]."""
    photos = []
    for name in PHOTO_NAMES:
        image = _load_skimage(name)
        if image.ndim == 3 and image.shape[2] == 4:
            image = image[:, :, :3]
        photos.append(image.astype(np.float32) / 255.0)
    return tuple(photos)


@functools.lru_cache(maxsize=1)
def gray_library() -> dict[str, np.ndarray]:
    """Grey-level pictures and material samples as (H, W) float32 in [0, 1]."""
    return {name: _load_skimage(name).astype(np.float32) / 255.0 for name in GRAY_NAMES}


# ----------------------------------------------------------------------------------- noise
def _hash01(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic pseudo-random numbers in [0, 1) for integer lattice points (splitmix64)."""
    with np.errstate(over="ignore"):
        h = (ix.astype(np.int64).view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
             ^ iy.astype(np.int64).view(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
             ^ np.uint64(seed & 0xFFFFFFFF) * np.uint64(0x165667B19E3779F9))
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) / float(2**53)


def _interp_weights(coords: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Dense (N, K) smooth-bilinear weights of N coordinates onto lattice indices (K,)."""
    g = coords / cell
    base = np.floor(g).astype(np.int64)
    lattice = np.arange(base.min(), base.max() + 2)
    frac = g - base
    frac = frac * frac * (3.0 - 2.0 * frac)
    weights = np.zeros((len(coords), len(lattice)), dtype=np.float32)
    rows = np.arange(len(coords))
    weights[rows, base - lattice[0]] = 1.0 - frac
    weights[rows, base - lattice[0] + 1] = frac
    return weights, lattice


def world_noise(xs: np.ndarray, ys: np.ndarray, cell: float, seed: int) -> np.ndarray:
    """Value noise in [0, 1] on the axis-aligned grid ``xs`` (W,) x ``ys`` (H,) metres -> (H, W).

    A lattice fixed in the world makes the noise continuous across texture tiles.
    """
    wx, lx = _interp_weights(np.asarray(xs, np.float64), cell)
    wy, ly = _interp_weights(np.asarray(ys, np.float64), cell)
    values = _hash01(lx[None, :], ly[:, None], seed).astype(np.float32)
    return wy @ values @ wx.T


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1], (height, width), for textures that need no world alignment."""
    small = rng.random((max(2, cells * height // max(height, width) + 2),
                        max(2, cells * width // max(height, width) + 2))).astype(np.float32)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC).clip(0.0, 1.0)


def _tiled(gray: np.ndarray, period_px: float, height: int, width: int, offset: tuple[int, int]) -> np.ndarray:
    """Mirror-tile a sample resized to ``period_px`` (no seams) and crop (height, width) at ``offset``."""
    period_px = max(8, int(period_px))
    sample = cv2.resize(gray, (period_px, max(8, round(period_px * gray.shape[0] / gray.shape[1]))),
                        interpolation=cv2.INTER_AREA)
    tile = np.block([[sample, sample[:, ::-1]], [sample[::-1, :], sample[::-1, ::-1]]])
    reps_y = (height + offset[0]) // tile.shape[0] + 1
    reps_x = (width + offset[1]) // tile.shape[1] + 1
    big = np.tile(tile, (reps_y, reps_x))
    return big[offset[0]:offset[0] + height, offset[1]:offset[1] + width]


def _world_tiled(gray: np.ndarray, period_m: float, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Sample a material picture repeated every ``period_m`` metres of the world grid (H, W)."""
    h, w = gray.shape
    sample = np.block([[gray, gray[:, ::-1]], [gray[::-1, :], gray[::-1, ::-1]]])
    map_x = ((xs / (2 * period_m)) % 1.0 * 2 * w).astype(np.float32)
    map_y = ((ys / (2 * period_m * h / w)) % 1.0 * 2 * h).astype(np.float32)
    map_x = np.ascontiguousarray(np.broadcast_to(map_x[None, :], (len(ys), len(xs))))
    map_y = np.ascontiguousarray(np.broadcast_to(map_y[:, None], (len(ys), len(xs))))
    return cv2.remap(sample, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def _random_colour(rng: np.random.Generator, saturation=(0.1, 0.5), value=(0.45, 0.9)) -> np.ndarray:
    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*saturation), rng.uniform(*value))
    return np.array(rgb, dtype=np.float32)


def _photo_crop(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random crop of a random bundled photo resized to (height, width, 3)."""
    photo = photo_library()[rng.integers(len(photo_library()))]
    ph, pw = photo.shape[:2]
    aspect = width / max(1, height)
    crop_h = int(rng.uniform(0.3, 1.0) * ph)
    crop_w = int(min(pw, crop_h * aspect))
    crop_h = max(4, int(crop_w / aspect)) if crop_w == pw else crop_h
    y = rng.integers(0, max(1, ph - crop_h + 1))
    x = rng.integers(0, max(1, pw - crop_w + 1))
    crop = photo[y:y + crop_h, x:x + crop_w]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    interp = cv2.INTER_AREA if crop.shape[1] > width else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(crop), (max(1, width), max(1, height)), interpolation=interp)


def _paste(canvas: np.ndarray, patch: np.ndarray, y: int, x: int, mask: np.ndarray | None = None) -> None:
    """Write ``patch`` into ``canvas`` at (y, x), clipped to the canvas."""
    h, w = patch.shape[:2]
    y0, x0 = max(0, y), max(0, x)
    y1, x1 = min(canvas.shape[0], y + h), min(canvas.shape[1], x + w)
    if y1 <= y0 or x1 <= x0:
        return
    part = patch[y0 - y:y1 - y, x0 - x:x1 - x]
    if mask is None:
        canvas[y0:y1, x0:x1] = part
    else:
        m = mask[y0 - y:y1 - y, x0 - x:x1 - x]
        canvas[y0:y1, x0:x1] = np.where(m[..., None] if canvas.ndim == 3 else m, part, canvas[y0:y1, x0:x1])


def _fill(canvas: np.ndarray, y: int, x: int, h: int, w: int, value) -> None:
    y0, x0 = max(0, y), max(0, x)
    y1, x1 = min(canvas.shape[0], y + h), min(canvas.shape[1], x + w)
    if y1 > y0 and x1 > x0:
        canvas[y0:y1, x0:x1] = value


# ----------------------------------------------------------------------------------- facades
def _wall_material(rng: np.random.Generator, height: int, width: int, ppm: float) -> np.ndarray:
    """(height, width) grey-level wall material around 0.5."""
    lib = gray_library()
    offset = (int(rng.integers(0, 400)), int(rng.integers(0, 400)))
    kind = rng.choice(["brick", "plaster", "stone", "panel"])
    if kind == "brick":
        g = _tiled(lib["brick"], rng.uniform(1.4, 2.4) * ppm, height, width, offset)
        g = 0.5 + (g - g.mean()) * rng.uniform(1.2, 2.0)
    elif kind == "plaster":
        src = lib["gravel"] if rng.random() < 0.5 else lib["grass"]
        g = _tiled(src, rng.uniform(0.8, 2.0) * ppm, height, width, offset)
        g = 0.5 + (g - g.mean()) * rng.uniform(0.8, 1.4)
    elif kind == "stone":
        g = _tiled(lib["gravel"], rng.uniform(1.0, 2.0) * ppm, height, width, offset)
        g = 0.5 + (g - g.mean()) * 0.5
        row_h = max(4, int(rng.uniform(0.35, 0.6) * ppm))
        block_w = max(8, int(rng.uniform(0.7, 1.3) * ppm))
        joint = max(1, int(0.02 * ppm))
        for r, y in enumerate(range(0, height, row_h)):
            g[y:y + joint] *= 0.6
            shift = (block_w // 2) * (r % 2)
            for x in range(shift, width, block_w):
                g[y:y + row_h, x:x + joint] *= 0.6
            g[y:y + row_h] *= rng.uniform(0.9, 1.1)
    else:
        g = _tiled(lib["moon"], rng.uniform(2.0, 4.0) * ppm, height, width, offset)
        g = 0.5 + (g - g.mean()) * 0.8
        panel = max(8, int(rng.uniform(1.5, 3.0) * ppm))
        joint = max(1, int(0.025 * ppm))
        for y in range(0, height, panel):
            g[y:y + joint] *= 0.55
        for x in range(0, width, panel):
            g[:, x:x + joint] *= 0.55
    # Fine grain on every material: real walls are never flat, and corners/blobs feed the detectors.
    grain = _tiled(lib["gravel"], rng.uniform(0.4, 0.8) * ppm, height, width, (offset[1], offset[0]))
    g = g + (grain - grain.mean()) * rng.uniform(0.25, 0.5)
    stains = _smooth_noise(rng, height, width, cells=int(rng.integers(4, 12)))
    return (g * (0.7 + 0.5 * stains)).astype(np.float32)


def _window(rng: np.random.Generator, h: int, w: int, frame_colour: np.ndarray, frame_px: int,
            mullions: int, curtain: np.ndarray | None) -> np.ndarray:
    """(h, w, 3) window: frame, glass reflecting a photo and the sky, optional curtain and bars."""
    window = np.empty((h, w, 3), np.float32)
    window[:] = frame_colour
    gh, gw = max(1, h - 2 * frame_px), max(1, w - 2 * frame_px)
    reflection = _photo_crop(rng, gh, gw)
    sky = np.linspace(0.55, 0.15, gh, dtype=np.float32)[:, None, None] * np.array([0.7, 0.8, 1.0], np.float32)
    glass = 0.75 * reflection * rng.uniform(0.6, 1.0) + 0.25 * sky
    if curtain is not None:
        depth = int(gh * rng.uniform(0.3, 1.0))
        folds = 0.85 + 0.15 * np.sin(np.arange(gw) * rng.uniform(0.2, 0.6))[None, :, None]
        glass[:depth] = curtain * folds
    window[frame_px:frame_px + gh, frame_px:frame_px + gw] = glass
    bar = max(1, frame_px // 2)
    if mullions >= 1:
        window[:, w // 2 - bar // 2:w // 2 + bar - bar // 2 + 1] = frame_colour
    if mullions >= 2:
        window[int(h * 0.35):int(h * 0.35) + bar + 1] = frame_colour
    return window


def _text_patch(rng: np.random.Generator, h: int, w: int, colour: np.ndarray) -> np.ndarray:
    """A sign: a crop of printed text from skimage's pictures on a coloured board."""
    lib = gray_library()
    src = lib["text"] if rng.random() < 0.5 else lib["page"]
    sh, sw = src.shape
    crop_h = int(rng.integers(sh // 4, sh // 2))
    crop_w = min(sw, int(crop_h * w / max(1, h)))
    y = int(rng.integers(0, sh - crop_h + 1))
    x = int(rng.integers(0, sw - crop_w + 1))
    ink = cv2.resize(src[y:y + crop_h, x:x + crop_w], (w, h), interpolation=cv2.INTER_AREA)
    ink = (ink - ink.min()) / max(1e-3, float(np.ptp(ink)))
    if rng.random() < 0.5:
        ink = 1.0 - ink
    return (colour[None, None, :] * (0.25 + 0.75 * ink[..., None])).astype(np.float32)


def _graffiti(rng: np.random.Generator, canvas: np.ndarray, y_max: int, ppm: float) -> None:
    for _ in range(int(rng.integers(0, 4))):
        colour = tuple(float(c) for c in _random_colour(rng, (0.6, 1.0), (0.6, 1.0)))
        cx = int(rng.integers(0, canvas.shape[1]))
        cy = int(rng.integers(int(0.3 * ppm), max(int(0.3 * ppm) + 1, y_max)))
        points = (np.array([cx, cy]) + np.cumsum(rng.normal(0, 0.25 * ppm, size=(int(rng.integers(4, 12)), 2)), axis=0))
        cv2.polylines(canvas, [points.astype(np.int32)], False, colour, max(1, int(rng.uniform(0.03, 0.08) * ppm)),
                      lineType=cv2.LINE_AA)


def facade_texture(plane: Plane) -> np.ndarray:
    """(H, W, 4) float32 facade: wall, ground-floor shops, signs, posters, window grid, cornice.

    Channel 3 is the emission of windows lit at night.
    """
    rng = np.random.default_rng([plane.style, 11])
    ppm = plane.pixels_per_metre
    width_px, height_px = plane.texture_size

    def px(metres: float) -> int:
        return int(round(metres * ppm))

    wall_colour = _random_colour(rng)
    wall = _wall_material(rng, height_px, width_px, ppm)
    canvas = np.zeros((height_px, width_px, 3), np.float32)
    canvas[:] = wall[..., None] * wall_colour[None, None, :] * 1.4
    emission = np.zeros((height_px, width_px), np.float32)
    ground_floor = rng.uniform(3.6, 4.6)
    floor_h = rng.uniform(2.9, 3.5)
    # Row 0 of the texture is the roof line; rows grow downwards, so "height above ground" h sits at row H - h.
    top = plane.height

    # Cornice and floor bands.
    cornice = rng.uniform(0.25, 0.6)
    _fill(canvas, 0, 0, px(cornice), width_px, _random_colour(rng, (0.0, 0.2), (0.3, 0.95)))
    _fill(canvas, px(cornice), 0, max(1, px(0.05)), width_px, 0.15)
    if rng.random() < 0.6:
        band_colour = _random_colour(rng, (0.0, 0.3), (0.4, 0.95))
        h = ground_floor
        while h < top - 1.0:
            _fill(canvas, px(top - h), 0, max(2, px(0.15)), width_px, band_colour)
            h += floor_h

    # Upper floors: a window grid with per-building style and per-window variety.
    window_w = rng.uniform(0.9, 1.5)
    window_h = rng.uniform(1.3, 1.9)
    pitch = window_w + rng.uniform(0.7, 1.8)
    n_cols = max(1, int((plane.width - 0.8) / pitch))
    margin = (plane.width - n_cols * pitch) / 2 + (pitch - window_w) / 2
    frame_colour = _random_colour(rng, (0.0, 0.3), (0.1, 0.95))
    frame_px = max(1, px(rng.uniform(0.05, 0.1)))
    mullions = int(rng.integers(0, 3))
    curtain_prob = rng.uniform(0.0, 0.5)
    shutters = rng.random() < 0.25
    shutter_colour = _random_colour(rng, (0.3, 0.8), (0.3, 0.8))
    floor_base = ground_floor
    while floor_base + window_h + 1.0 < top - cornice:
        sill = floor_base + rng.uniform(0.8, 1.0)
        row = px(top - sill - window_h)
        for col in range(n_cols):
            x = px(margin + col * pitch)
            if rng.random() < 0.05:
                continue  # a walled-up window: irregularity that keeps the grid from repeating
            curtain = _random_colour(rng, (0.1, 0.6), (0.5, 1.0)) if rng.random() < curtain_prob else None
            window = _window(rng, px(window_h), px(window_w), frame_colour, frame_px, mullions, curtain)
            _paste(canvas, window, row, x)
            _fill(canvas, row + px(window_h), x - px(0.08), max(1, px(0.08)), px(window_w + 0.16), 0.8)
            if shutters:
                shutter_w = px(window_w / 2)
                slat_rows = 0.8 + 0.2 * (np.arange(px(window_h)) % max(2, px(0.06)) > 0)
                slats = np.broadcast_to(slat_rows[:, None, None] * shutter_colour, (px(window_h), shutter_w, 3))
                for sx in (x - shutter_w, x + px(window_w)):
                    _paste(canvas, slats, row, sx)
            if rng.random() < 0.3:
                _fill(emission, row + frame_px, x + frame_px, px(window_h) - 2 * frame_px,
                      px(window_w) - 2 * frame_px, 1.0)
        floor_base += floor_h

    # Ground floor: shop windows, doors, a sign band, posters and graffiti.
    ground_row = px(top - ground_floor)
    x = px(rng.uniform(0.2, 1.0))
    sign_colour = _random_colour(rng, (0.4, 1.0), (0.5, 1.0))
    while x < width_px - px(1.2):
        choice = rng.random()
        if choice < 0.45:
            shop_w = px(rng.uniform(1.8, 4.0))
            shop_h = px(rng.uniform(2.0, 2.6))
            display = _photo_crop(rng, shop_h, shop_w) * rng.uniform(0.7, 1.1)
            _fill(canvas, height_px - shop_h - px(0.5) - frame_px, x - frame_px, shop_h + 2 * frame_px,
                  shop_w + 2 * frame_px, frame_colour * 0.5)
            _paste(canvas, display, height_px - shop_h - px(0.5), x)
            emission[max(0, height_px - shop_h - px(0.5)):height_px - px(0.5), x:x + shop_w] = 1.0
            x += shop_w + px(rng.uniform(0.3, 1.2))
        elif choice < 0.7:
            door_w, door_h = px(rng.uniform(1.0, 1.6)), px(rng.uniform(2.1, 2.6))
            door_colour = _random_colour(rng, (0.2, 0.7), (0.1, 0.5))
            _fill(canvas, height_px - door_h, x, door_h, door_w, door_colour)
            _fill(canvas, height_px - door_h + px(0.15), x + px(0.12), door_h // 2 - px(0.2),
                  door_w - px(0.24), door_colour * 0.7)
            _fill(canvas, height_px - door_h // 2, x + door_w - px(0.2), px(0.05), px(0.1), 0.85)
            x += door_w + px(rng.uniform(0.3, 1.0))
        elif choice < 0.85:
            poster_w, poster_h = px(rng.uniform(0.6, 1.2)), px(rng.uniform(0.8, 1.6))
            _paste(canvas, _photo_crop(rng, poster_h, poster_w), height_px - poster_h - px(rng.uniform(0.6, 1.2)), x)
            x += poster_w + px(rng.uniform(0.3, 1.0))
        else:
            x += px(rng.uniform(0.5, 2.0))
    if ground_floor < top - 1.0:
        sign_h = px(rng.uniform(0.5, 0.9))
        sign_w = px(rng.uniform(2.0, min(8.0, max(2.1, plane.width - 1.0))))
        sign_x = int(rng.integers(0, max(1, width_px - sign_w)))
        _paste(canvas, _text_patch(rng, sign_h, sign_w, sign_colour), ground_row - sign_h - px(0.2), sign_x)
    _graffiti(rng, canvas, height_px - ground_row, ppm)
    if rng.random() < 0.7:  # a drainpipe
        pipe_x = int(rng.integers(0, width_px))
        _fill(canvas, px(cornice), pipe_x, height_px, max(1, px(0.1)), wall_colour * 0.5)
    return np.dstack([canvas, emission])


def side_texture(plane: Plane) -> np.ndarray:
    """(H, W, 4) side wall: material, sparse small windows and sometimes a mural from a photo."""
    rng = np.random.default_rng([plane.style, 12])
    ppm = plane.pixels_per_metre
    width_px, height_px = plane.texture_size
    colour = _random_colour(rng)
    canvas = _wall_material(rng, height_px, width_px, ppm)[..., None] * colour * 1.4
    emission = np.zeros((height_px, width_px), np.float32)
    frame = _random_colour(rng, (0.0, 0.2), (0.2, 0.9))
    for _ in range(int(rng.integers(0, 8))):
        w, h = int(rng.uniform(0.6, 1.2) * ppm), int(rng.uniform(0.8, 1.5) * ppm)
        y, x = int(rng.integers(0, max(1, height_px - h))), int(rng.integers(0, max(1, width_px - w)))
        _paste(canvas, _window(rng, h, w, frame, max(1, int(0.06 * ppm)), 0, None), y, x)
        if rng.random() < 0.3:
            _fill(emission, y, x, h, w, 1.0)
    if rng.random() < 0.35:
        w = int(width_px * rng.uniform(0.4, 0.9))
        h = int(min(height_px * 0.8, w * rng.uniform(0.5, 1.2)))
        _paste(canvas, _photo_crop(rng, h, w), int(rng.integers(0, max(1, height_px - h))),
               int(rng.integers(0, max(1, width_px - w))))
    return np.dstack([canvas, emission])


# ----------------------------------------------------------------------------------- ground
def _ground_grid(plane: Plane) -> tuple[np.ndarray, np.ndarray]:
    """World x (W,) and y (H,) of the texel centres of a ground tile (u = +x, v = -y)."""
    width_px, height_px = plane.texture_size
    xs = plane.origin[0] + (np.arange(width_px) + 0.5) * plane.width / width_px
    ys = plane.origin[1] - (np.arange(height_px) + 0.5) * plane.height / height_px
    return xs, ys


def _asphalt(xs: np.ndarray, ys: np.ndarray, seed: int) -> np.ndarray:
    lib = gray_library()
    grain = _world_tiled(lib["gravel"], 1.6, xs, ys)
    patches = world_noise(xs, ys, 5.0, seed + 1)
    fine = world_noise(xs, ys, 0.7, seed + 2)
    repaired = world_noise(xs, ys, 2.5, seed + 3) > 0.72  # sharp-edged asphalt repairs
    g = 0.28 + 0.45 * (grain - 0.5) + 0.12 * (patches - 0.5) + 0.1 * (fine - 0.5)
    g[repaired] *= 0.72
    colour = np.array([1.0, 0.98, 0.95], np.float32)
    return g[..., None] * colour


def _cell_values(coords: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer cell of each coordinate: (unique cells (K,), index of each coordinate's cell (N,))."""
    return np.unique(np.floor(coords / cell), return_inverse=True)


def _paving(xs: np.ndarray, ys: np.ndarray, seed: int, slab: float, tint: np.ndarray) -> np.ndarray:
    lib = gray_library()
    stone = _world_tiled(lib["brick"], 2.2, xs, ys)
    variation = world_noise(xs, ys, 3.0, seed + 3)
    cells_x, index_x = _cell_values(xs, slab)
    cells_y, index_y = _cell_values(ys, slab)
    tones = _hash01(cells_x[None, :], cells_y[:, None], seed + 4).astype(np.float32)
    slab_tone = tones[index_y[:, None], index_x[None, :]]
    g = 0.45 + 0.3 * (stone - 0.5) + 0.15 * (variation - 0.5) + 0.2 * (slab_tone - 0.5)
    joints = ((xs % slab) < 0.025)[None, :] | ((ys % slab) < 0.025)[:, None]
    g[joints] *= 0.5
    return g[..., None] * tint


def _draw_world_discs(canvas: np.ndarray, xs: np.ndarray, ys: np.ndarray, cell: float, prob: float,
                      y_range: tuple[float, float], seed: int, radius: float) -> None:
    """Manhole covers at hashed positions, one candidate per ``cell`` metres along x."""
    ix = np.arange(np.floor((xs[0] - radius) / cell), np.floor((xs[-1] + radius) / cell) + 1)
    present = _hash01(ix, np.zeros_like(ix), seed) < prob
    cx = (ix + 0.2 + 0.6 * _hash01(ix, np.ones_like(ix), seed)) * cell
    cy = y_range[0] + (y_range[1] - y_range[0]) * _hash01(ix, np.full_like(ix, 2), seed)
    step = xs[1] - xs[0]
    for x_c, y_c, ok in zip(cx, cy, present):
        if not ok:
            continue
        cols = np.nonzero(np.abs(xs - x_c) <= radius + step)[0]
        rows = np.nonzero(np.abs(ys - y_c) <= radius + step)[0]
        if len(cols) == 0 or len(rows) == 0:
            continue
        dx = xs[cols][None, :] - x_c
        dy = ys[rows][:, None] - y_c
        r = np.hypot(dx, dy)
        inside = r <= radius
        pattern = 0.22 + 0.1 * ((np.floor(dx / 0.08) + np.floor(dy / 0.08)) % 2) + 0.15 * (np.abs(r - radius * 0.85) < 0.03)
        block = canvas[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        block[inside] = pattern[inside][:, None] * np.array([1.0, 0.95, 0.9], np.float32)


def road_texture(plane: Plane, world: World) -> np.ndarray:
    """(H, W, 4) road with lane markings, kerbs, sidewalks and manholes, continuous in the world."""
    xs, ys = _ground_grid(plane)
    seed = world.sky_seed
    half = world.road_half_width
    canvas = _asphalt(xs, ys, seed)
    sidewalk = np.abs(ys) > half + 0.2
    if sidewalk.any():
        tint = np.array([0.95, 0.92, 0.88], np.float32)
        rows = np.nonzero(sidewalk)[0]
        canvas[rows] = _paving(xs, ys[rows], seed, 0.6, tint)
    kerb = (np.abs(ys) > half) & (np.abs(ys) <= half + 0.2)
    canvas[kerb] = 0.62
    # Paint only touches the rows near the centre and edge lines (markings run along x).
    rows = np.nonzero((np.abs(ys) < 0.08) | (np.abs(np.abs(ys) - (half - 0.45)) < 0.08))[0]
    if len(rows):
        X = xs[None, :]
        Y = ys[rows][:, None]
        dashed = (np.abs(Y) < 0.07) & ((X % 9.0) < 4.5)
        edge = np.abs(np.abs(Y) - (half - 0.45)) < 0.07
        wear = 0.75 + 0.25 * world_noise(xs, ys[rows], 0.4, seed + 5)
        paint = ((dashed | edge).astype(np.float32) * wear)[..., None]
        canvas[rows] = canvas[rows] * (1 - paint) + 0.85 * paint
    _draw_world_discs(canvas, xs, ys, 7.0, 0.6, (-half + 1.0, half - 1.0), seed + 6, 0.35)
    return np.dstack([canvas, np.zeros(canvas.shape[:2], np.float32)])


def plain_ground_texture(plane: Plane, world: World) -> np.ndarray:
    xs, ys = _ground_grid(plane)
    canvas = _asphalt(xs, ys, world.sky_seed + 10) * 1.2
    return np.dstack([canvas, np.zeros(canvas.shape[:2], np.float32)])


def paving_texture(plane: Plane, world: World) -> np.ndarray:
    """(H, W, 4) courtyard paving with slabs, colour patches and drains, continuous in the world."""
    xs, ys = _ground_grid(plane)
    seed = world.sky_seed
    tint = np.array([0.95, 0.9, 0.82], np.float32)
    canvas = _paving(xs, ys, seed, 0.8, tint)
    accent = world_noise(xs, ys, 6.0, seed + 7) > 0.7
    canvas[accent] *= np.array([1.1, 0.85, 0.75], np.float32)
    _draw_world_discs(canvas, xs, ys, 6.0, 0.5, (2.0, float(world.extras["size"][1]) - 2.0), seed + 8, 0.3)
    return np.dstack([canvas, np.zeros(canvas.shape[:2], np.float32)])


def make_texture(plane: Plane, world: World) -> np.ndarray:
    """(H, W, 4) uint8 level-0 texture of ``plane``: RGB and night emission."""
    if plane.kind == "facade":
        texture = facade_texture(plane)
    elif plane.kind == "side":
        texture = side_texture(plane)
    elif plane.kind == "ground_road":
        texture = road_texture(plane, world)
    elif plane.kind == "ground_plain":
        texture = plain_ground_texture(plane, world)
    elif plane.kind == "ground_paving":
        texture = paving_texture(plane, world)
    else:
        raise SceneSqueezerError(f"plane {plane.name} has unknown texture kind {plane.kind!r}")
    return (np.clip(texture, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


class MipPyramid:
    """Area-filtered mip levels of a texture; level L's texel covers ``2**L`` level-0 texels (about)."""

    def __init__(self, texture: np.ndarray) -> None:
        self.levels = [texture]
        while min(self.levels[-1].shape[:2]) > 4:
            prev = self.levels[-1]
            size = ((prev.shape[1] + 1) // 2, (prev.shape[0] + 1) // 2)
            self.levels.append(cv2.resize(prev, size, interpolation=cv2.INTER_AREA))

    @property
    def nbytes(self) -> int:
        return sum(level.nbytes for level in self.levels)


class TextureCache:
    """Least-recently-used cache of texture pyramids, bounded in bytes."""

    def __init__(self, world: World, max_bytes: int = 768 * 2**20) -> None:
        self.world = world
        self.max_bytes = max_bytes
        self._entries: OrderedDict[int, MipPyramid] = OrderedDict()
        self._bytes = 0

    def get(self, plane_index: int) -> MipPyramid:
        if plane_index in self._entries:
            self._entries.move_to_end(plane_index)
            return self._entries[plane_index]
        pyramid = MipPyramid(make_texture(self.world.planes[plane_index], self.world))
        self._entries[plane_index] = pyramid
        self._bytes += pyramid.nbytes
        while self._bytes > self.max_bytes and len(self._entries) > 1:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.nbytes
        return pyramid
