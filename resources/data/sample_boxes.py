"""A generated detection line: the sample line's parts with 1 to 3 boxed defects each, or none.

Tests, demos and the detection engine need box-labelled images whose boxes are known to be right,
without shipping customer data or downloading anything. Each image is a sample-line scene (plate,
belt, lighting, specks, noise: :mod:`resources.data.sample_scenes` and :mod:`~resources.data.sample_render`)
rendered without a defect, onto which defects are painted at random places on the plate and random
sizes, so that a detector must find them anywhere:

* ``scratch``: an elongated, thin, slightly curved line, brighter or darker than the steel;
* ``dent``: a round depression shaded by the scene's own light (bright on one slope, dark on the other);
* ``stain``: an irregular brownish blob (darker in blue than in red, so it differs in colour too).

Each defect is a relative change of the pixels, ``pixel * (1 + delta)``, cut to zero where it is
below :data:`MIN_CHANGE`. Its box is the extent of the pixels it changed (continuous 0-based corners,
so whole numbers): the label is the true extent of what was drawn, not an estimate. A defective image
gets its class's defect plus 0 to 2 more of any class, placed so that no two boxes overlap; a good
image gets none (specks still land on it, so that a speck alone never means a defect).

Everything is deterministic for a seed: an image depends on (seed, its first class, its index), so
two calls write byte-identical files. Layouts (what :func:`resources.detect.formats.read_labels` reads
back; :class:`BoxLineSummary` names the paths to pass it)::

    coco:  out_dir/images/part_00000.png ...   out_dir/annotations.json
    yolo:  out_dir/images/part_00000.png ...   out_dir/labels/part_00000.txt ...   out_dir/data.yaml
    voc:   out_dir/JPEGImages/part_00000.png ...   out_dir/Annotations/part_00000.xml ...
"""

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from resources.data.sample_render import render
from resources.data.sample_scenes import (
    Camera,
    SampleLineError,
    Scene,
    camera_spec,
    draw_scene,
    hole_layout,
    image_rngs,
    name_key,
)
from resources.detect import Box, BoxSet, ImageInfo

__all__ = [
    "BOX_FORMATS",
    "DEFAULT_BOX_CLASSES",
    "MIN_CHANGE",
    "BoxFormat",
    "BoxLineSummary",
    "write_box_line",
]

logger = logging.getLogger(__name__)

BoxFormat = Literal["coco", "yolo", "voc"]
BOX_FORMATS: tuple[str, ...] = ("coco", "yolo", "voc")
DEFAULT_BOX_CLASSES: tuple[str, ...] = ("scratch", "dent", "stain")
"""The defect kinds this generator can draw (a class list is any non-empty selection of them)."""
MIN_CHANGE = 0.03
"""Smallest relative pixel change that belongs to a defect: below it the change is cut to zero, so the
box (the extent of the changed pixels) is exact and a defect has no invisible tail outside it."""
_MIN_SIZE, _MAX_SIZE = 64, 2048  # below 64 px a scratch is thinner than a pixel
_MAX_IMAGES = 99_999  # the file index has five digits
_CAMERA = "cam1"
_PLACEMENT_TRIES = 30
_HOLE_CLEARANCE = 0.07
"""A defect's centre keeps this far (a fraction of the image) from a hole's rim: a dent or stain
painted over a hole would change belt pixels seen through it, which no real part does."""
_STAIN_ABSORPTION = np.array([0.30, 0.45, 0.62], dtype=np.float32)  # red, green, blue: brownish


@dataclass(frozen=True)
class BoxLineSummary:
    """What :func:`write_box_line` wrote. ``read_labels(fmt, labels, images_dir=images_dir)`` reads it
    back; ``images_with`` counts images holding at least one box of a class, ``boxes`` boxes per class."""

    out_dir: Path
    fmt: str
    images_dir: Path
    labels: Path
    classes: tuple[str, ...]
    images: int
    good_images: int
    images_with: dict[str, int]
    boxes: dict[str, int]


@dataclass(frozen=True)
class _Painted:
    """One defect drawn into an image: its class, box corners and the relative change in its window."""

    class_name: str
    corners: tuple[int, int, int, int]
    window: tuple[slice, slice]
    delta: np.ndarray  # h×w×3 in the window, zero outside the defect


