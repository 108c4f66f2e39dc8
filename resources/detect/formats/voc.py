"""Pascal VOC XML: one ``.xml`` per image with ``filename``, ``size`` (width, height) and ``object``
elements (``name``, ``bndbox`` xmin/ymin/xmax/ymax).

**Pixel convention.** VOC numbers pixels from 1 and its box corners are *inclusive* pixel indices: a
box covering the first ten pixel columns is ``xmin=1, xmax=10`` (VOC devkit: width = xmax - xmin + 1).
In our continuous 0-based corners that is ``x_min=0, x_max=10``. So, as detectron2's VOC loader does,
reading subtracts 1 from ``xmin``/``ymin`` and keeps ``xmax``/``ymax``; writing adds 1 back. With integer
files (the default when writing) a VOC → ours → VOC round trip is exact, and ours → VOC → ours moves
each corner by at most 0.5 px (rounding to whole pixels; a box thinner than a pixel is widened to the
one pixel VOC can express). ``integer_coordinates=False`` writes floats and round-trips to float
precision. Files written 0-based (``xmin=0``) read as overhanging by 1 px: within the default
tolerance they are clipped to the image and kept.

**Where the image is.** The image path is the XML file's folder (relative to the annotations folder)
plus the basename of ``<filename>``; the writer puts ``<rel path>.xml`` there, so paths round-trip. With
``images_dir`` every named image must exist and match ``size``; images without an XML file are then
reported (or, with ``missing_label_is_good=True``, kept as good parts). The writer writes an XML with
no ``object`` for a good part, so good parts stay explicit. Reviewer and score, which VOC lacks, are
written as extra ``<reviewer>``/``<score>`` elements of an object, which other VOC tools ignore.

**Safety.** Label files come from users, so XML is parsed with expat directly and any ``DOCTYPE`` or
entity declaration is refused (VOC never needs one): no entity expansion bomb, no external entity.
"""

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn
from xml.etree import ElementTree as ET
from xml.parsers import expat

from resources.detect.boxes import Box, BoxSet, ImageInfo
from resources.detect.errors import LabelFileError, Problem, raise_for_problems
from resources.detect.formats._common import (
    one_file_per_image,
    DEFAULT_TOLERANCE_PX,
    IMAGE_SUFFIXES,
    LabelRead,
    assemble,
    image_size,
    place_box,
    rel_posix,
)

__all__ = ["parse_xml_safely", "read_voc", "read_voc_file", "write_voc"]


class _DtdRefused(Exception):
    """Raised inside an expat handler when a document declares a DTD or an entity."""


