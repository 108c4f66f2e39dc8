"""Rendering one sample-line scene to pixels: plate, belt, defect, stain, specks, lighting, noise.

:mod:`resources.data.sample_scenes` samples what is in the image; this module turns it into a uint8
image, with the camera's blur and the sensor's noise last.
"""

import math

import numpy as np
from scipy import ndimage

from resources.data.sample_scenes import NOTCH_R, Defect, Scene, hole_layout

__all__ = ["render"]

# Albedo colours (linear 0..1, RGB); grey images use their luminance.
_PLATE_RGB = np.array([0.64, 0.66, 0.70], dtype=np.float32)
_BELT_RGB = np.array([0.24, 0.27, 0.25], dtype=np.float32)
_STAIN_RGB = np.array([0.42, 0.30, 0.16], dtype=np.float32)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def render(scene: Scene, size: int, colour: bool, noise_rng: np.random.Generator) -> np.ndarray:
    """Render a scene to uint8 pixels (HxW grey or HxWx3 RGB)."""
    channels = 3 if colour else 1
    s = float(size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    cos, sin = math.cos(scene.angle), math.sin(scene.angle)
    dx, dy = xx - scene.centre[0] * s, yy - scene.centre[1] * s
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy  # the part's frame, in pixels
    a = scene.half_width * s
    b = a * scene.aspect
    light = np.array([math.cos(scene.light_angle), math.sin(scene.light_angle)], dtype=np.float32)

    part = _plate_coverage(u, v, a, b, scene.defect)
    belt = _belt(scene, size, xx, yy, light, part)
    plate = _plate(scene, size, colour, u, v, a, b, part, light)
    albedo = _tint(belt, _BELT_RGB, colour) * (1.0 - part[..., None]) + plate * part[..., None]
    albedo = _apply_specks(albedo, scene, size, xx, yy)

    illumination = _illumination(scene, size, xx, yy, light)
    image = albedo * illumination[..., None] * 255.0
    if colour:
        image *= scene.white_balance
    image = ndimage.gaussian_filter(image, sigma=(scene.blur * s / 64.0, scene.blur * s / 64.0, 0))
    image += 3.0 + noise_rng.normal(0.0, scene.noise, (size, size, channels)).astype(np.float32)
    pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return pixels if colour else pixels[..., 0]


def _tint(field: np.ndarray, rgb: np.ndarray, colour: bool) -> np.ndarray:
    """Multiply a scalar field by a colour (or by its luminance for grey)."""
    base = rgb if colour else np.array([float(rgb @ _LUMA)], dtype=np.float32)
    return field[..., None] * base


def _plate_coverage(
    u: np.ndarray, v: np.ndarray, a: float, b: float, defect: Defect | None
) -> np.ndarray:
    """Anti-aliased coverage (0..1) of the rounded plate minus its punched holes."""
    radius = 0.2 * b
    qx, qy = np.abs(u) - (a - radius), np.abs(v) - (b - radius)
    outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
    signed = outside + np.minimum(np.maximum(qx, qy), 0.0) - radius
    coverage = np.clip(0.5 - signed, 0.0, 1.0)
    # A locating notch in one short end makes the part asymmetric, as real brackets are.
    coverage *= np.clip(np.hypot(u - a, v) - NOTCH_R * b + 0.5, 0.0, 1.0)
    for index, (hu, hv, hr) in enumerate(hole_layout(a, b)):
        if defect is not None and defect.kind == "missing_hole" and defect.hole == index:
            continue
        coverage *= np.clip(np.hypot(u - hu, v - hv) - hr + 0.5, 0.0, 1.0)
    return coverage.astype(np.float32)


def _belt(
    scene: Scene, size: int, xx: np.ndarray, yy: np.ndarray, light: np.ndarray, part: np.ndarray
) -> np.ndarray:
    """The conveyor: woven texture, slow blotches, and the shadow the part casts."""
    zoom = size / scene.belt_grid.shape[0]
    blotches = ndimage.zoom(scene.belt_grid, zoom, order=1, grid_mode=True, mode="nearest")
    blotches = blotches[:size, :size]
    weave = np.sin(2 * math.pi * yy / (size / 21.0) + scene.belt_phase) * np.sin(
        2 * math.pi * xx / (size / 9.0)
    )
    belt = scene.belt_albedo * (1.0 + 0.20 * blotches + 0.05 * weave)
    shift = -light * 0.03 * size
    shadow = ndimage.shift(part, (float(shift[1]), float(shift[0])), order=1, mode="constant")
    shadow = ndimage.gaussian_filter(shadow, 0.02 * size)
    return (belt * (1.0 - 0.45 * shadow)).astype(np.float32)


def _plate(
    scene: Scene,
    size: int,
    colour: bool,
    u: np.ndarray,
    v: np.ndarray,
    a: float,
    b: float,
    part: np.ndarray,
    light: np.ndarray,
) -> np.ndarray:
    """The plate's albedo: brushed steel with bevelled edges, plus the defect if any."""
    grid = np.linspace(-1.2 * b, 1.2 * b, scene.brushed.size)
    brushed = np.interp(v, grid, scene.brushed).astype(np.float32)
    blurred = ndimage.gaussian_filter(part, 0.9 * size / 64.0)
    gy, gx = np.gradient(blurred)
    bevel = -(gx * light[0] + gy * light[1]) * (2.0 * size / 64.0)
    shade = scene.plate_albedo * (1.0 + 0.035 * brushed + 0.35 * bevel)
    defect = scene.defect
    if defect is not None and defect.kind == "dent":
        shade = shade * (1.0 + _dent_shading(defect, size, u, v, light, scene.angle))
    if defect is not None and defect.kind == "scratch":
        shade = shade + defect.contrast * _scratch_profile(defect, size, u, v)
    plate = _tint(shade.astype(np.float32), _PLATE_RGB, colour)
    if defect is not None and defect.kind == "stain":
        plate = _apply_stain(plate, defect, size, colour, u, v)
    return plate


def _scratch_profile(defect: Defect, size: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A thin, slightly curved line (distance to a bent polyline), fading at both ends."""
    s = float(size)
    cu, cv = defect.centre[0] * s, defect.centre[1] * s
    direction = np.array([math.cos(defect.angle), math.sin(defect.angle)])
    normal = np.array([-direction[1], direction[0]])
    half = 0.5 * defect.length * s
    t = np.linspace(-1.0, 1.0, 9)
    points = (
        np.array([cu, cv])[None, :]
        + (t * half)[:, None] * direction[None, :]
        + (defect.bend * half * (1.0 - t**2))[:, None] * normal[None, :]
    )
    distance = np.full(u.shape, np.inf, dtype=np.float32)
    along = np.zeros(u.shape, dtype=np.float32)
    for index in range(len(points) - 1):
        (x0, y0), (x1, y1) = points[index], points[index + 1]
        ex, ey = x1 - x0, y1 - y0
        h = np.clip(((u - x0) * ex + (v - y0) * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        d = np.hypot(u - x0 - h * ex, v - y0 - h * ey)
        closer = d < distance
        distance = np.where(closer, d, distance)
        along = np.where(closer, (index + h) / (len(points) - 1), along)
    half_width = max(0.6, defect.width * s)
    fade = np.clip(np.sin(np.pi * along) * 1.6, 0.0, 1.0)
    return (np.exp(-((distance / half_width) ** 2)) * fade).astype(np.float32)


def _dent_shading(
    defect: Defect, size: int, u: np.ndarray, v: np.ndarray, light: np.ndarray, part_angle: float
) -> np.ndarray:
    """Relative brightness change of a smooth elliptical depression lit from ``light``.

    The depth profile is (1 - r^2)^2; its slope facing the light brightens, the far slope darkens,
    and the bottom is a little darker (it catches less light), which is how a dent looks under a
    low-angle lamp.
    """
    s = float(size)
    cos, sin = math.cos(defect.angle), math.sin(defect.angle)
    du, dv = u - defect.centre[0] * s, v - defect.centre[1] * s
    ra, rb = defect.length * s, defect.width * s
    p, q = (cos * du + sin * dv) / ra, (-sin * du + cos * dv) / rb
    r2 = p * p + q * q
    inside = np.clip(1.0 - r2, 0.0, None)
    # Gradient of the height h = -(1 - r^2)^2 in the part's (u, v) frame.
    dh_dr2 = 2.0 * inside
    dh_dp, dh_dq = dh_dr2 * 2.0 * p, dh_dr2 * 2.0 * q
    dh_du = dh_dp * cos / ra - dh_dq * sin / rb
    dh_dv = dh_dp * sin / ra + dh_dq * cos / rb
    # The light direction is in image axes; turn it into the part's frame.
    pc, ps = math.cos(part_angle), math.sin(part_angle)
    lu, lv = pc * light[0] + ps * light[1], -ps * light[0] + pc * light[1]
    slope = (dh_du * lu + dh_dv * lv) * min(ra, rb)
    return (defect.contrast * (0.45 * slope - 0.18 * inside**2)).astype(np.float32)


def _apply_stain(
    plate: np.ndarray, defect: Defect, size: int, colour: bool, u: np.ndarray, v: np.ndarray
) -> np.ndarray:
    """Blend a soft, irregular blob of dark (brownish in colour) residue into the plate."""
    s = float(size)
    cos, sin = math.cos(defect.angle), math.sin(defect.angle)
    density = np.zeros(u.shape, dtype=np.float32)
    for ou, ov, sigma, weight in defect.blobs:
        bu = defect.centre[0] + cos * ou - sin * ov
        bv = defect.centre[1] + sin * ou + cos * ov
        squared = (u - bu * s) ** 2 + (v - bv * s) ** 2
        density += weight * np.exp(-squared / (2.0 * (sigma * s) ** 2))
    alpha = (defect.contrast * np.clip(density, 0.0, 1.0))[..., None]
    residue = _tint(np.ones_like(u), _STAIN_RGB, colour) * 0.4
    return plate * (1.0 - alpha) + residue * alpha


def _apply_specks(
    albedo: np.ndarray, scene: Scene, size: int, xx: np.ndarray, yy: np.ndarray
) -> np.ndarray:
    """Dust and oil specks, on the part and the belt alike."""
    s = float(size)
    for x, y, radius, contrast in scene.specks:
        r = max(0.55, radius * s)
        cx, cy = x * s, y * s
        window = (np.abs(xx - cx) < 4 * r + 2) & (np.abs(yy - cy) < 4 * r + 2)
        if not window.any():
            continue
        spot = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2.0 * r * r)) * window
        albedo = albedo * (1.0 + contrast * spot[..., None])
    return albedo


def _illumination(
    scene: Scene, size: int, xx: np.ndarray, yy: np.ndarray, light: np.ndarray
) -> np.ndarray:
    """Lamp level times a gradient toward the lamp, with vignetting toward the corners."""
    half = size / 2.0
    nx, ny = (xx - half) / half, (yy - half) / half
    gradient = 1.0 + scene.gradient * (nx * light[0] + ny * light[1])
    vignette = 1.0 - scene.vignette * (nx * nx + ny * ny) / 2.0
    return (scene.light_gain * gradient * vignette).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Output
