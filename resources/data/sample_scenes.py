"""How the sample line's images are drawn: cameras, scenes (part, belt, lighting) and defects.

The generator (:mod:`resources.data.sample_line`) decides what to draw and writes the files; this
module draws one image from a scene. Every random draw comes from generators keyed by the image's
identity, so adding a class or a camera changes no other image.
"""

import math
import zlib
from dataclasses import dataclass

import numpy as np

from resources.errors import MfgVisionError

__all__ = [
    "DEFAULT_CLASSES",
    "NOTCH_R",
    "Camera",
    "Defect",
    "Scene",
    "SampleLineError",
    "camera_spec",
    "draw_scene",
    "hole_layout",
    "image_rngs",
    "name_key",
]

DEFAULT_CLASSES: tuple[str, ...] = ("good", "scratch", "dent", "stain", "missing_hole")

_DIRECTIONS: dict[str, float] = {"right": 0.0, "bottom": 90.0, "left": 180.0, "top": 270.0}


# Hole layout in units of the plate's half-height b: (u, v, radius). u is along the long side.
_CORNER_HOLE_R = 0.19
_CENTRE_HOLE_R = 0.32
NOTCH_R = 0.30


class SampleLineError(MfgVisionError, ValueError):
    """An option of the sample-line generator is out of range; the message says which and what is allowed."""


@dataclass(frozen=True)
class Camera:
    """Fixed properties of one camera: its mounting, optics and sensor."""

    gain: float
    rotation_deg: float
    offset: tuple[float, float]
    blur: float
    noise: float


@dataclass(frozen=True)
class Defect:
    """A defect in the part's local frame; lengths are in units of the image size."""

    kind: str
    centre: tuple[float, float]
    angle: float
    length: float
    width: float
    contrast: float
    bend: float
    blobs: tuple[tuple[float, float, float, float], ...]
    hole: int


@dataclass(frozen=True)
class Scene:
    """All that is random about an image except its noise; lengths are fractions of its size."""

    centre: tuple[float, float]
    angle: float
    half_width: float
    aspect: float
    plate_albedo: float
    belt_albedo: float
    brushed: np.ndarray
    belt_grid: np.ndarray
    belt_phase: float
    light_angle: float
    light_gain: float
    gradient: float
    vignette: float
    white_balance: np.ndarray
    blur: float
    noise: float
    specks: tuple[tuple[float, float, float, float], ...]
    defect: Defect | None
    lighting_tag: str


def name_key(text: str) -> int:
    """A stable number for a name (Python's hash() is salted per process, crc32 is not)."""
    return zlib.crc32(text.encode("utf-8"))


def image_rngs(
    seed: int, class_name: str, camera: str, shift: str, index: int
) -> tuple[np.random.Generator, np.random.Generator]:
    """Generators for one image, keyed by its identity so adding a class changes no other image.

    The scene and the noise get separate streams: the scene is then the same in grey and colour
    and at every image size, and only the noise (whose amount of draws depends on both) differs.
    """
    sequence = np.random.SeedSequence(
        seed, spawn_key=(name_key("image"), name_key(class_name), name_key(camera), name_key(shift), index)
    )
    scene_seq, noise_seq = sequence.spawn(2)
    return np.random.default_rng(scene_seq), np.random.default_rng(noise_seq)


def camera_spec(seed: int, camera: str) -> Camera:
    """Each camera is mounted, focused and tuned a little differently, as on a real line."""
    sequence = np.random.SeedSequence(seed, spawn_key=(name_key("camera"), name_key(camera)))
    rng = np.random.default_rng(sequence)
    return Camera(
        gain=float(rng.uniform(0.92, 1.08)),
        rotation_deg=float(rng.uniform(-3.0, 3.0)),
        offset=(float(rng.uniform(-0.02, 0.02)), float(rng.uniform(-0.02, 0.02))),
        blur=float(rng.uniform(0.25, 0.45)),
        noise=float(rng.uniform(0.8, 1.2)),
    )