class _XmlProblem(Exception):
    """Why one XML file cannot be used: ``reason`` and ``fix`` kept apart for a quarantine record."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(f"{reason}; {fix}")
        self.reason, self.fix = reason, fix


def parse_xml_safely(path: Path) -> ET.Element:
    """The root element of an XML file that declares no DTD and no entity; raises LabelFileError for
    an unreadable, empty, malformed or DTD-carrying file."""
    try:
        return _parse(Path(path))
    except _XmlProblem as exc:
        raise LabelFileError(f"{path}: {exc}") from None


def _parse(path: Path) -> ET.Element:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _XmlProblem(f"cannot be read ({exc})", "check the path") from exc
    if not data.strip():
        raise _XmlProblem("annotation file is empty", "export the labels of this image again")
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()

    def refuse(*_: Any) -> NoReturn:
        raise _DtdRefused

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
        return builder.close()
    except _DtdRefused:
        raise _XmlProblem("declares a DTD or entities, which VOC files never need and which are refused for "
                          "safety", "export the file again without a DOCTYPE") from None
    except expat.ExpatError as exc:
        raise _XmlProblem(f"not well-formed XML ({exc})", "export the labels of this image again") from None


def read_voc_file(
    path: Path,
    *,
    rel_dir: str = "",
    class_names: Sequence[str] | None = None,
    reviewer: str | None = None,
    tolerance_px: float = DEFAULT_TOLERANCE_PX,
) -> tuple[ImageInfo, list[Box]]:
    """One VOC file, strictly: raises LabelFileError (unreadable, no size, no filename) or
    LabelItemError (a bad object). ``rel_dir`` is the folder the image path is relative to."""
    info, boxes, problems = _read_one(Path(path), rel_dir, class_names, reviewer, tolerance_px)
    if info is None:  # the whole file is unusable: its one problem says why
        raise LabelFileError(problems[0].message)
    raise_for_problems(problems)
    return info, boxes


def read_voc(
    annotations_dir: Path,
    *,
    images_dir: Path | None = None,
    class_names: Sequence[str] | None = None,
    reviewer: str | None = None,
    tolerance_px: float = DEFAULT_TOLERANCE_PX,
    missing_label_is_good: bool = False,
) -> LabelRead:
    """Every ``.xml`` under ``annotations_dir``; a bad file or object is quarantined (see the module
    doc). ``class_names`` fixes the class order and makes any other name a problem; without it the
    classes are the sorted names found. Raises LabelFileError when the folder has no ``.xml`` at all."""
    annotations_dir = Path(annotations_dir)
    files = sorted(annotations_dir.rglob("*.xml")) if annotations_dir.is_dir() else []
    if not files:
        raise LabelFileError(f"{annotations_dir}: no .xml annotation files found; check the path")
    problems: list[Problem] = []
    infos: dict[str, ImageInfo] = {}
    placed: list[Box] = []
    for xml_path in files:
        rel_dir = xml_path.parent.relative_to(annotations_dir).as_posix()
        info, boxes, file_problems = _read_one(xml_path, rel_dir, class_names, reviewer, tolerance_px)
        problems.extend(file_problems)
        if info is None:
            continue
        if info.path in infos:
            for source in (infos[info.path].source_file, str(xml_path)):
                problems.append(Problem(str(source), "", f"image {info.path} has two annotation files",
                                        "keep one of them", info.path))
            continue
        if images_dir is not None:
            problem = _check_image(Path(images_dir), info)
            if problem is not None:
                problems.append(problem)
        infos[info.path] = info
        placed.extend(boxes)
    if images_dir is not None:
        found = (p for p in Path(images_dir).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        for image in sorted(found):
            rel = image.relative_to(images_dir).as_posix()
            if rel in infos:
                continue
            if not missing_label_is_good:
                problems.append(Problem(str(annotations_dir / Path(rel).with_suffix(".xml")), "",
                                        "image has no annotation file",
                                        "label it (an XML without objects for a good part)", rel))
            else:
                try:
                    width, height = image_size(image)
                except (OSError, ValueError) as exc:
                    problems.append(Problem(str(image), "", f"image cannot be decoded ({exc})",
                                            "replace the file", rel))
                    continue
                infos[rel] = ImageInfo(rel, width, height)
    names = list(class_names) if class_names is not None else sorted({b.class_name for b in placed})
    return assemble(infos.values(), placed, problems, names)


def write_voc(dataset: BoxSet, annotations_dir: Path, *, integer_coordinates: bool = True) -> list[Path]:
    """One ``<rel path>.xml`` per image (no ``object`` for a good part). Refuses a folder already
    holding ``.xml`` files and two images that would share one file (``a.png``/``a.jpg``)."""
    annotations_dir = Path(annotations_dir)
    targets = one_file_per_image(annotations_dir, dataset, ".xml", ".xml files")
    written = []
    for target, image in targets.items():
        info = dataset.image(image)
        root = ET.Element("annotation")
        _sub(root, "folder", Path(info.path).parent.as_posix() if "/" in info.path else "")
        _sub(root, "filename", Path(info.path).name)
        size = ET.SubElement(root, "size")
        _sub(size, "width", str(info.width))
        _sub(size, "height", str(info.height))
        _sub(root, "segmented", "0")
        for box in dataset.boxes_for(info.path):
            dataset.class_id(box)  # refuses a class outside the class list, as the other writers do
            obj = ET.SubElement(root, "object")
            _sub(obj, "name", box.class_name)
            _sub(obj, "pose", "Unspecified")
            _sub(obj, "truncated", "0")
            _sub(obj, "difficult", "0")
            bndbox = ET.SubElement(obj, "bndbox")
            for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), _voc_corners(box, integer_coordinates)):
                _sub(bndbox, tag, value)
            if box.reviewer is not None:
                _sub(obj, "reviewer", box.reviewer)
            if box.score is not None:
                _sub(obj, "score", repr(float(box.score)))
        ET.indent(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        ET.ElementTree(root).write(partial, encoding="utf-8", xml_declaration=False)
        os.replace(partial, target)
        written.append(target)
    return written


# ------------------------------------------------------------------------------------------ helpers


def _voc_corners(box: Box, integer: bool) -> tuple[str, str, str, str]:
    """Our continuous corners as VOC's 1-based inclusive indices (see the module doc)."""
    if not integer:
        return (repr(box.x_min + 1.0), repr(box.y_min + 1.0), repr(float(box.x_max)), repr(float(box.y_max)))
    x0, y0, x1, y1 = (round(v) for v in box.corners)
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)  # at least one pixel, the least VOC can say
    return (str(x0 + 1), str(y0 + 1), str(x1), str(y1))


