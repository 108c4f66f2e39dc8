"""The one in-memory form of detection labels, and its ``label_boxes`` table.

Every format (COCO, YOLO, Pascal VOC) is read into and written from this form, so a conversion is
always ``read → BoxSet → write`` and each format's quirks live in exactly one reader and one writer.

Coordinates are **pixels, continuous, 0-based, corners** (``x_min, y_min, x_max, y_max``): the image
spans ``[0, width] × [0, height]`` and a box's width is ``x_max - x_min``. This is COCO's convention
(``[x, y, w, h]`` with the same origin) and what YOLO's normalised numbers scale to; VOC's 1-based
inclusive pixel indices are converted in ``formats/voc.py``.

An image with no box is a good part and is kept: a :class:`BoxSet` lists its images separately from
its boxes, and the table form gives such an image one row whose box columns are null.

pyarrow and pandas are imported inside the table functions, so reading labels stays light.
"""

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from resources.detect.errors import BoxSetError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = [
    "TABLE_COLUMNS",
    "Box",
    "BoxSet",
    "ImageInfo",
    "split_by_reviewer",
    "table_schema",
]

# Columns of the ``label_boxes`` table, in order (see ``table_schema`` for types).
TABLE_COLUMNS = (
    "image",
    "image_width",
    "image_height",
    "class_name",
    "x_min",
    "y_min",
    "x_max",
    "y_max",
    "reviewer",
    "score",
    "source_file",
    "source_item",
)
# Schema metadata key holding the ordered class names (YOLO ids and COCO category ids follow it).
_CLASS_NAMES_KEY = b"class_names"


@dataclass(frozen=True, slots=True)
class Box:
    """One labelled box in pixels (see the module docstring for the convention).

    ``reviewer`` is who drew it (None when the source does not say), ``score`` a model's confidence or a
    consensus support fraction (None for a human label), ``source_file``/``source_item`` where it was
    read from (``line 4``, ``annotation id 17``), so a finding can send someone to the exact line.
    Only finiteness is enforced here: a box outside its image or of zero size must stay representable so
    that ``checks.py`` can report it.
    """

    image: str
    class_name: str
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    reviewer: str | None = None
    score: float | None = None
    source_file: str | None = None
    source_item: str | None = None

    def __post_init__(self) -> None:
        coords = (self.x_min, self.y_min, self.x_max, self.y_max)
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in coords):
            raise BoxSetError(
                f"box of class {self.class_name!r} in {self.image}: coordinates must be finite numbers, "
                f"got {coords}; fix the producer of this box"
            )
        if not self.image or not self.class_name:
            raise BoxSetError(f"box {coords}: image and class_name must be non-empty, got "
                              f"{self.image!r}/{self.class_name!r}; fix the producer of this box")

    @property
    def width(self) -> float:
        return self.x_max - self.x_min

    @property
    def height(self) -> float:
        return self.y_max - self.y_min

    @property
    def area(self) -> float:
        """Signed-safe area: 0 for a box of non-positive width or height."""
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def corners(self) -> tuple[float, float, float, float]:
        return (self.x_min, self.y_min, self.x_max, self.y_max)

    @property
    def where(self) -> str:
        """``labels/a.txt line 4`` or the image name: where to look for this box."""
        if self.source_file:
            return f"{self.source_file} {self.source_item}" if self.source_item else self.source_file
        return self.image


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """An image of the dataset: its relative path (forward slashes) and size in pixels."""

    path: str
    width: int
    height: int
    source_file: str | None = None

    def __post_init__(self) -> None:
        if not self.path or self.width <= 0 or self.height <= 0:
            raise BoxSetError(
                f"image {self.path!r}: needs a non-empty path and a positive size, got "
                f"{self.width}x{self.height}; read the size from the image file"
            )


