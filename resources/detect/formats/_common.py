"""What the three format readers share: the read result, box placement with a tolerance, image sizes.

Placement is the one rule every reader applies to every box, so COCO, YOLO and VOC quarantine the same
boxes for the same reasons: a box must have positive width and height and lie inside its image; a box
that overhangs by at most ``tolerance_px`` (the rounding of labelling tools, VOC files written 0-based)
is clipped to the image and kept, further out it is a :class:`Problem`.
"""

import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from resources.detect.boxes import Box, BoxSet, ImageInfo
from resources.detect.errors import BoxSetError, LabelFileError, Problem

__all__ = [
    "one_file_per_image",
    "DEFAULT_TOLERANCE_PX",
    "IMAGE_SUFFIXES",
    "LabelRead",
    "assemble",
    "image_size",
    "place_box",
    "read_text",
    "rel_posix",
]

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE_PX = 1.0
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# EXIF orientations that swap width and height (90° turns): what a labelling tool displays.
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112


class LabelRead(NamedTuple):
    """What a reader returns: the usable dataset and the quarantined items. Unpacks as
    ``dataset, problems = read_coco(...)``."""

    dataset: BoxSet
    problems: list[Problem]

    @property
    def quarantined_images(self) -> list[str]:
        """Images set aside because one of their items is wrong (sorted)."""
        return sorted({p.image for p in self.problems if p.image})


def rel_posix(raw: str) -> str:
    """Forward slashes, no leading ``./``: labelling tools on Windows write backslashes."""
    path = raw.strip().replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path


def read_text(path: Path, what: str) -> str:
    """A whole annotation file as text; an unreadable or empty file is a whole-file error."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise LabelFileError(f"{path}: {what} not found; check the path") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelFileError(f"{path}: {what} cannot be read as UTF-8 text ({exc}); export it again") from exc
    if not text.strip():
        raise LabelFileError(f"{path}: {what} is empty; export the labels again")
    return text


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` as a labelling tool shows the image: EXIF 90° turns swap the stored size,
    as ultralytics does, so normalised YOLO numbers scale to the picture the reviewer saw. Reads the
    header only. Raises ``OSError``/``ValueError`` for a missing or undecodable file (callers record it)."""
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        try:
            orientation = image.getexif().get(_EXIF_ORIENTATION)
        except Exception:  # a broken EXIF block must not hide a readable image  # noqa: BLE001
            logger.debug("%s: EXIF unreadable, using the stored size", path)
            orientation = None
    return (height, width) if orientation in _SWAPPING_ORIENTATIONS else (width, height)


def place_box(
    info: ImageInfo,
    class_name: str,
    corners: tuple[float, float, float, float],
    *,
    file: str,
    item: str,
    tolerance_px: float,
    reviewer: str | None = None,
    score: float | None = None,
) -> Box | Problem:
    """The box, clipped to its image when it overhangs by at most ``tolerance_px``; else a Problem."""
    x_min, y_min, x_max, y_max = corners
    if not all(math.isfinite(v) for v in corners):
        return Problem(file, item, f"coordinates {corners} are not finite numbers",
                       "fix the box in the labelling tool", info.path)
    if x_max <= x_min or y_max <= y_min:
        return Problem(
            file, item,
            f"box of class {class_name!r} has zero or negative size ({x_max - x_min:g} x {y_max - y_min:g} px)",
            "redraw the box or delete it", info.path,
        )
    overhang = max(-x_min, -y_min, x_max - info.width, y_max - info.height)
    if overhang > tolerance_px:
        return Problem(
            file, item,
            f"box of class {class_name!r} ({x_min:g}, {y_min:g}, {x_max:g}, {y_max:g}) lies outside the "
            f"{info.width}x{info.height} image by {overhang:g} px (tolerance {tolerance_px:g} px)",
            "redraw the box inside the image, or check that the label belongs to this image", info.path,
        )
    clipped = (max(x_min, 0.0), max(y_min, 0.0), min(x_max, float(info.width)), min(y_max, float(info.height)))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        return Problem(file, item, f"box of class {class_name!r} lies entirely in the image's border margin",
                       "redraw the box inside the image", info.path)
    return Box(info.path, class_name, *clipped, reviewer=reviewer, score=score, source_file=file, source_item=item)


def assemble(
    images: Iterable[ImageInfo], placed: Iterable[Box], problems: list[Problem], class_names: Iterable[str]
) -> LabelRead:
    """The dataset without every image that has a problem (the whole image is quarantined: see
    ``Problem``), and the problems in reading order."""
    bad = {p.image for p in problems if p.image}
    kept_images = [info for info in images if info.path not in bad]
    kept_boxes = [box for box in placed if box.image not in bad]
    if problems:  # the caller reports each one where its user reads (the step's log, the quarantine table)
        logger.debug("%d label item(s) quarantined, %d image(s) set aside; first: %s",
                       len(problems), len(bad), problems[0].message)
    return LabelRead(BoxSet(tuple(kept_images), tuple(kept_boxes), tuple(class_names)), problems)


def one_file_per_image(folder: Path, dataset: BoxSet, suffix: str, what: str) -> dict[Path, str]:
    """Where a per-image format writes each image's label file (``<rel path><suffix>`` under ``folder``).
    Refuses a folder already holding such files (``what`` names them in the message) and two images
    that would share one file (``a.png``/``a.jpg``)."""
    if folder.is_dir() and any(folder.rglob(f"*{suffix}")):
        raise LabelFileError(f"{folder}: already holds {what}; write into an empty folder")
    targets: dict[Path, str] = {}
    for info in dataset.images:
        target = folder / Path(info.path).with_suffix(suffix)
        if target in targets:
            raise BoxSetError(f"images {targets[target]} and {info.path} would share {target}; rename one")
        targets[target] = info.path
    return targets
