"""Exact rendering of a planar world: per-plane homographies, analytic depth, a per-pixel z-buffer.

For a plane with camera-frame normal ``n`` and offset ``d = n . X`` (``X`` on the plane), the ray
through pixel ``p`` (COLMAP convention, pixel (i, j) centre at (i + 0.5, j + 0.5)) is
``r = K^-1 [p, 1]`` with ``r_z = 1``, and it meets the plane at depth ``z = d / (n . r)``. The plane
coordinates ``(s, t)`` of that point are a homography of ``p``; ``cv2.warpPerspective`` samples the
texture through that homography. A pixel shows the plane whose intersection is nearest in front of
the camera and inside the plane's rectangle, so planes that cross the camera plane, overlap or
intersect are all drawn correctly. Textures are sampled trilinearly from an area-filtered mip
pyramid (level chosen per pixel from the homography's Jacobian), which anti-aliases without
changing the geometry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..types import Camera, Pose
from .textures import TextureCache
from .world import World

NEAR_M = 0.05  # intersections nearer than this to the camera plane are clipped
LOD_BIAS = -0.25  # a slightly sharp mip choice: keeps more texture detail for the feature detectors


@dataclass
class RenderResult:
    """Everything a frame needs before its appearance is applied (all arrays (H, W, ...))."""

    color: np.ndarray  # (H, W, 3) float32 surface reflectance in [0, 1]; 0 where sky
    emission: np.ndarray  # (H, W) float32 night emission in [0, 1]
    depth: np.ndarray  # (H, W) float32 z-depth in metres; inf where sky
    plane_index: np.ndarray  # (H, W) int32 index into world.planes; -1 where sky
    fog: np.ndarray  # (H, W) float32 haze weight in [0, 1]
    elevation: np.ndarray  # (H, W) float32 sine of the viewing ray's elevation (sky gradient)


def _clip_near(points_cam: np.ndarray, near: float) -> np.ndarray:
    """Clip a convex polygon (N, 3) in camera coordinates to the half-space z >= near."""
    out = []
    n = len(points_cam)
    for k in range(n):
        a, b = points_cam[k], points_cam[(k + 1) % n]
        a_in, b_in = a[2] >= near, b[2] >= near
        if a_in:
            out.append(a)
        if a_in != b_in:
            alpha = (near - a[2]) / (b[2] - a[2])
            out.append(a + alpha * (b - a))
    return np.array(out).reshape(-1, 3)


def visible_planes(world: World, camera: Camera, pose: Pose) -> list[tuple[int, float, tuple[int, int, int, int]]]:
    """Planes facing the camera whose near-clipped outline touches the image, nearest first.

    Returns (plane index, distance from the camera centre to the rectangle, pixel box
    (x0, y0, x1, y1), end exclusive). The box is conservative; pixels are decided exactly later.
    """
    arrays = world.plane_arrays
    center = pose.center
    rel = center - arrays["origin"]  # (P, 3)
    # Back faces are never visible (the camera is on the normal's side or in the plane).
    front = np.einsum("pk,pk->p", rel, arrays["normal"]) < -1e-9
    s = np.clip(np.einsum("pk,pk->p", rel, arrays["u"]), 0.0, arrays["size"][:, 0])
    t = np.clip(np.einsum("pk,pk->p", rel, arrays["v"]), 0.0, arrays["size"][:, 1])
    nearest = arrays["origin"] + s[:, None] * arrays["u"] + t[:, None] * arrays["v"]
    distance = np.linalg.norm(nearest - center, axis=1)
    corners = arrays["corners"] @ pose.R.T + pose.t  # (P, 4, 3) camera frame
    front &= corners[:, :, 2].max(axis=1) >= NEAR_M
    K = camera.K
    found = []
    for index in np.nonzero(front)[0]:
        outline = corners[index]
        if outline[:, 2].min() < NEAR_M:
            outline = _clip_near(outline, NEAR_M)
            if len(outline) < 3:
                continue
        projected = outline[:, :2] / outline[:, 2:3] * np.diag(K)[:2] + K[:2, 2]
        # Pixel i's centre is at i + 0.5; keep a one-pixel margin.
        x0 = max(0, int(math.floor(projected[:, 0].min() - 0.5)) - 1)
        y0 = max(0, int(math.floor(projected[:, 1].min() - 0.5)) - 1)
        x1 = min(camera.width, int(math.ceil(projected[:, 0].max() - 0.5)) + 2)
        y1 = min(camera.height, int(math.ceil(projected[:, 1].max() - 0.5)) + 2)
        if x1 <= x0 or y1 <= y0:
            continue
        found.append((int(index), float(distance[index]), (x0, y0, x1, y1)))
    found.sort(key=lambda item: item[1])
    return found


def render(world: World, camera: Camera, pose: Pose, cache: TextureCache | None = None) -> RenderResult:
    """Render ``world`` seen by a PINHOLE ``camera`` at ``pose`` (cam_from_world)."""
    if camera.model not in ("PINHOLE", "SIMPLE_PINHOLE") or camera.has_distortion:
        raise ValueError(f"the synthetic renderer draws pinhole cameras only, got {camera.model}")
    cache = cache or TextureCache(world)
    width, height = camera.width, camera.height
    K = camera.K
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    K_inv = np.linalg.inv(K)
    ray_x = (np.arange(width) + 0.5 - cx) / fx  # (W,) ray x at z = 1
    ray_y = (np.arange(height) + 0.5 - cy) / fy  # (H,)
    ray_norm = np.sqrt(ray_x[None, :] ** 2 + ray_y[:, None] ** 2 + 1.0).astype(np.float32)  # (H, W)

    zbuffer = np.full((height, width), np.inf, np.float32)
    plane_index = np.full((height, width), -1, np.int32)
    color = np.zeros((height, width, 3), np.float32)
    emission = np.zeros((height, width), np.float32)
    R, t = pose.R, pose.t

    for index, _, (x0, y0, x1, y1) in visible_planes(world, camera, pose):
        plane = world.planes[index]
        origin_c = R @ np.asarray(plane.origin) + t
        u_c = R @ np.asarray(plane.u)
        v_c = R @ np.asarray(plane.v)
        n_c = np.cross(u_c, v_c)
        offset = n_c @ origin_c
        rx = ray_x[x0:x1][None, :]
        ry = ray_y[y0:y1][:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            # Separable terms first: (1, w) + (h, 1) broadcasts are cheap; one (h, w) pass each.
            z = np.float32(offset) / ((n_c[0] * rx).astype(np.float32) + (n_c[1] * ry + n_c[2]).astype(np.float32))
            inside = z > NEAR_M
            s = z * ((u_c[0] * rx).astype(np.float32) + (u_c[1] * ry + u_c[2]).astype(np.float32))
            s -= np.float32(u_c @ origin_c)
            inside &= (s >= 0) & (s <= plane.width)
            tt = z * ((v_c[0] * rx).astype(np.float32) + (v_c[1] * ry + v_c[2]).astype(np.float32))
            tt -= np.float32(v_c @ origin_c)
            inside &= (tt >= 0) & (tt <= plane.height)
        closer = inside & (z < zbuffer[y0:y1, x0:x1])
        if not closer.any():
            continue
        zbuffer[y0:y1, x0:x1][closer] = z[closer]
        plane_index[y0:y1, x0:x1][closer] = index
        needs_texture = closer & (z * ray_norm[y0:y1, x0:x1] < world.fog_far)
        if not needs_texture.any():
            continue  # fully hazed: the colour is the haze colour, no texture needed

        # Homography from box-local pixel indices (OpenCV: centre at integers) to plane metres.
        plane_from_ray = np.stack([offset * u_c - (u_c @ origin_c) * n_c,
                                   offset * v_c - (v_c @ origin_c) * n_c, n_c])
        pyramid = cache.get(index)

        def texels_per_metre(level: np.ndarray) -> np.ndarray:
            return np.diag([level.shape[1] / plane.width, level.shape[0] / plane.height, 1.0])

        to_index = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
        # Restrict the texture work to the box of pixels that show this plane's texture.
        rows = np.nonzero(needs_texture.any(axis=1))[0]
        cols = np.nonzero(needs_texture.any(axis=0))[0]
        y0, y1, x0, x1 = y0 + rows[0], y0 + rows[-1] + 1, x0 + cols[0], x0 + cols[-1] + 1
        needs_texture = needs_texture[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        local_to_pixel = np.array([[1.0, 0.0, x0 + 0.5], [0.0, 1.0, y0 + 0.5], [0.0, 0.0, 1.0]])
        plane_from_local = plane_from_ray @ K_inv @ local_to_pixel
        base = to_index @ texels_per_metre(pyramid.levels[0]) @ plane_from_local
        lod = _level_of_detail(base, x1 - x0, y1 - y0)
        lod = np.clip(lod, 0.0, len(pyramid.levels) - 1)
        lod_used = lod[needs_texture]
        patch = np.zeros((y1 - y0, x1 - x0, 4), np.float32)
        for level in range(int(math.floor(lod_used.min())), int(math.ceil(lod_used.max())) + 1):
            weight = np.clip(1.0 - np.abs(lod - level), 0.0, 1.0) * needs_texture
            level_rows = np.nonzero(weight.any(axis=1))[0]
            level_cols = np.nonzero(weight.any(axis=0))[0]
            if len(level_rows) == 0:
                continue
            r0, r1, c0, c1 = level_rows[0], level_rows[-1] + 1, level_cols[0], level_cols[-1] + 1
            shift = np.array([[1.0, 0.0, c0], [0.0, 1.0, r0], [0.0, 0.0, 1.0]])
            texture = pyramid.levels[level]
            matrix = to_index @ texels_per_metre(texture) @ plane_from_local @ shift
            warped = cv2.warpPerspective(texture, matrix, (int(c1 - c0), int(r1 - r0)),
                                         flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                         borderMode=cv2.BORDER_REFLECT)
            patch[r0:r1, c0:c1] += warped.astype(np.float32) * (weight[r0:r1, c0:c1, None] / 255.0)
        color[y0:y1, x0:x1][needs_texture] = patch[..., :3][needs_texture]
        emission[y0:y1, x0:x1][needs_texture] = patch[..., 3][needs_texture]

    distance = zbuffer * ray_norm
    fog = np.clip((distance - world.fog_near) / (world.fog_far - world.fog_near), 0.0, 1.0)
    fog[~np.isfinite(zbuffer)] = 1.0
    direction_z = (R.T @ np.array([0.0, 0.0, 1.0]))  # world z axis in camera coordinates
    elevation = (direction_z[0] * ray_x[None, :] + direction_z[1] * ray_y[:, None] + direction_z[2]) / ray_norm
    return RenderResult(color, emission, zbuffer.astype(np.float32), plane_index, fog.astype(np.float32),
                        elevation.astype(np.float32))


def _level_of_detail(texel_from_local: np.ndarray, box_w: int, box_h: int) -> np.ndarray:
    """(box_h, box_w) mip level: log2 of the texel footprint of one pixel step."""
    M = texel_from_local
    i = np.arange(box_w, dtype=np.float64)[None, :]
    j = np.arange(box_h, dtype=np.float64)[:, None]
    w = M[2, 0] * i + M[2, 1] * j + M[2, 2]
    tx = (M[0, 0] * i + M[0, 1] * j + M[0, 2]) / w
    ty = (M[1, 0] * i + M[1, 1] * j + M[1, 2]) / w
    dtx_di = (M[0, 0] - tx * M[2, 0]) / w
    dty_di = (M[1, 0] - ty * M[2, 0]) / w
    dtx_dj = (M[0, 1] - tx * M[2, 1]) / w
    dty_dj = (M[1, 1] - ty * M[2, 1]) / w
    # Geometric mean of the two axis footprints: sharp on oblique surfaces (the road), where the
    # larger footprint would blur everything that the detectors need.
    footprint_sq = (dtx_di**2 + dty_di**2) * (dtx_dj**2 + dty_dj**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        lod = 0.25 * np.log2(footprint_sq) + LOD_BIAS
    return np.nan_to_num(lod, nan=0.0, posinf=64.0, neginf=0.0)
