"""Write a training folder in ultralytics' YOLO layout from the platform's in-memory boxes.

ultralytics trains from files: ``images/<split>/*``, ``labels/<split>/*.txt`` and a ``data.yaml``
naming the splits and classes, and it writes ``labels/*.cache`` beside them. So a run never trains
from the dataset version's own folder (read-only, shared): :func:`write_yolo_dataset` writes a copy
under the run folder. Labels go through :func:`resources.detect.formats.write_yolo`, the one YOLO
writer of the platform, so training sees exactly what the label checks saw.

A split is either a :class:`BoxSet` (image paths relative to ``images_dir``, files copied as they are)
or a sequence of ``(image, boxes)`` pairs: ``image`` a uint8 H×W×3 RGB array (written as PNG) or a
path, ``boxes`` a (K, 5) array ``x_min, y_min, x_max, y_max, class_id`` in pixels (K may be 0: a good
part) or a sequence of :class:`Box`.
"""

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeAlias

import numpy as np

from resources.detect.boxes import Box, BoxSet, ImageInfo
from resources.detect.errors import DetectLabelError
from resources.detect.formats import image_size, write_yolo
from resources.detect.yolo_errors import DetectorDataError

__all__ = ["SPLITS", "LabelledImage", "SplitInput", "write_yolo_dataset"]

SPLITS = ("train", "val", "test")
"""Split names ultralytics reads from data.yaml; ``train`` and ``val`` are required."""

LabelledImage: TypeAlias = tuple["np.ndarray | Path", "np.ndarray | Sequence[Box]"]
SplitInput: TypeAlias = "BoxSet | Sequence[LabelledImage]"


def write_yolo_dataset(
    root: Path,
    splits: Mapping[str, SplitInput],
    class_names: Sequence[str],
    *,
    images_dir: Path | None = None,
) -> Path:
    """Write ``splits`` under ``root`` in YOLO layout; returns the ``data.yaml`` path to train from.

    ``images_dir`` is where the image paths of :class:`BoxSet` splits are found. Refuses a ``root``
    that already holds a dataset (stale labels must never mix with new ones), unknown split names,
    class ids without a name and images whose file size differs from the size the boxes refer to.
    """
    import yaml

    root = Path(root)
    names = tuple(str(name) for name in class_names)
    if not names or len(set(names)) != len(names) or not all(names):
        raise DetectorDataError(f"class_names must be unique, non-empty names, got {list(names)}")
    unknown = sorted(set(splits) - set(SPLITS))
    missing = [name for name in ("train", "val") if name not in splits]
    if unknown or missing:
        raise DetectorDataError(
            f"splits {sorted(splits)}: ultralytics reads {', '.join(SPLITS)} and needs train and val "
            f"(unknown: {unknown or 'none'}, missing: {missing or 'none'}); rename the splits"
        )
    if (root / "data.yaml").exists() or (root / "labels").exists():
        raise DetectorDataError(f"{root}: already holds a YOLO dataset; write into a new, empty folder")
    for split, items in splits.items():
        image_root = root / "images" / split
        if isinstance(items, BoxSet):
            dataset = _copy_box_set(items, names, images_dir, image_root, split)
        else:
            dataset = _write_pairs(items, names, image_root, split)
        try:
            write_yolo(dataset, root / "labels" / split, names_file=root / f".names-{split}.yaml")
        except DetectLabelError as exc:
            raise DetectorDataError(f"split {split}: {exc}") from exc
        (root / f".names-{split}.yaml").unlink(missing_ok=True)
    document = {
        "path": str(root.resolve()),
        **{split: f"images/{split}" for split in SPLITS if split in splits},
        "nc": len(names),
        "names": dict(enumerate(names)),
    }
    data_yaml = root / "data.yaml"
    partial = root / f".data.yaml.{os.getpid()}.partial"
    partial.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
    os.replace(partial, data_yaml)
    return data_yaml


def _copy_box_set(
    dataset: BoxSet, names: tuple[str, ...], images_dir: Path | None, image_root: Path, split: str
) -> BoxSet:
    """Copy a BoxSet's image files (checking their size) and return it with ``names`` as class list."""
    if dataset.images and images_dir is None:
        raise DetectorDataError(f"split {split}: a BoxSet names its images by relative path; pass images_dir=")
    for info in dataset.images:
        source = Path(images_dir or ".") / info.path
        try:
            size = image_size(source)
        except (OSError, ValueError, DetectLabelError) as exc:
            raise DetectorDataError(f"split {split}: image {source} cannot be read ({exc}); fix or drop it") from exc
        if size != (info.width, info.height):
            raise DetectorDataError(
                f"split {split}: image {source} is {size[0]}x{size[1]} but its boxes refer to "
                f"{info.width}x{info.height}; re-read the labels from these files"
            )
        target = image_root / info.path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return BoxSet(dataset.images, dataset.boxes, names)


def _write_pairs(items: Sequence[LabelledImage], names: tuple[str, ...], image_root: Path, split: str) -> BoxSet:
    """Write each ``(image, boxes)`` pair's image as a PNG (or copy its file) and collect the boxes."""
    from PIL import Image

    infos: list[ImageInfo] = []
    boxes: list[Box] = []
    image_root.mkdir(parents=True, exist_ok=True)
    for index, pair in enumerate(items):
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise DetectorDataError(f"split {split} item {index}: expected an (image, boxes) pair, got {type(pair).__name__}")
        image, item_boxes = pair
        if isinstance(image, str | Path):
            source = Path(image)
            name = f"{index:06d}{source.suffix.lower()}"
            try:
                width, height = image_size(source)
            except (OSError, ValueError, DetectLabelError) as exc:
                raise DetectorDataError(f"split {split} item {index}: image {source} cannot be read ({exc})") from exc
            shutil.copyfile(source, image_root / name)
        else:
            array = np.asarray(image)
            if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
                raise DetectorDataError(
                    f"split {split} item {index}: expected a uint8 H×W×3 RGB image, got {array.dtype} {array.shape}; "
                    "convert it with np.asarray(pil_image.convert('RGB'))"
                )
            name = f"{index:06d}.png"
            height, width = array.shape[:2]
            Image.fromarray(array, "RGB").save(image_root / name)
        infos.append(ImageInfo(name, width, height))
        boxes.extend(_as_boxes(item_boxes, name, names, f"split {split} item {index}"))
    return BoxSet(tuple(infos), tuple(boxes), names)


def _as_boxes(raw: "np.ndarray | Sequence[Box]", image: str, names: tuple[str, ...], where: str) -> list[Box]:
    """(K, 5) pixel array or Box sequence → Boxes of ``image``, class ids checked against ``names``."""
    if isinstance(raw, np.ndarray):
        array = raw.reshape(0, 5) if raw.size == 0 else raw
        if array.ndim != 2 or array.shape[1] != 5:
            raise DetectorDataError(f"{where}: boxes must be a (K, 5) array x_min, y_min, x_max, y_max, class_id; got {raw.shape}")
        result = []
        for x1, y1, x2, y2, cid in array.tolist():
            if not float(cid).is_integer() or not 0 <= int(cid) < len(names):
                raise DetectorDataError(f"{where}: class id {cid} has no name (class_names {list(names)}); fix the box")
            result.append(Box(image, names[int(cid)], float(x1), float(y1), float(x2), float(y2)))
        return result
    return [Box(image, b.class_name, b.x_min, b.y_min, b.x_max, b.y_max) for b in raw]
