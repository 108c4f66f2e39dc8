"""A synthetic but realistic inspection dataset of one part on a production line.

Tests, demos and benchmarks need labelled images that behave like a camera on a line does, without
shipping customer data or downloading anything. Each image shows a stamped metal plate with five
holes (four corner holes and a larger centre hole) and a locating notch in one end, lying on a
textured conveyor belt, seen from above.

What varies, because it varies on real lines and a model must not learn it as a defect:

* lighting level and direction (a brightness gradient across the field, plus vignetting); the night
  shift is mostly dimmer and noisier; each camera has its own gain, blur and mounting angle;
* the part's position, rotation and size (small, as on a fixtured conveyor);
* sensor noise, slight defocus blur, the belt's texture;
* dust and oil specks, on good parts too, so that a speck alone never means a defect.

Defects are drawn in the part's own coordinates, so they move with it: ``scratch`` a thin bright or
dark, slightly curved line; ``dent`` a shaded elliptical depression lit from the scene's light
direction; ``stain`` a soft dark (in colour: brownish) blob; ``missing_hole`` one of the five holes
not punched. Their sizes, positions and orientations vary, but each is large enough for a small
CNN to learn at 64 to 128 pixels.

Everything is deterministic for a seed: an image depends only on (seed, class, camera, shift,
index), so the same call writes byte-identical files, and a seed gives the same scenes at any size
and in grey or colour (only the sensor noise differs).

Layout (folder per class)::

    out_dir/<class>/<camera>_<shift>_<index:05d>.png
    out_dir/metadata.csv      path,camera,shift,lighting,capture_time  (capture order, UTC)
"""

import csv
import logging
import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from resources.errors import MfgVisionError

__all__ = [
    "DEFAULT_CLASSES",
    "METADATA_COLUMNS",
    "METADATA_FILE",
    "SampleLineError",
    "SampleLineSummary",
    "generate_sample_line",
]

logger = logging.getLogger(__name__)

DEFAULT_CLASSES: tuple[str, ...] = ("good", "scratch", "dent", "stain", "missing_hole")
METADATA_FILE = "metadata.csv"
METADATA_COLUMNS: tuple[str, ...] = ("path", "camera", "shift", "lighting", "capture_time")

# A fixed default keeps the metadata deterministic: "now" would change the file on every run.
_DEFAULT_START = datetime(2026, 1, 5, 6, 0, 0, tzinfo=UTC)
_MIN_SIZE, _MAX_SIZE = 32, 1024
_MAX_PER_CLASS = 99_999  # the file index has five digits
# Camera and shift names form the file name <camera>_<shift>_<index>, so they must not hold "_".
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")

_DIRECTIONS: dict[str, float] = {"right": 0.0, "bottom": 90.0, "left": 180.0, "top": 270.0}

# Albedo colours (linear 0..1, RGB); grey images use their luminance.
_PLATE_RGB = np.array([0.64, 0.66, 0.70], dtype=np.float32)
_BELT_RGB = np.array([0.24, 0.27, 0.25], dtype=np.float32)
_STAIN_RGB = np.array([0.42, 0.30, 0.16], dtype=np.float32)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

# Hole layout in units of the plate's half-height b: (u, v, radius). u is along the long side.
_CORNER_HOLE_R = 0.19
_CENTRE_HOLE_R = 0.32
_NOTCH_R = 0.30


@dataclass(frozen=True)

class SampleLineError(MfgVisionError, ValueError):
    """An option of the sample-line generator is out of range; the message says which and what is allowed."""


class SampleLineSummary:
    """What ``generate_sample_line`` wrote: enough to find and check the dataset."""

    out_dir: Path
    classes: tuple[str, ...]
    counts: dict[str, int]
    cameras: tuple[str, ...]
    seed: int
    image_size: int


@dataclass(frozen=True)
class _Camera:
    """Fixed properties of one camera: its mounting, optics and sensor."""

    gain: float
    rotation_deg: float
    offset: tuple[float, float]
    blur: float
    noise: float


@dataclass(frozen=True)
class _Defect:
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
class _Scene:
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
    defect: _Defect | None
    lighting_tag: str