def write_box_line(
    out_dir: Path,
    *,
    seed: int,
    good_images: int,
    images_per_class: int,
    image_size: int,
    fmt: BoxFormat | str,
    classes: Sequence[str] = DEFAULT_BOX_CLASSES,
) -> BoxLineSummary:
    """Render ``good_images`` good parts and ``images_per_class`` defective parts per class (each with
    its class's defect and up to two more) as RGB PNGs of ``image_size`` px, and write their boxes in
    ``fmt`` through :mod:`resources.detect.formats` (layouts in the module docstring). Images are named
    in a seeded shuffled order, so a split by name is not a split by class. ``out_dir`` must be empty
    or new. Raises :class:`SampleLineError` for an option out of range, saying what is allowed."""
    from resources.detect.formats import write_coco, write_voc, write_yolo

    out_dir = Path(out_dir)
    fmt = _check_options(out_dir, seed, good_images, images_per_class, image_size, str(fmt), tuple(classes))
    images_dir = out_dir / ("JPEGImages" if fmt == "voc" else "images")
    images_dir.mkdir(parents=True, exist_ok=True)
    plan = [("good", i) for i in range(good_images)] + [(c, i) for c in classes for i in range(images_per_class)]
    shuffle = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(name_key("box-order"),)))
    order = shuffle.permutation(len(plan))
    camera = camera_spec(seed, _CAMERA)
    infos: list[ImageInfo] = []
    boxes: list[Box] = []
    for number, planned in enumerate(order):
        first, index = plan[int(planned)]
        name = f"part_{number:05d}.png"
        pixels, painted = _draw_image(seed, first, index, image_size, camera, tuple(classes))
        Image.fromarray(pixels).save(images_dir / name, format="PNG")
        infos.append(ImageInfo(name, image_size, image_size))
        boxes.extend(Box(name, p.class_name, *map(float, p.corners)) for p in painted)
    dataset = BoxSet(tuple(infos), tuple(boxes), tuple(classes))
    if fmt == "coco":
        labels = write_coco(dataset, out_dir / "annotations.json")
    elif fmt == "yolo":
        labels = out_dir / "labels"
        write_yolo(dataset, labels, names_file=out_dir / "data.yaml")
    else:
        labels = out_dir / "Annotations"
        write_voc(dataset, labels)
    summary = BoxLineSummary(
        out_dir=out_dir,
        fmt=fmt,
        images_dir=images_dir,
        labels=labels,
        classes=tuple(classes),
        images=len(infos),
        good_images=good_images,
        images_with={c: len({b.image for b in boxes if b.class_name == c}) for c in classes},
        boxes={c: sum(b.class_name == c for b in boxes) for c in classes},
    )
    logger.info("wrote %d images (%d good) with %d boxes in %s format to %s", summary.images, good_images,
                len(boxes), fmt, out_dir)
    return summary


def _check_options(
    out_dir: Path, seed: int, good: int, per_class: int, size: int, fmt: str, classes: tuple[str, ...]
) -> str:
    """The format's name, once every option is known to be usable; else a SampleLineError saying why."""
    fmt = fmt.lower()
    if fmt not in BOX_FORMATS:
        raise SampleLineError(f"box label format {fmt!r} is unknown; choose one of {', '.join(BOX_FORMATS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SampleLineError(f"seed {seed!r}: needs an integer >= 0")
    if not _MIN_SIZE <= size <= _MAX_SIZE:
        raise SampleLineError(f"image_size {size}: needs {_MIN_SIZE} to {_MAX_SIZE} px (below {_MIN_SIZE} a "
                              "scratch is thinner than a pixel)")
    if not classes or len(set(classes)) != len(classes) or not set(classes) <= set(DEFAULT_BOX_CLASSES):
        raise SampleLineError(
            f"classes {list(classes)}: need a non-empty selection, without repeats, of the defects this generator "
            f"draws: {', '.join(DEFAULT_BOX_CLASSES)} (a good part has no box, so 'good' is not a class here)"
        )
    total = good + per_class * len(classes)
    if good < 0 or per_class < 0 or not 1 <= total <= _MAX_IMAGES:
        raise SampleLineError(
            f"good_images {good} and images_per_class {per_class} ({len(classes)} classes): need counts >= 0 and "
            f"1 to {_MAX_IMAGES} images in all"
        )
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise SampleLineError(f"{out_dir} is not an empty folder; choose a new or empty one (nothing was written)")
    return fmt


def _draw_image(
    seed: int, first: str, index: int, size: int, camera: Camera, classes: tuple[str, ...]
) -> tuple[np.ndarray, list["_Painted"]]:
    """One image's pixels and its defects: the scene keyed like the sample line's, the defects from
    their own stream, so the scene is the same whatever defects are drawn on it."""
    scene_rng, noise_rng = image_rngs(seed, first, _CAMERA, "line", index)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(name_key("boxes"), name_key(first), index)))
    scene = draw_scene(scene_rng, "good", camera, float(rng.uniform(0.0, 1.0)))  # the shift: day to night
    image = render(scene, size, True, noise_rng).astype(np.float32)
    painted: list[_Painted] = []
    if first != "good":
        wanted = [first, *(str(c) for c in rng.choice(classes, size=int(rng.integers(0, 3))))]
        for kind in wanted:
            drawn = _place(rng, kind, scene, size, [p.corners for p in painted])
            if drawn is not None:
                painted.append(drawn)
    for drawn in painted:
        image[drawn.window] *= 1.0 + drawn.delta
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), painted