@dataclass(frozen=True)
class BoxSet:
    """A labelled dataset (or one reviewer's pass over it): images, boxes and ordered class names.

    ``class_names`` fixes the class ids writers use (YOLO id = index, COCO category id = index + 1);
    a box's class need not be in it (``checks.py`` reports unknown classes as blocking), but writers
    refuse such a box. Every box's image must be listed in ``images``; paths are unique.
    """

    images: tuple[ImageInfo, ...]
    boxes: tuple[Box, ...] = ()
    class_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", tuple(self.images))
        object.__setattr__(self, "boxes", tuple(self.boxes))
        object.__setattr__(self, "class_names", tuple(self.class_names))
        seen: set[str] = set()
        for info in self.images:
            if info.path in seen:
                raise BoxSetError(f"image {info.path} is listed twice; list each image once")
            seen.add(info.path)
        unlisted = sorted({b.image for b in self.boxes} - seen)
        if unlisted:
            raise BoxSetError(
                f"{len(unlisted)} image(s) have boxes but are not listed (first: {unlisted[0]}); "
                "add an ImageInfo with the image's size for each"
            )
        if len(set(self.class_names)) != len(self.class_names) or not all(self.class_names):
            raise BoxSetError(f"class_names must be unique and non-empty, got {list(self.class_names)}")

    @classmethod
    def build(
        cls, images: Iterable[ImageInfo], boxes: Iterable[Box], class_names: Sequence[str] | None = None
    ) -> "BoxSet":
        """A set whose class names default to the sorted classes of its boxes."""
        boxes = tuple(boxes)
        names = tuple(class_names) if class_names is not None else tuple(sorted({b.class_name for b in boxes}))
        return cls(tuple(images), boxes, names)

    @cached_property
    def _by_image(self) -> dict[str, tuple[Box, ...]]:
        grouped: dict[str, list[Box]] = {info.path: [] for info in self.images}
        for box in self.boxes:
            grouped[box.image].append(box)
        return {path: tuple(boxes) for path, boxes in grouped.items()}

    @cached_property
    def _info(self) -> dict[str, ImageInfo]:
        return {info.path: info for info in self.images}

    def boxes_for(self, image: str) -> tuple[Box, ...]:
        """The boxes of one image, in reading order (empty for a good part)."""
        return self._by_image[image]

    def has_image(self, path: str) -> bool:
        return path in self._info

    def image(self, path: str) -> ImageInfo:
        try:
            return self._info[path]
        except KeyError:
            raise BoxSetError(f"image {path} is not in this set; the set has {len(self.images)} images") from None

    def class_id(self, box: Box) -> int:
        """The 0-based class id writers use; refuses a class without an id."""
        try:
            return self.class_names.index(box.class_name)
        except ValueError:
            raise BoxSetError(
                f"{box.where}: class {box.class_name!r} is not in class_names {list(self.class_names)}; "
                "add it to the class list or fix the box"
            ) from None

    # ------------------------------------------------------------------------------------ table form

    def to_arrow(self, reviewer: str | None = None) -> "pa.Table":
        """The ``label_boxes`` table: one row per box, and one row with null box columns per image
        without boxes (a good part). ``reviewer`` fills the reviewer of those good-part rows and of boxes
        that have none. Class names travel in the schema metadata."""
        import pyarrow as pa

        rows: list[dict[str, Any]] = []
        for info in self.images:
            boxes = self._by_image[info.path]
            if not boxes:
                rows.append(_row(info, None, reviewer))
            rows.extend(_row(info, box, reviewer) for box in boxes)
        schema = table_schema(self.class_names)
        return pa.Table.from_pylist(rows, schema=schema)

    def to_pandas(self, reviewer: str | None = None) -> "pd.DataFrame":
        """The ``label_boxes`` table as a DataFrame (class names are on ``df.attrs['class_names']``)."""
        frame = self.to_arrow(reviewer).to_pandas()
        frame.attrs["class_names"] = list(self.class_names)
        return frame

    @classmethod
    def from_arrow(cls, table: "pa.Table", class_names: Sequence[str] | None = None) -> "BoxSet":
        """Rebuild a set from a ``label_boxes`` table (rows with a null class are good-part images).
        Class names come from ``class_names``, else the schema metadata, else the sorted classes."""
        missing = [c for c in TABLE_COLUMNS if c not in table.column_names]
        if missing:
            raise BoxSetError(f"label_boxes table lacks columns {missing}; expected {list(TABLE_COLUMNS)}")
        if class_names is None and table.schema.metadata and _CLASS_NAMES_KEY in table.schema.metadata:
            class_names = json.loads(table.schema.metadata[_CLASS_NAMES_KEY])
        images: dict[str, ImageInfo] = {}
        boxes: list[Box] = []
        for row in table.select(list(TABLE_COLUMNS)).to_pylist():
            info = ImageInfo(row["image"], int(row["image_width"]), int(row["image_height"]), row["source_file"])
            known = images.setdefault(info.path, info)
            if (known.width, known.height) != (info.width, info.height):
                raise BoxSetError(
                    f"image {info.path} has two sizes in the table ({known.width}x{known.height} and "
                    f"{info.width}x{info.height}); fix the rows of this image"
                )
            if row["class_name"] is None:
                continue
            boxes.append(
                Box(row["image"], row["class_name"], row["x_min"], row["y_min"], row["x_max"], row["y_max"],
                    row["reviewer"], row["score"], row["source_file"], row["source_item"])
            )
        return cls.build(images.values(), boxes, class_names)

    @classmethod
    def from_pandas(cls, frame: "pd.DataFrame", class_names: Sequence[str] | None = None) -> "BoxSet":
        """Rebuild from the DataFrame form (class names from ``frame.attrs`` when present)."""
        import pyarrow as pa

        if class_names is None and "class_names" in frame.attrs:
            class_names = frame.attrs["class_names"]
        table = pa.Table.from_pandas(frame[list(TABLE_COLUMNS)], schema=table_schema(()), preserve_index=False)
        return cls.from_arrow(table, class_names)


