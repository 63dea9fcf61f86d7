"""Lighting and camera effects turning a RenderResult into an 8-bit photo: sun shading, sky, haze,
exposure, white balance, gamma, blur, vignetting, sensor noise; night with lit windows."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .render import RenderResult
from .world import World


@dataclass(frozen=True)
class Appearance:
    """Per-frame look. Colours are linear RGB triples in [0, 1]."""

    sun_direction: tuple[float, float, float]  # unit vector towards the sun (world)
    ambient: float
    sky_horizon: tuple[float, float, float]
    sky_zenith: tuple[float, float, float]
    exposure: float
    gamma: float
    white_balance: tuple[float, float, float]
    noise_sigma: float  # in [0, 1] units
    blur_sigma: float  # Gaussian blur, pixels
    motion_blur: int  # length of a horizontal motion-blur kernel, pixels (0 = none)
    vignetting: float
    night: bool = False
    window_light: tuple[float, float, float] = (1.0, 0.78, 0.45)


def _sun(rng: np.random.Generator, elevation_deg: tuple[float, float]) -> tuple[float, float, float]:
    azimuth = rng.uniform(0, 2 * math.pi)
    elevation = math.radians(rng.uniform(*elevation_deg))
    return (math.cos(azimuth) * math.cos(elevation), math.sin(azimuth) * math.cos(elevation), math.sin(elevation))


def scene_sun(world: World) -> tuple[float, float, float]:
    """The mapping run's sun: fixed per scene."""
    return _sun(np.random.default_rng([world.sky_seed, 1]), (25.0, 60.0))


def sample_appearance(split: str, world: World, rng: np.random.Generator) -> Appearance:
    """The look of one frame of ``split`` ("mapping", "query_day" or "query_night")."""
    if split == "mapping":
        return Appearance(
            sun_direction=scene_sun(world), ambient=0.55,
            sky_horizon=(0.85, 0.88, 0.92), sky_zenith=(0.35, 0.55, 0.85),
            exposure=float(rng.uniform(0.95, 1.05)), gamma=1.0, white_balance=(1.0, 1.0, 1.0),
            noise_sigma=1.0 / 255, blur_sigma=0.0, motion_blur=0, vignetting=0.1,
        )
    if split == "query_day":
        temperature = rng.uniform(-0.15, 0.15)
        overcast = rng.random() < 0.4
        return Appearance(
            sun_direction=_sun(rng, (10.0, 70.0)), ambient=0.9 if overcast else rng.uniform(0.35, 0.6),
            sky_horizon=(0.8, 0.8, 0.82) if overcast else (0.9, 0.85, 0.8),
            sky_zenith=(0.6, 0.62, 0.66) if overcast else (0.3, 0.5, 0.9),
            exposure=float(rng.uniform(0.6, 1.5)), gamma=float(rng.uniform(0.75, 1.3)),
            white_balance=(1.0 + temperature, 1.0, 1.0 - temperature),
            noise_sigma=float(rng.uniform(2.0, 6.0)) / 255, blur_sigma=float(rng.uniform(0.0, 1.2)),
            motion_blur=int(rng.integers(3, 8)) if rng.random() < 0.25 else 0,
            vignetting=float(rng.uniform(0.05, 0.3)),
        )
    if split == "query_night":
        return Appearance(
            sun_direction=(0.0, 0.0, 1.0), ambient=float(rng.uniform(0.12, 0.22)),
            sky_horizon=(0.06, 0.07, 0.12), sky_zenith=(0.01, 0.015, 0.04),
            exposure=float(rng.uniform(0.8, 1.3)), gamma=float(rng.uniform(1.2, 1.6)),
            white_balance=(0.7, 0.85, 1.15),
            noise_sigma=float(rng.uniform(4.0, 9.0)) / 255, blur_sigma=float(rng.uniform(0.3, 1.0)),
            motion_blur=int(rng.integers(3, 8)) if rng.random() < 0.3 else 0,
            vignetting=float(rng.uniform(0.2, 0.4)), night=True,
        )
    raise ValueError(f"unknown split {split!r}")


def plane_shading(world: World, appearance: Appearance) -> np.ndarray:
    """(P + 1,) brightness per plane (diffuse sun + ambient); the last entry is for the sky (-1)."""
    normals = np.array([-p.normal for p in world.planes] + [[0.0, 0.0, 1.0]])  # towards the viewer
    sun = np.asarray(appearance.sun_direction)
    diffuse = np.clip(normals @ sun, 0.0, 1.0)
    if appearance.night:
        return np.full(len(normals), appearance.ambient, np.float32)
    return (appearance.ambient + (1.0 - appearance.ambient) * 1.2 * diffuse).astype(np.float32)


def apply_appearance(result: RenderResult, world: World, appearance: Appearance,
                     rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8 RGB photo of a rendered frame under ``appearance``."""
    height, width = result.depth.shape
    shading = plane_shading(world, appearance)[result.plane_index]  # index -1 picks the sky entry
    surface = result.color * shading[..., None]
    if appearance.night:
        light = np.asarray(appearance.window_light, np.float32)
        glow = result.emission[..., None] * light * (0.45 + 0.55 * result.color.mean(axis=2, keepdims=True))
        surface = surface + glow
    horizon = np.asarray(appearance.sky_horizon, np.float32)
    zenith = np.asarray(appearance.sky_zenith, np.float32)
    up = np.sqrt(np.clip(result.elevation, 0.0, 1.0))[..., None]
    sky = horizon * (1.0 - up) + zenith * up
    fog = result.fog[..., None]
    image = np.where(np.isfinite(result.depth)[..., None], surface * (1.0 - fog) + horizon * fog, sky)
    image = image * appearance.exposure * np.asarray(appearance.white_balance, np.float32)
    image = np.clip(image, 0.0, 1.0) ** appearance.gamma
    if appearance.blur_sigma > 0.05:
        image = cv2.GaussianBlur(image, (0, 0), appearance.blur_sigma)
    if appearance.motion_blur > 1:
        kernel = np.full((1, appearance.motion_blur), 1.0 / appearance.motion_blur, np.float32)
        image = cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT)
    if appearance.vignetting > 0:
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        r2 = ((xx - width / 2) ** 2 + (yy - height / 2) ** 2) / ((width / 2) ** 2 + (height / 2) ** 2)
        image = image * (1.0 - appearance.vignetting * r2)[..., None]
    image = image + rng.normal(0.0, appearance.noise_sigma, image.shape).astype(np.float32)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