def _place(
    rng: np.random.Generator,
    kind: str,
    scene: Scene,
    size: int,
    taken: list[tuple[int, int, int, int]],
) -> "_Painted | None":
    """A defect of ``kind`` on the plate, off the holes if it can be, whose box keeps a pixel from every
    taken box; None when no such place is found (an extra defect is then left out). The image's first
    defect always finds one: nothing is taken yet, and every defect changes the pixel at its centre."""
    s = float(size)
    a = scene.half_width * s
    b = a * scene.aspect
    holes = hole_layout(a, b)
    crowded: tuple[float, float] | None = None
    for _ in range(_PLACEMENT_TRIES):
        u, v = rng.uniform(-0.75, 0.75) * a, rng.uniform(-0.65, 0.65) * b
        if any(math.hypot(u - hu, v - hv) <= hr + _HOLE_CLEARANCE * s for hu, hv, hr in holes):
            crowded = crowded or (u, v)  # near a hole: only if no place off the holes is found
            continue
        drawn = _draw_at(rng, kind, scene, size, u, v)
        if drawn is not None and all(_gap(drawn.corners, other) for other in taken):
            return drawn
    if crowded is None:
        return None
    drawn = _draw_at(rng, kind, scene, size, *crowded)
    return drawn if drawn is not None and all(_gap(drawn.corners, other) for other in taken) else None


def _draw_at(
    rng: np.random.Generator, kind: str, scene: Scene, size: int, u: float, v: float
) -> "_Painted | None":
    """A defect of ``kind`` centred at (u, v) in the part's frame (pixels), drawn in the image's."""
    cos, sin = math.cos(scene.angle), math.sin(scene.angle)
    x, y = scene.centre[0] * size + u * cos - v * sin, scene.centre[1] * size + u * sin + v * cos
    return _DRAWERS[kind](rng, x, y, size, scene)


def _gap(one: tuple[int, int, int, int], other: tuple[int, int, int, int]) -> bool:
    """Whether two boxes are at least one pixel apart."""
    return one[2] < other[0] or other[2] < one[0] or one[3] < other[1] or other[3] < one[1]


def _cut(delta: np.ndarray, x0: int, y0: int, kind: str) -> "_Painted | None":
    """The defect from its relative change over a window at (x0, y0): the change below MIN_CHANGE is
    zeroed and the box is the extent of what is left (None when nothing is)."""
    keep = np.abs(delta).max(axis=2) >= MIN_CHANGE
    if not keep.any():
        return None
    delta = np.where(keep[..., None], delta, 0.0).astype(np.float32)
    rows, cols = np.nonzero(keep)
    corners = (x0 + int(cols.min()), y0 + int(rows.min()), x0 + int(cols.max()) + 1, y0 + int(rows.max()) + 1)
    window = (slice(y0, y0 + delta.shape[0]), slice(x0, x0 + delta.shape[1]))
    return _Painted(kind, corners, window, delta)