def draw_scene(
    rng: np.random.Generator, class_name: str, camera: Camera, shift_position: float, fixtured: bool = False
) -> Scene:
    """Draw the pose, lighting, textures, specks and defect of one image.

    ``shift_position`` runs from 0 (first shift, daylight) to 1 (last shift, night); later shifts
    are more often dim and noisier. ``fixtured``: the part sits in a jig under the station's own
    light, as at an anomaly-inspection station: one size, the same way round, within a few pixels and
    about 2 degrees, lit from one side and never dim (belt texture, dust specks, blur and sensor noise
    still vary). The same random draws are made either way, so a free-pose scene is unchanged.
    """
    night = shift_position
    dim = bool(rng.random() < 0.25 + 0.5 * night) and not fixtured
    direction = "top" if fixtured else str(rng.choice(list(_DIRECTIONS)))
    if fixtured:
        rng.choice(list(_DIRECTIONS))  # drawn and unused, so the draws after it match a free-pose scene's
    light_angle = math.radians(_DIRECTIONS[direction] + rng.uniform(-25.0, 25.0) * (0.2 if fixtured else 1.0))
    light_gain = camera.gain * (rng.uniform(0.50, 0.70) if dim else rng.uniform(0.92, 1.10))

    half_width = float(rng.uniform(0.25, 0.34))
    aspect = float(rng.uniform(0.56, 0.68))
    jitter = 0.1 if fixtured else 1.0
    centre = (
        0.5 + camera.offset[0] + jitter * float(np.clip(rng.normal(0.0, 0.06), -0.10, 0.10)),
        0.5 + camera.offset[1] + jitter * float(np.clip(rng.normal(0.0, 0.06), -0.10, 0.10)),
    )
    angle = math.radians(camera.rotation_deg + jitter * rng.uniform(-20.0, 20.0))
    # The feeder does not orient parts: half arrive turned end for end (the notch shows which); a jig does.
    if rng.random() < 0.5 and not fixtured:
        angle += math.pi
    if fixtured:
        half_width, aspect = 0.30, 0.62  # one variant, one size

    plate_albedo = float(rng.uniform(0.86, 1.0))
    belt_albedo = float(rng.uniform(0.75, 1.15))
    brushed = rng.normal(0.0, 1.0, 64).astype(np.float32)
    belt_grid = rng.normal(0.0, 1.0, (12, 12)).astype(np.float32)
    belt_phase = float(rng.uniform(0.0, 2 * math.pi))
    gradient = float(rng.uniform(0.18, 0.40))
    vignette = float(rng.uniform(0.05, 0.20))
    white_balance = rng.uniform(0.96, 1.04, 3).astype(np.float32)
    blur = camera.blur * float(rng.uniform(0.8, 1.5))
    noise = camera.noise * float(rng.uniform(1.5, 3.0) + (3.0 if dim else 0.0) + 1.5 * night)

    geometry = (half_width, half_width * aspect)
    specks = _draw_specks(rng, centre, angle, geometry)
    defect = _draw_defect(rng, class_name, geometry)
    return Scene(
        centre=centre,
        angle=angle,
        half_width=half_width,
        aspect=aspect,
        plate_albedo=plate_albedo,
        belt_albedo=belt_albedo,
        brushed=brushed,
        belt_grid=belt_grid,
        belt_phase=belt_phase,
        light_angle=light_angle,
        light_gain=float(light_gain),
        gradient=gradient,
        vignette=vignette,
        white_balance=white_balance,
        blur=blur,
        noise=noise,
        specks=specks,
        defect=defect,
        lighting_tag=f"{'dim' if dim else 'bright'}-{direction}",
    )


def _draw_specks(
    rng: np.random.Generator,
    centre: tuple[float, float],
    angle: float,
    geometry: tuple[float, float],
) -> tuple[tuple[float, float, float, float], ...]:
    """Dust (small, dark or bright) and oil (a little larger, faint, dark), in image fractions.

    About two thirds land on the part, so good parts carry specks too.
    """
    a, b = geometry
    specks = []
    for _ in range(int(rng.poisson(4.0))):
        if rng.random() < 0.65:
            u, v = rng.uniform(-0.9, 0.9) * a, rng.uniform(-0.85, 0.85) * b
            x = centre[0] + u * math.cos(angle) - v * math.sin(angle)
            y = centre[1] + u * math.sin(angle) + v * math.cos(angle)
        else:
            x, y = rng.uniform(0.02, 0.98), rng.uniform(0.02, 0.98)
        if rng.random() < 0.75:  # dust
            radius = rng.uniform(0.005, 0.011)
            contrast = rng.uniform(-0.45, -0.2) if rng.random() < 0.7 else rng.uniform(0.15, 0.3)
        else:  # a drop of oil
            radius = rng.uniform(0.010, 0.016)
            contrast = rng.uniform(-0.22, -0.10)
        specks.append((float(x), float(y), float(radius), float(contrast)))
    return tuple(specks)