def table_schema(class_names: Sequence[str] = ()) -> "pa.Schema":
    """The typed schema of the ``label_boxes`` table; ``class_names`` go into its metadata."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("image", pa.string(), nullable=False),
            pa.field("image_width", pa.int32(), nullable=False),
            pa.field("image_height", pa.int32(), nullable=False),
            pa.field("class_name", pa.string()),
            pa.field("x_min", pa.float64()),
            pa.field("y_min", pa.float64()),
            pa.field("x_max", pa.float64()),
            pa.field("y_max", pa.float64()),
            pa.field("reviewer", pa.string()),
            pa.field("score", pa.float64()),
            pa.field("source_file", pa.string()),
            pa.field("source_item", pa.string()),
        ],
        metadata={_CLASS_NAMES_KEY: json.dumps(list(class_names)).encode()},
    )


def split_by_reviewer(table: "pa.Table", class_names: Sequence[str] | None = None) -> dict[str, BoxSet]:
    """One :class:`BoxSet` per reviewer from a multi-reviewer ``label_boxes`` table.

    An image belongs to a reviewer's set when the reviewer has a row for it: a box, or a good-part row
    (null class) carrying the reviewer's name, which is how "reviewer R saw no defect" is stored. Rows
    without a reviewer cannot be attributed and are refused.
    """
    import pyarrow.compute as pc

    unnamed = table.filter(pc.is_null(table["reviewer"]))
    if unnamed.num_rows:
        first = unnamed.slice(0, 1).to_pylist()[0]
        raise BoxSetError(
            f"{unnamed.num_rows} row(s) have no reviewer (first: image {first['image']}); agreement needs "
            "every row attributed: fill the reviewer column, or pass reviewer= when building the table"
        )
    if class_names is None and table.schema.metadata and _CLASS_NAMES_KEY in table.schema.metadata:
        class_names = json.loads(table.schema.metadata[_CLASS_NAMES_KEY])
    names = sorted(set(table["reviewer"].to_pylist()))
    return {
        name: BoxSet.from_arrow(table.filter(pc.equal(table["reviewer"], name)), class_names) for name in names
    }


def _row(info: ImageInfo, box: Box | None, reviewer: str | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "image": info.path,
        "image_width": info.width,
        "image_height": info.height,
        "class_name": None,
        "x_min": None,
        "y_min": None,
        "x_max": None,
        "y_max": None,
        "reviewer": reviewer,
        "score": None,
        "source_file": info.source_file,
        "source_item": None,
    }
    if box is not None:
        row.update(
            class_name=box.class_name, x_min=box.x_min, y_min=box.y_min, x_max=box.x_max, y_max=box.y_max,
            reviewer=box.reviewer if box.reviewer is not None else reviewer, score=box.score,
            source_file=box.source_file if box.source_file is not None else info.source_file,
            source_item=box.source_item,
        )
    return row

