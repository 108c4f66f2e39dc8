"""COCO detection JSON: one file with ``images`` (id, file_name, width, height), ``categories`` (id,
name) and ``annotations`` (id, image_id, category_id, bbox ``[x, y, w, h]`` in pixels).

COCO's pixel convention is ours (0-based continuous, top-left origin), so the only conversion is
``[x, y, w, h]`` ↔ corners. An image without annotations is a good part. Two optional per-annotation
fields survive a round trip: ``reviewer`` (as in the classification import, ``resources.data.labels``)
and ``score`` (a model's confidence, as in COCO results files).

Not done with ``pycocotools``: its ``COCO`` class only indexes a file (``createIndex`` files every
annotation under its ``image_id``/``category_id`` in ``defaultdict``s, so a dangling id passes silently,
and a bad bbox is never looked at), and it has no writer; its value is ``COCOeval``, the mAP evaluation,
which belongs to validation, not to label import. Plain ``json`` plus the checks here is all it takes.
"""

import json
import math
import os
from pathlib import Path
from typing import Any

from resources.detect.boxes import Box, BoxSet, ImageInfo
from resources.detect.errors import LabelFileError, Problem
from resources.detect.formats._common import (
    DEFAULT_TOLERANCE_PX,
    LabelRead,
    assemble,
    image_size,
    place_box,
    read_text,
    rel_posix,
)

__all__ = ["read_coco", "write_coco"]


def read_coco(
    path: Path,
    *,
    images_dir: Path | None = None,
    reviewer: str | None = None,
    tolerance_px: float = DEFAULT_TOLERANCE_PX,
) -> LabelRead:
    """Read a COCO detection file into a dataset and the quarantined items.

    ``images_dir``, when given, is where ``file_name`` paths resolve: each image must exist there and
    have the size the file claims. ``reviewer`` is used for annotations without a ``reviewer`` field.
    Raises :class:`LabelFileError` for a file that is empty, not JSON, not COCO-shaped or whose
    categories are broken (every annotation depends on them).
    """
    path = Path(path)
    file = str(path)
    data = _load(path)
    class_names, category_names = _categories(data["categories"], file)
    problems: list[Problem] = []
    images: dict[Any, ImageInfo] = {}
    by_path: dict[str, ImageInfo] = {}
    for index, raw in enumerate(data["images"]):
        info = _image(raw, index, file, images, by_path, images_dir, problems)
        if info is not None:
            images[raw["id"]] = by_path[info.path] = info
    bad_image_ids = {
        raw.get("id") for raw in data["images"] if isinstance(raw, dict) and isinstance(raw.get("id"), int | str)
    } - set(images)
    placed: list[Box] = []
    for index, raw in enumerate(data["annotations"]):
        result = _annotation(raw, index, file, images, bad_image_ids, category_names, reviewer, tolerance_px)
        if isinstance(result, Problem):
            problems.append(result)
        elif result is not None:
            placed.append(result)
    return assemble(images.values(), placed, problems, class_names)


def write_coco(dataset: BoxSet, path: Path) -> Path:
    """Write ``dataset`` as COCO JSON (image ids and annotation ids from 1 in dataset order, category id
    = class index + 1). Refuses a box whose class is not in ``class_names``. Written atomically."""
    path = Path(path)
    image_ids = {info.path: n for n, info in enumerate(dataset.images, start=1)}
    annotations = []
    for n, box in enumerate(dataset.boxes, start=1):
        width, height = box.width, box.height
        record: dict[str, Any] = {
            "id": n,
            "image_id": image_ids[box.image],
            "category_id": dataset.class_id(box) + 1,
            "bbox": [box.x_min, box.y_min, width, height],
            "area": width * height,
            "iscrowd": 0,
        }
        if box.reviewer is not None:
            record["reviewer"] = box.reviewer
        if box.score is not None:
            record["score"] = box.score
        annotations.append(record)
    document = {
        "images": [
            {"id": image_ids[info.path], "file_name": info.path, "width": info.width, "height": info.height}
            for info in dataset.images
        ],
        "categories": [{"id": n, "name": name} for n, name in enumerate(dataset.class_names, start=1)],
        "annotations": annotations,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(document, indent=1), encoding="utf-8")
    os.replace(partial, path)
    return path


# ------------------------------------------------------------------------------------------ reading


def _load(path: Path) -> dict[str, Any]:
    text = read_text(path, "COCO annotation file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelFileError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); export it again"
        ) from exc
    if not isinstance(data, dict):
        raise LabelFileError(f"{path}: a COCO file is a JSON object, got {type(data).__name__}; export as COCO")
    missing = [key for key in ("images", "categories", "annotations") if not isinstance(data.get(key), list)]
    if missing:
        raise LabelFileError(
            f"{path}: no list {', '.join(repr(k) for k in missing)} (keys: {sorted(data)}); "
            "export as COCO detection (images, categories, annotations)"
        )
    return data