def hole_layout(a: float, b: float) -> list[tuple[float, float, float]]:
    """Hole centres and radii in the part's frame (same units as a and b)."""
    cu, cv, cr = a - 0.55 * b, 0.55 * b, _CORNER_HOLE_R * b
    corners = [(-cu, -cv, cr), (cu, -cv, cr), (-cu, cv, cr), (cu, cv, cr)]
    return [*corners, (0.0, 0.0, _CENTRE_HOLE_R * b)]


def _defect_centre(
    rng: np.random.Generator, geometry: tuple[float, float], clearance: float
) -> tuple[float, float]:
    """A point on the plate, off the holes and edges by ``clearance`` (rejection sampling)."""
    a, b = geometry
    holes = hole_layout(a, b)
    best, best_margin = (0.0, 0.5 * b), -math.inf
    for _ in range(40):
        u, v = rng.uniform(-0.8, 0.8) * a, rng.uniform(-0.7, 0.7) * b
        margin = min(math.hypot(u - hu, v - hv) - hr for hu, hv, hr in holes)
        if margin >= clearance:
            return float(u), float(v)
        if margin > best_margin:
            best, best_margin = (float(u), float(v)), margin
    return best


def _draw_defect(
    rng: np.random.Generator, class_name: str, geometry: tuple[float, float]
) -> Defect | None:
    """Draw the defect of a class, sized relative to the plate so it stays visible at 64 px."""
    a, b = geometry
    angle = float(rng.uniform(0.0, math.pi))
    empty: tuple[tuple[float, float, float, float], ...] = ()
    if class_name == "good":
        return None
    if class_name == "missing_hole":
        hole = int(rng.integers(0, 5))
        return Defect("missing_hole", (0.0, 0.0), 0.0, 0.0, 0.0, 0.0, 0.0, empty, hole)
    if class_name == "scratch":
        centre = (float(rng.uniform(-0.45, 0.45) * a), float(rng.uniform(-0.45, 0.45) * b))
        bright = rng.random() < 0.7
        contrast = rng.uniform(0.45, 0.75) if bright else -rng.uniform(0.45, 0.65)
        return Defect(
            kind="scratch",
            centre=centre,
            angle=angle,
            length=float(rng.uniform(0.7, 1.2) * a),
            width=float(rng.uniform(0.013, 0.019)),
            contrast=float(contrast),
            bend=float(rng.uniform(-0.12, 0.12)),
            blobs=empty,
            hole=-1,
        )
    if class_name == "dent":
        radius = float(rng.uniform(0.42, 0.6) * b)
        centre = _defect_centre(rng, geometry, 0.6 * radius)
        return Defect(
            kind="dent",
            centre=centre,
            angle=angle,
            length=radius,
            width=radius * float(rng.uniform(0.55, 0.9)),
            contrast=float(rng.uniform(1.2, 1.6)),
            bend=0.0,
            blobs=empty,
            hole=-1,
        )
    if class_name == "stain":
        radius = float(rng.uniform(0.28, 0.45) * b)
        centre = _defect_centre(rng, geometry, 0.3 * radius)
        blobs = []
        for _ in range(int(rng.integers(2, 5))):
            offset = rng.normal(0.0, 0.35 * radius, 2)
            sigma = radius * rng.uniform(0.45, 0.8)
            weight = rng.uniform(0.6, 1.0)
            blobs.append((float(offset[0]), float(offset[1]), float(sigma), float(weight)))
        return Defect(
            kind="stain",
            centre=centre,
            angle=angle,
            length=radius,
            width=radius,
            contrast=float(rng.uniform(0.6, 0.85)),
            bend=0.0,
            blobs=tuple(blobs),
            hole=-1,
        )
    raise SampleLineError(
        f"unknown sample-line class {class_name!r}; supported: {', '.join(DEFAULT_CLASSES)}"
    )


# --------------------------------------------------------------------------------------------
# Rendering