def _grid(x: float, y: float, reach: float, size: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Pixel-centre coordinates of the window of ``reach`` px around (x, y), clipped to the image."""
    x0, y0 = max(int(math.floor(x - reach)), 0), max(int(math.floor(y - reach)), 0)
    x1, y1 = min(int(math.ceil(x + reach)) + 1, size), min(int(math.ceil(y + reach)) + 1, size)
    yy, xx = np.mgrid[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)].astype(np.float32) + 0.5
    return xx, yy, x0, y0


def _scratch(rng: np.random.Generator, x: float, y: float, size: int, scene: Scene) -> "_Painted | None":
    """A thin line bent into a gentle arc, fading at both ends; bright (polished) or dark (a groove)."""
    length = float(rng.uniform(0.16, 0.36)) * size
    width = max(0.7, float(rng.uniform(0.007, 0.011)) * size)
    angle = float(rng.uniform(0.0, math.pi))
    bend = float(rng.uniform(-0.12, 0.12))
    contrast = float(rng.uniform(0.45, 0.75)) if rng.random() < 0.7 else -float(rng.uniform(0.4, 0.55))
    direction = np.array([math.cos(angle), math.sin(angle)])
    normal = np.array([-direction[1], direction[0]])
    half = length / 2
    t = np.linspace(-1.0, 1.0, 9)
    points = np.array([x, y]) + (t * half)[:, None] * direction + (bend * half * (1 - t**2))[:, None] * normal
    xx, yy, x0, y0 = _grid(x, y, half + 3 * width, size)
    distance = np.full(xx.shape, np.inf, dtype=np.float32)
    along = np.zeros(xx.shape, dtype=np.float32)
    for index in range(len(points) - 1):
        (px, py), (qx, qy) = points[index], points[index + 1]
        ex, ey = qx - px, qy - py
        h = np.clip(((xx - px) * ex + (yy - py) * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        d = np.hypot(xx - px - h * ex, yy - py - h * ey)
        closer = d < distance
        distance, along = np.where(closer, d, distance), np.where(closer, (index + h) / (len(points) - 1), along)
    profile = np.exp(-((distance / width) ** 2)) * np.clip(np.sin(np.pi * along) * 1.6, 0.0, 1.0)
    return _cut(np.repeat((contrast * profile)[..., None], 3, axis=2), x0, y0, "scratch")


def _dent(rng: np.random.Generator, x: float, y: float, size: int, scene: Scene) -> "_Painted | None":
    """A round depression, (1 - r²)² deep, lit by the scene's lamp: the slope facing it brightens, the
    far slope darkens, the bottom is a little darker (as the sample line's dents are shaded)."""
    radius = float(rng.uniform(0.035, 0.065)) * size
    ra, rb = radius, radius * float(rng.uniform(0.8, 1.0))
    angle = float(rng.uniform(0.0, math.pi))
    contrast = float(rng.uniform(1.3, 1.7))
    xx, yy, x0, y0 = _grid(x, y, radius + 1, size)
    cos, sin = math.cos(angle), math.sin(angle)
    p, q = ((xx - x) * cos + (yy - y) * sin) / ra, (-(xx - x) * sin + (yy - y) * cos) / rb
    inside = np.clip(1.0 - p * p - q * q, 0.0, None)
    dh_dp, dh_dq = 4.0 * inside * p, 4.0 * inside * q
    dh_dx, dh_dy = dh_dp * cos / ra - dh_dq * sin / rb, dh_dp * sin / ra + dh_dq * cos / rb
    slope = (dh_dx * math.cos(scene.light_angle) + dh_dy * math.sin(scene.light_angle)) * rb
    shading = contrast * (0.45 * slope - 0.18 * inside**2)
    return _cut(np.repeat(shading[..., None], 3, axis=2).astype(np.float32), x0, y0, "dent")


def _stain(rng: np.random.Generator, x: float, y: float, size: int, scene: Scene) -> "_Painted | None":
    """An irregular blob (a circle with a wobbling rim) of brownish residue, denser in places."""
    radius = float(rng.uniform(0.03, 0.055)) * size
    amplitudes = rng.uniform(0.0, 0.16, 3)
    phases = rng.uniform(0.0, 2 * math.pi, 3)
    density = float(rng.uniform(0.55, 0.85))
    mottle = rng.uniform(0.0, 2 * math.pi, 2)
    xx, yy, x0, y0 = _grid(x, y, radius * 1.5 + 2, size)
    rho, phi = np.hypot(xx - x, yy - y), np.arctan2(yy - y, xx - x)
    wobble = sum(amp * np.cos((k + 2) * phi + ph) for k, (amp, ph) in enumerate(zip(amplitudes, phases, strict=True)))
    rim = radius * (1.0 + wobble)
    cover = np.clip((rim - rho) / (0.25 * radius) + 0.5, 0.0, 1.0)
    texture = 0.85 + 0.15 * np.sin(xx / radius * 3.1 + mottle[0]) * np.cos(yy / radius * 2.7 + mottle[1])
    alpha = (density * cover * texture).astype(np.float32)
    return _cut(-alpha[..., None] * _STAIN_ABSORPTION, x0, y0, "stain")


_DRAWERS = {"scratch": _scratch, "dent": _dent, "stain": _stain}