def generate_sample_line(
    out_dir: Path,
    *,
    seed: int,
    images_per_class: int = 60,
    good_images: int | None = None,
    image_size: int = 128,
    classes: Sequence[str] = DEFAULT_CLASSES,
    cameras: Sequence[str] = ("cam1", "cam2"),
    shifts: Sequence[str] = ("day", "night"),
    colour: bool = False,
    start_time: datetime | None = None,
) -> SampleLineSummary:
    """Write a labelled synthetic inspection dataset and its metadata into ``out_dir``.

    ``images_per_class`` images are drawn of every defect class and ``good_images`` (default: the
    same number) of the ``good`` class: a real line makes mostly good parts, and a test split with
    few good parts measures the false-reject rate in steps of several points.
    Images of one class are spread round-robin over cameras, then shifts. ``out_dir`` is created if
    needed; it may exist with empty folders but must hold no files, so that a second run can never
    mix two datasets. ``start_time`` (timezone-aware) is when the first shift starts.
    """
    out_dir = Path(out_dir)
    class_names = _check_classes(classes)
    camera_names = _check_names("camera", cameras)
    shift_names = _check_names("shift", shifts)
    _check_int("images_per_class", images_per_class, 1, _MAX_PER_CLASS)
    if good_images is not None:
        _check_int("good_images", good_images, 1, _MAX_PER_CLASS)
    counts = {name: good_images if (name == "good" and good_images is not None) else images_per_class for name in class_names}
    _check_int("image_size", image_size, _MIN_SIZE, _MAX_SIZE)
    _check_int("seed", seed, 0, 2**63 - 1)
    start = _check_start(start_time)
    _prepare_out_dir(out_dir)

    camera_specs = {name: _camera_spec(seed, name) for name in camera_names}
    rows: list[tuple[str, str, str, str]] = []  # path, camera, shift, lighting
    for class_name in class_names:
        (out_dir / class_name).mkdir(parents=True, exist_ok=True)
        for index in range(counts[class_name]):
            camera = camera_names[index % len(camera_names)]
            shift = shift_names[(index // len(camera_names)) % len(shift_names)]
            shift_position = shift_names.index(shift) / max(1, len(shift_names) - 1)
            scene_rng, noise_rng = _image_rngs(seed, class_name, camera, shift, index)
            scene = _draw_scene(scene_rng, class_name, camera_specs[camera], shift_position)
            pixels = _render(scene, image_size, colour, noise_rng)
            relpath = f"{class_name}/{camera}_{shift}_{index:05d}.png"
            _write_png(out_dir / relpath, pixels)
            rows.append((relpath, camera, shift, scene.lighting_tag))
        logger.debug("sample line: %s done (%d images)", class_name, counts[class_name])

    _write_metadata(out_dir / METADATA_FILE, rows, shift_names, start, seed)
    logger.info(
        "sample line: wrote %d images (%s) of %dpx to %s",
        len(rows),
        ", ".join(f"{k}={v}" for k, v in counts.items()),
        image_size,
        out_dir,
    )
    return SampleLineSummary(
        out_dir=out_dir,
        classes=class_names,
        counts=counts,
        cameras=camera_names,
        seed=seed,
        image_size=image_size,
    )


# --------------------------------------------------------------------------------------------
# Argument checks


def _check_classes(classes: Sequence[str]) -> tuple[str, ...]:
    """Classes must be known defect kinds (the renderer has to know how to draw them), each once."""
    if isinstance(classes, str):
        raise SampleLineError(f"classes must be a sequence of names, not the string {classes!r}")
    names = tuple(classes)
    if not names:
        raise SampleLineError(f"classes is empty; pick some of {', '.join(DEFAULT_CLASSES)}")
    unknown = [name for name in names if name not in DEFAULT_CLASSES]
    if unknown:
        raise SampleLineError(
            f"unknown sample-line class(es) {', '.join(map(repr, unknown))}; "
            f"supported: {', '.join(DEFAULT_CLASSES)}"
        )
    _reject_duplicates("classes", names)
    return names


def _check_names(what: str, names: Sequence[str]) -> tuple[str, ...]:
    """Camera and shift names become part of file names, so they must be short and plain."""
    if isinstance(names, str):
        raise SampleLineError(f"{what}s must be a sequence of names, not the string {names!r}")
    result = tuple(names)
    if not result:
        raise SampleLineError(f"{what}s is empty; give at least one {what} name")
    for name in result:
        if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name):
            raise SampleLineError(
                f"{what} name {name!r} is not usable in a file name; "
                "use letters, digits and '-' only (no '_', it separates the name's parts)"
            )
    _reject_duplicates(f"{what}s", result)
    return result


def _reject_duplicates(what: str, names: tuple[str, ...]) -> None:
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise SampleLineError(f"{what} lists {', '.join(duplicates)} more than once; list each once")


def _check_int(what: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise SampleLineError(f"{what} must be an integer, got {type(value).__name__} {value!r}")
    if not low <= value <= high:
        raise SampleLineError(f"{what} must be between {low} and {high}, got {value}")


def _check_start(start_time: datetime | None) -> datetime:
    """A naive time is ambiguous across plants in different time zones, so it is refused."""
    if start_time is None:
        return _DEFAULT_START
    if start_time.tzinfo is None or start_time.utcoffset() is None:
        raise SampleLineError(
            f"start_time {start_time.isoformat()} has no time zone; "
            "pass an aware datetime such as datetime(2026, 1, 5, 6, tzinfo=datetime.UTC)"
        )
    return start_time.astimezone(UTC)


def _prepare_out_dir(out_dir: Path) -> None:
    """Refuse a folder that holds files: writing into it could mix two datasets or overwrite one."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir}: exists and is not a folder; choose a new folder")
    if out_dir.is_dir():
        existing = next((p for p in sorted(out_dir.rglob("*")) if not p.is_dir()), None)
        if existing is not None:
            example = existing.relative_to(out_dir).as_posix()
            raise FileExistsError(
                f"{out_dir}: already holds files (e.g. {example}); "
                "choose an empty or new folder, or delete the old sample line first"
            )
    out_dir.mkdir(parents=True, exist_ok=True)


# --------------------------------------------------------------------------------------------
# Random draws


def _key(text: str) -> int:
    """A stable number for a name (Python's hash() is salted per process, crc32 is not)."""
    return zlib.crc32(text.encode("utf-8"))


def _image_rngs(
    seed: int, class_name: str, camera: str, shift: str, index: int
) -> tuple[np.random.Generator, np.random.Generator]:
    """Generators for one image, keyed by its identity so adding a class changes no other image.

    The scene and the noise get separate streams: the scene is then the same in grey and colour
    and at every image size, and only the noise (whose amount of draws depends on both) differs.
    """
    sequence = np.random.SeedSequence(
        seed, spawn_key=(_key("image"), _key(class_name), _key(camera), _key(shift), index)
    )
    scene_seq, noise_seq = sequence.spawn(2)
    return np.random.default_rng(scene_seq), np.random.default_rng(noise_seq)


def _camera_spec(seed: int, camera: str) -> _Camera:
    """Each camera is mounted, focused and tuned a little differently, as on a real line."""
    sequence = np.random.SeedSequence(seed, spawn_key=(_key("camera"), _key(camera)))
    rng = np.random.default_rng(sequence)
    return _Camera(
        gain=float(rng.uniform(0.92, 1.08)),
        rotation_deg=float(rng.uniform(-3.0, 3.0)),
        offset=(float(rng.uniform(-0.02, 0.02)), float(rng.uniform(-0.02, 0.02))),
        blur=float(rng.uniform(0.25, 0.45)),
        noise=float(rng.uniform(0.8, 1.2)),
    )


def _draw_scene(
    rng: np.random.Generator, class_name: str, camera: _Camera, shift_position: float
) -> _Scene:
    """Draw the pose, lighting, textures, specks and defect of one image.

    ``shift_position`` runs from 0 (first shift, daylight) to 1 (last shift, night); later shifts
    are more often dim and noisier.
    """
    night = shift_position
    dim = bool(rng.random() < 0.25 + 0.5 * night)
    direction = str(rng.choice(list(_DIRECTIONS)))
    light_angle = math.radians(_DIRECTIONS[direction] + rng.uniform(-25.0, 25.0))
    light_gain = camera.gain * (rng.uniform(0.50, 0.70) if dim else rng.uniform(0.92, 1.10))

    half_width = float(rng.uniform(0.25, 0.34))
    aspect = float(rng.uniform(0.56, 0.68))
    centre = (
        0.5 + camera.offset[0] + float(np.clip(rng.normal(0.0, 0.06), -0.10, 0.10)),
        0.5 + camera.offset[1] + float(np.clip(rng.normal(0.0, 0.06), -0.10, 0.10)),
    )
    angle = math.radians(camera.rotation_deg + rng.uniform(-20.0, 20.0))
    # The feeder does not orient parts: half arrive turned end for end (the notch shows which).
    if rng.random() < 0.5:
        angle += math.pi

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
    return _Scene(
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


def _hole_layout(a: float, b: float) -> list[tuple[float, float, float]]:
    """Hole centres and radii in the part's frame (same units as a and b)."""
    cu, cv, cr = a - 0.55 * b, 0.55 * b, _CORNER_HOLE_R * b
    corners = [(-cu, -cv, cr), (cu, -cv, cr), (-cu, cv, cr), (cu, cv, cr)]
    return [*corners, (0.0, 0.0, _CENTRE_HOLE_R * b)]


def _defect_centre(
    rng: np.random.Generator, geometry: tuple[float, float], clearance: float
) -> tuple[float, float]:
    """A point on the plate, off the holes and edges by ``clearance`` (rejection sampling)."""
    a, b = geometry
    holes = _hole_layout(a, b)
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
) -> _Defect | None:
    """Draw the defect of a class, sized relative to the plate so it stays visible at 64 px."""
    a, b = geometry
    angle = float(rng.uniform(0.0, math.pi))
    empty: tuple[tuple[float, float, float, float], ...] = ()
    if class_name == "good":
        return None
    if class_name == "missing_hole":
        hole = int(rng.integers(0, 5))
        return _Defect("missing_hole", (0.0, 0.0), 0.0, 0.0, 0.0, 0.0, 0.0, empty, hole)
    if class_name == "scratch":
        centre = (float(rng.uniform(-0.45, 0.45) * a), float(rng.uniform(-0.45, 0.45) * b))
        bright = rng.random() < 0.7
        contrast = rng.uniform(0.45, 0.75) if bright else -rng.uniform(0.45, 0.65)
        return _Defect(
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
        return _Defect(
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
        return _Defect(
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


def _render(scene: _Scene, size: int, colour: bool, noise_rng: np.random.Generator) -> np.ndarray:
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
    u: np.ndarray, v: np.ndarray, a: float, b: float, defect: _Defect | None
) -> np.ndarray:
    """Anti-aliased coverage (0..1) of the rounded plate minus its punched holes."""
    radius = 0.2 * b
    qx, qy = np.abs(u) - (a - radius), np.abs(v) - (b - radius)
    outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
    signed = outside + np.minimum(np.maximum(qx, qy), 0.0) - radius
    coverage = np.clip(0.5 - signed, 0.0, 1.0)
    # A locating notch in one short end makes the part asymmetric, as real brackets are.
    coverage *= np.clip(np.hypot(u - a, v) - _NOTCH_R * b + 0.5, 0.0, 1.0)
    for index, (hu, hv, hr) in enumerate(_hole_layout(a, b)):
        if defect is not None and defect.kind == "missing_hole" and defect.hole == index:
            continue
        coverage *= np.clip(np.hypot(u - hu, v - hv) - hr + 0.5, 0.0, 1.0)
    return coverage.astype(np.float32)


def _belt(
    scene: _Scene, size: int, xx: np.ndarray, yy: np.ndarray, light: np.ndarray, part: np.ndarray
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
    scene: _Scene,
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


def _scratch_profile(defect: _Defect, size: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
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
    defect: _Defect, size: int, u: np.ndarray, v: np.ndarray, light: np.ndarray, part_angle: float
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
    plate: np.ndarray, defect: _Defect, size: int, colour: bool, u: np.ndarray, v: np.ndarray
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
    albedo: np.ndarray, scene: _Scene, size: int, xx: np.ndarray, yy: np.ndarray
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
    scene: _Scene, size: int, xx: np.ndarray, yy: np.ndarray, light: np.ndarray
) -> np.ndarray:
    """Lamp level times a gradient toward the lamp, with vignetting toward the corners."""
    half = size / 2.0
    nx, ny = (xx - half) / half, (yy - half) / half
    gradient = 1.0 + scene.gradient * (nx * light[0] + ny * light[1])
    vignette = 1.0 - scene.vignette * (nx * nx + ny * ny) / 2.0
    return (scene.light_gain * gradient * vignette).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Output


def _write_png(path: Path, pixels: np.ndarray) -> None:
    """Write 8-bit grey or RGB PNG; Pillow writes no time stamp, so bytes repeat for a seed."""
    mode = "RGB" if pixels.ndim == 3 else "L"
    Image.fromarray(pixels, mode=mode).save(path, format="PNG")


def _write_metadata(
    path: Path,
    rows: list[tuple[str, str, str, str]],
    shifts: tuple[str, ...],
    start: datetime,
    seed: int,
) -> None:
    """Write metadata.csv in capture order: shifts one after another, parts interleaved in a shift.

    Shift k starts k/len(shifts) of a day after ``start`` (or right after the previous shift's last
    part if that ran later), and parts arrive every few seconds, so capture times strictly increase.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_key("schedule"),)))
    shift_length = timedelta(hours=24 / len(shifts))
    current = start - timedelta(seconds=1)
    ordered: list[tuple[str, str, str, str, str]] = []
    for position, shift in enumerate(shifts):
        in_shift = [row for row in rows if row[2] == shift]
        order = rng.permutation(len(in_shift))
        current = max(current + timedelta(seconds=1), start + position * shift_length)
        for index in order:
            relpath, camera, shift_name, lighting = in_shift[int(index)]
            current += timedelta(seconds=int(rng.integers(2, 16)))
            stamp = current.isoformat(timespec="seconds")
            ordered.append((relpath, camera, shift_name, lighting, stamp))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(METADATA_COLUMNS)
        writer.writerows(ordered)
