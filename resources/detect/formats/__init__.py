"""Detection label formats: COCO JSON, YOLO txt and Pascal VOC XML, each read into and written from
:class:`resources.detect.boxes.BoxSet`, so any format converts to any other through it.

Readers return ``(dataset, problems)`` (a :class:`LabelRead`): bad items are quarantined with a reason
and a fix while the rest of the dataset is usable; a file the whole dataset depends on raises
:class:`resources.detect.errors.LabelFileError`. ``read_labels``/``write_labels`` dispatch on a
:class:`LabelFormat` for callers that take the format as configuration.
"""

from enum import StrEnum
from pathlib import Path

from resources.detect.boxes import BoxSet
from resources.detect.errors import LabelFileError
from resources.detect.formats._common import DEFAULT_TOLERANCE_PX, LabelRead, image_size
from resources.detect.formats.coco import read_coco, write_coco
from resources.detect.formats.voc import parse_xml_safely, read_voc, read_voc_file, write_voc
from resources.detect.formats.yolo import find_names_file, read_class_names, read_yolo, write_yolo

__all__ = [
    "DEFAULT_TOLERANCE_PX",
    "LabelFormat",
    "LabelRead",
    "find_names_file",
    "image_size",
    "parse_xml_safely",
    "read_class_names",
    "read_coco",
    "read_labels",
    "read_voc",
    "read_voc_file",
    "read_yolo",
    "write_coco",
    "write_labels",
    "write_voc",
    "write_yolo",
]


class LabelFormat(StrEnum):
    """The detection label formats; ``source``/``target`` means the JSON file for COCO, the labels
    folder for YOLO and the annotations folder for VOC."""

    COCO = "coco"
    YOLO = "yolo"
    VOC = "voc"


def _format(fmt: LabelFormat | str) -> LabelFormat:
    try:
        return LabelFormat(str(fmt).lower())
    except ValueError:
        choices = ", ".join(f.value for f in LabelFormat)
        raise LabelFileError(f"unknown detection label format {fmt!r}; choose one of {choices}") from None


def read_labels(
    fmt: LabelFormat | str,
    source: Path,
    *,
    images_dir: Path | None = None,
    reviewer: str | None = None,
    tolerance_px: float = DEFAULT_TOLERANCE_PX,
) -> LabelRead:
    """Read ``source`` in format ``fmt``. YOLO needs ``images_dir`` (its numbers are relative to the
    image size); for COCO and VOC it is optional and, when given, each image must exist and match."""
    match _format(fmt):
        case LabelFormat.COCO:
            return read_coco(Path(source), images_dir=images_dir, reviewer=reviewer, tolerance_px=tolerance_px)
        case LabelFormat.YOLO:
            if images_dir is None:
                raise LabelFileError(f"{source}: YOLO labels are relative to the image size; pass images_dir=")
            return read_yolo(Path(source), Path(images_dir), reviewer=reviewer, tolerance_px=tolerance_px)
        case LabelFormat.VOC:
            return read_voc(Path(source), images_dir=images_dir, reviewer=reviewer, tolerance_px=tolerance_px)
    raise AssertionError("unreachable")  # pragma: no cover


def write_labels(fmt: LabelFormat | str, dataset: BoxSet, target: Path) -> list[Path]:
    """Write ``dataset`` in format ``fmt`` with each writer's defaults; the files written."""
    match _format(fmt):
        case LabelFormat.COCO:
            return [write_coco(dataset, Path(target))]
        case LabelFormat.YOLO:
            return write_yolo(dataset, Path(target))
        case LabelFormat.VOC:
            return write_voc(dataset, Path(target))
    raise AssertionError("unreachable")  # pragma: no cover
