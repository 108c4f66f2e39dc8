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
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

from resources.data.sample_scenes import (
    DEFAULT_CLASSES,
    SampleLineError,
    camera_spec,
    draw_scene,
    image_rngs,
    name_key,
)
from resources.data.sample_render import render

__all__ = [
    "DEFAULT_CLASSES",
    "METADATA_COLUMNS",
    "METADATA_FILE",
    "SampleLineError",
    "SampleLineSummary",
    "generate_sample_line",
]

logger = logging.getLogger(__name__)

METADATA_FILE = "metadata.csv"
METADATA_COLUMNS: tuple[str, ...] = ("path", "camera", "shift", "lighting", "capture_time")

# A fixed default keeps the metadata deterministic: "now" would change the file on every run.
_DEFAULT_START = datetime(2026, 1, 5, 6, 0, 0, tzinfo=UTC)
_MIN_SIZE, _MAX_SIZE = 32, 1024
_MAX_PER_CLASS = 99_999  # the file index has five digits
# Camera and shift names form the file name <camera>_<shift>_<index>, so they must not hold "_".
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")

@dataclass(frozen=True)
class SampleLineSummary:
    """What ``generate_sample_line`` wrote: enough to find and check the dataset."""

    out_dir: Path
    classes: tuple[str, ...]
    counts: dict[str, int]
    cameras: tuple[str, ...]
    seed: int
    image_size: int


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

    camera_specs = {name: camera_spec(seed, name) for name in camera_names}
    rows: list[tuple[str, str, str, str]] = []  # path, camera, shift, lighting
    for class_name in class_names:
        (out_dir / class_name).mkdir(parents=True, exist_ok=True)
        for index in range(counts[class_name]):
            camera = camera_names[index % len(camera_names)]
            shift = shift_names[(index // len(camera_names)) % len(shift_names)]
            shift_position = shift_names.index(shift) / max(1, len(shift_names) - 1)
            scene_rng, noise_rng = image_rngs(seed, class_name, camera, shift, index)
            scene = draw_scene(scene_rng, class_name, camera_specs[camera], shift_position)
            pixels = render(scene, image_size, colour, noise_rng)
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
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(name_key("schedule"),)))
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