def _sub(parent: ET.Element, tag: str, text: str) -> None:
    ET.SubElement(parent, tag).text = text


def _text(element: ET.Element, path: str) -> str | None:
    found = element.find(path)
    return found.text.strip() if found is not None and found.text and found.text.strip() else None


def _number(element: ET.Element, path: str) -> float | None:
    text = _text(element, path)
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _read_one(
    path: Path, rel_dir: str, class_names: Sequence[str] | None, reviewer: str | None, tolerance_px: float
) -> tuple[ImageInfo | None, list[Box], list[Problem]]:
    file = str(path)
    try:
        root = _parse(path)
    except _XmlProblem as exc:
        return None, [], [Problem(file, "", exc.reason, exc.fix)]
    filename = _text(root, "filename")
    if root.tag != "annotation" or filename is None:
        return None, [], [Problem(file, "", f"not a VOC annotation (root <{root.tag}>, filename {filename!r})",
                                  "export as Pascal VOC with <filename>")]
    base = rel_posix(filename).rsplit("/", 1)[-1]
    rel = f"{rel_dir}/{base}" if rel_dir not in ("", ".") else base
    width, height = _number(root, "size/width"), _number(root, "size/height")
    if not width or not height or width <= 0 or height <= 0 or not width.is_integer() or not height.is_integer():
        return None, [], [Problem(file, "", f"no valid <size> (width {width}, height {height})",
                                  "add <size><width>..</width><height>..</height></size>", rel)]
    info = ImageInfo(rel, int(width), int(height), file)
    boxes: list[Box] = []
    problems: list[Problem] = []
    for number, obj in enumerate(root.findall("object"), start=1):
        item = f"object {number}"
        name = _text(obj, "name")
        if name is None:
            problems.append(Problem(file, item, "object has no <name>", "name the object's class", rel))
            continue
        if class_names is not None and name not in class_names:
            problems.append(Problem(file, item, f"class {name!r} is not in the class list {list(class_names)}",
                                    "fix the name or add the class", rel))
            continue
        corners = [_number(obj, f"bndbox/{tag}") for tag in ("xmin", "ymin", "xmax", "ymax")]
        if any(v is None for v in corners):
            problems.append(Problem(file, item, f"<bndbox> needs numeric xmin, ymin, xmax, ymax, got {corners}",
                                    "fix the object's box", rel))
            continue
        xmin, ymin, xmax, ymax = (float(v) for v in corners if v is not None)
        score = _number(obj, "score")
        result = place_box(info, name, (xmin - 1.0, ymin - 1.0, xmax, ymax), file=file, item=item,
                           tolerance_px=tolerance_px, reviewer=_text(obj, "reviewer") or reviewer, score=score)
        if isinstance(result, Problem):
            problems.append(result)
        else:
            boxes.append(result)
    return info, boxes, problems


def _check_image(images_dir: Path, info: ImageInfo) -> Problem | None:
    file = info.source_file or ""
    try:
        actual = image_size(images_dir / info.path)
    except (OSError, ValueError) as exc:
        return Problem(file, "", f"names image {info.path}, which cannot be opened under {images_dir} ({exc})",
                       "copy the image there or delete the annotation file", info.path)
    if actual != (info.width, info.height):
        return Problem(file, "", f"size says {info.width}x{info.height} but the image is {actual[0]}x{actual[1]}",
                       "export the labels from this image again", info.path)
    return None