def _categories(raw: list[Any], file: str) -> tuple[list[str], dict[Any, str]]:
    """Class names ordered by category id, and id → name. Broken categories break every annotation
    that uses them, so they are a whole-file error."""
    by_id: dict[Any, str] = {}
    for index, category in enumerate(raw):
        cid = category.get("id") if isinstance(category, dict) else None
        name = category.get("name") if isinstance(category, dict) else None
        if not isinstance(cid, int) or isinstance(cid, bool) or not isinstance(name, str) or not name.strip():
            raise LabelFileError(
                f"{file} categories[{index}]: needs an integer id and a non-empty name, got {category!r}; "
                "fix the category list"
            )
        if cid in by_id:
            raise LabelFileError(f"{file}: category id {cid} is used twice ({by_id[cid]!r}, {name!r}); "
                                 "give each category its own id")
        by_id[cid] = name.strip()
    names = [by_id[cid] for cid in sorted(by_id)]
    if len(set(names)) != len(names):
        raise LabelFileError(f"{file}: two categories share a name ({names}); merge them or rename one")
    return names, by_id


def _image(
    raw: Any,
    index: int,
    file: str,
    seen: dict[Any, ImageInfo],
    by_path: dict[str, ImageInfo],
    images_dir: Path | None,
    problems: list[Problem],
) -> ImageInfo | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), int | str):
        problems.append(Problem(file, f"images[{index}]", "image entry has no integer or string id",
                                "give every image an id"))
        return None
    item = f"image id {raw['id']}"
    name = raw.get("file_name")
    rel = rel_posix(name) if isinstance(name, str) and name.strip() else None
    if rel is None:
        problems.append(Problem(file, item, "image has no file_name", "add the image's relative path"))
        return None
    clash = seen.get(raw["id"]) or by_path.get(rel)
    if clash is not None:
        # Either image may own the annotations, so both are set aside.
        what = "image id" if raw["id"] in seen else "file_name"
        for image in (clash.path, rel):
            problems.append(Problem(file, item, f"{what} is used twice ({clash.path} and {rel})",
                                    "give each image its own id and file_name", image))
        return None
    width, height = _pixels(raw.get("width")), _pixels(raw.get("height"))
    if width is None or height is None:
        problems.append(Problem(file, item, "image has no valid width/height (got "
                                f"{raw.get('width')!r}x{raw.get('height')!r})",
                                "write the image size into the COCO file", rel))
        return None
    if images_dir is not None:
        try:
            actual = image_size(Path(images_dir) / rel)
        except (OSError, ValueError) as exc:
            problems.append(Problem(file, item, f"image {rel} cannot be opened under {images_dir} ({exc})",
                                    "copy the image there or remove it from the file", rel))
            return None
        if actual != (width, height):
            problems.append(Problem(file, item, f"size says {width}x{height} but the image is "
                                    f"{actual[0]}x{actual[1]}", "export the labels from this image again", rel))
            return None
    return ImageInfo(rel, width, height, file)


def _annotation(
    raw: Any,
    index: int,
    file: str,
    images: dict[Any, ImageInfo],
    bad_image_ids: set[Any],
    categories: dict[Any, str],
    reviewer: str | None,
    tolerance_px: float,
) -> Box | Problem | None:
    if not isinstance(raw, dict):
        return Problem(file, f"annotations[{index}]", "annotation is not an object", "export as COCO detection")
    item = f"annotation id {raw['id']}" if "id" in raw else f"annotations[{index}]"
    image_id = raw.get("image_id")
    if not isinstance(image_id, int | str):
        return Problem(file, item, f"image_id {image_id!r} is not an id", "set the annotation's image_id")
    if image_id in bad_image_ids:
        return None  # its image is already quarantined with its own problem
    info = images.get(image_id)
    if info is None:
        return Problem(file, item, f"image_id {image_id!r} points to no image",
                       "add the image to 'images' or delete the annotation")
    category_id = raw.get("category_id")
    name = categories.get(category_id) if isinstance(category_id, int) else None
    if name is None:
        return Problem(file, item, f"category_id {category_id!r} points to no category "
                       f"(known ids: {sorted(categories)})", "add the category or fix the annotation", info.path)
    bbox = raw.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)):
        return Problem(file, item, f"bbox must be 4 numbers [x, y, w, h], got {bbox!r}",
                       "fix the annotation's bbox", info.path)
    x, y, w, h = (float(v) for v in bbox)
    raw_score: Any = raw.get("score")
    score = float(raw_score) if _number(raw_score) else None
    who = raw.get("reviewer", reviewer)
    return place_box(
        info, name, (x, y, x + w, y + h), file=file, item=item, tolerance_px=tolerance_px,
        reviewer=str(who) if who is not None else None, score=score,
    )


def _pixels(value: Any) -> int | None:
    """A positive pixel count, or None: tools write ``640`` or ``640.0``."""
    if _number(value) and value > 0 and float(value).is_integer():
        return int(value)
    return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
