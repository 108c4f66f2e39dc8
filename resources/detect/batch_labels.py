"""A landed batch's box labels: COCO, YOLO or Pascal VOC files beside the images, read into the
platform's tables.

The batch's files are stored by content hash; the readers (``resources.detect.formats``) expect the
folder a labelling tool wrote. So the batch is rebuilt as links in a scratch folder, read there, and
each image gets:

- one image-level label: the class with the most boxes (ties: the first by name), or the good class
  for an image without a box (a good part) — what the split stratifies on and the label checks read;
- its boxes as ``label_boxes`` rows in the image's own pixels;
- or, when one of its items is wrong (a box outside the image, a class id without a name, ...), a
  place in the quarantine with the reader's reason and fix: the rest of the batch goes on.
"""

import os
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from resources.detect.errors import LabelFileError
from resources.engine_io import BatchFiles, BatchLabels

if TYPE_CHECKING:
    from resources.detect.boxes import BoxSet
__all__ = ["BOX_COLUMNS", "BOX_FORMATS", "read_batch_boxes"]

BOX_FORMATS = ("coco", "yolo", "voc")
BOX_COLUMNS = ("rel_path", "class_name", "x_min", "y_min", "x_max", "y_max", "reviewer", "image_width", "image_height")
_REVIEWER = "default"


def read_batch_boxes(files: BatchFiles, label_format: str, good_class: str | None) -> BatchLabels:
    """The batch's image labels, ``label_boxes`` rows and quarantined images (see the module doc)."""
    from resources.detect.formats import read_labels

    if label_format not in BOX_FORMATS:
        raise LabelFileError(
            f"batch {files.batch}: label format {label_format!r} has no boxes; a detection variant reads "
            f"{', '.join(BOX_FORMATS)}: re-register it with --format"
        )
    if good_class is None:
        raise LabelFileError(
            f"batch {files.batch}: a detection variant needs a good class for images without boxes; register it with --good-class"
        )
    with tempfile.TemporaryDirectory(prefix="mfgv-boxes-") as scratch:
        root = Path(scratch)
        for rel_path, stored in [*files.images.items(), *files.sidecars.items()]:
            target = root / rel_path
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(Path(stored).resolve(), target)
        source, images_dir = _layout(root, label_format, files)
        dataset, problems = read_labels(label_format, source, images_dir=images_dir)
        prefix = images_dir.relative_to(root).as_posix() if images_dir is not None and images_dir != root else ""
    to_batch = _batch_paths(prefix, files.images)
    quarantined: dict[str, dict[str, str]] = {}
    for problem in problems:
        rel = to_batch(problem.image) if problem.image else _source_rel(problem.file, root)
        quarantined.setdefault(rel, {"rel_path": rel, "reason": "bad_box_label", "detail": problem.message.replace(str(root) + "/", "")})
    return _tables(dataset, to_batch, files, quarantined, good_class)


def _batch_paths(prefix: str, images: Mapping[str, Path]) -> Callable[[str], str]:
    """A label's image path as the batch's: under the images folder the reader was given, else the
    one batch image of that file name (VOC files name the file only; datasets keep several folders)."""
    by_name: dict[str, list[str]] = {}
    by_stem: dict[str, list[str]] = {}
    for rel in images:
        by_name.setdefault(Path(rel).name, []).append(rel)
        by_stem.setdefault(Path(rel).stem, []).append(rel)

    def to_batch(path: str) -> str:
        candidate = f"{prefix}/{path}" if prefix else path
        if candidate in images:
            return candidate
        named = by_name.get(Path(path).name, [])
        if not named and not Path(path).suffix:  # VOC files that name the image without its extension (NEU-DET does)
            named = by_stem.get(Path(path).name, [])
        return named[0] if len(named) == 1 else candidate

    return to_batch


def _source_rel(file: str, root: Path) -> str:
    try:
        return Path(file).relative_to(root).as_posix()
    except ValueError:
        return Path(file).name


def _layout(root: Path, label_format: str, files: BatchFiles) -> tuple[Path, Path | None]:  # noqa: C901
    """(the source the format's reader takes, the images folder) in the rebuilt batch."""
    sidecars = sorted(files.sidecars)
    if label_format == "coco":
        jsons = [name for name in sidecars if name.endswith(".json")]
        if len(jsons) != 1:
            raise LabelFileError(
                f"batch {files.batch}: a COCO batch holds one .json annotation file, found {len(jsons)} "
                f"({', '.join(jsons) or 'none'}); deliver exactly one"
            )
        return root / jsons[0], _images_folder(root, files, ("images", ""))
    if label_format == "yolo":
        texts = [name for name in sidecars if name.endswith(".txt") and Path(name).name != "classes.txt"]
        folders = Counter(Path(name).parent.as_posix() for name in texts)
        common = folders.most_common(1)[0][0] if folders else "labels"
        # ultralytics' own layout splits into labels/train, labels/val beside images/train, ...: read the
        # top labels folder (the reader pairs label and image by their path below it)
        labels_dir = root / ("labels" if common.split("/")[0] == "labels" else common)
        return labels_dir, _images_folder(root, files, ("images", ""))
    xmls = [name for name in sidecars if name.endswith(".xml")]
    folders = Counter(Path(name).parent.as_posix() for name in xmls)
    if len(folders) > 1:  # e.g. ANNOTATIONS/ and Validation_Annotations/: read them all, match images by file name
        return root, None
    annotations_dir = root / (folders.most_common(1)[0][0] if folders else "Annotations")
    images = _images_folder(root, files, ("JPEGImages", "images", ""))
    return annotations_dir, None if images == root and not _names_resolve(root, files, xmls) else images


def _names_resolve(root: Path, files: BatchFiles, xmls: list[str]) -> bool:
    """Whether the VOC files' images lie beside the batch root under their own stems (else they are
    matched by file name wherever they are)."""
    stems = {Path(rel).stem for rel in files.images if "/" not in rel}
    return bool(stems) and all(Path(name).stem in stems for name in xmls[:50])


def _images_folder(root: Path, files: BatchFiles, candidates: tuple[str, ...]) -> Path:
    """The first candidate folder that holds images of the batch (the batch root last)."""
    for name in candidates:
        if not name:
            return root
        if any(rel.startswith(f"{name}/") for rel in files.images):
            return root / name
    return root


def _tables(
    dataset: "BoxSet",
    to_batch: Callable[[str], str],
    files: BatchFiles,
    quarantined: dict[str, dict[str, str]],
    good_class: str,
) -> BatchLabels:
    from resources.detect.review import review_boxes

    images = files.images
    reviewed = review_boxes(dataset, good_class)
    label_rows: list[tuple[str, str, str, str]] = []
    box_rows: list[tuple] = []
    consensus = reviewed.training is not dataset
    for info in dataset.images:
        rel = to_batch(info.path)
        if rel in quarantined:
            continue
        if rel not in images:
            quarantined[rel] = {
                "rel_path": rel,
                "reason": "label_without_image",
                "detail": f"{rel}: labelled, but the batch has no such image; deliver the image or drop its label",
            }
            continue
        decoded = files.sizes.get(rel)
        if decoded is not None and decoded != (info.width, info.height):
            quarantined[rel] = {
                "rel_path": rel,
                "reason": "box_label_size",
                "detail": f"{rel}: its labels are for a {info.width}×{info.height} image but the file decodes as "
                f"{decoded[0]}×{decoded[1]} (an EXIF rotation, or labels of another image); boxes would land in the wrong "
                "place: save the image with its pixels upright (no EXIF orientation) and label it again",
            }
            continue
        for reviewer, label in reviewed.labels[info.path].items():
            label_rows.append((rel, label, reviewer, "boxes"))
        kept = [*dataset.boxes_for(info.path), *(reviewed.training.boxes_for(info.path) if consensus else ())]
        for box in kept:
            box_rows.append(
                (rel, box.class_name, box.x_min, box.y_min, box.x_max, box.y_max, box.reviewer or _REVIEWER, info.width, info.height)
            )
    unlabelled = sorted(set(images) - {row[0] for row in label_rows} - set(quarantined))
    for rel in unlabelled:
        quarantined[rel] = {
            "rel_path": rel,
            "reason": "no_box_label",
            "detail": f"{rel}: the batch's labels do not list this image, so it is neither a good part nor a labelled defect; "
            "label it (an empty label file or an image entry without boxes marks a good part)",
        }
    import pandas as pd

    from resources.data.labels import label_frame

    boxes = pd.DataFrame(box_rows, columns=list(BOX_COLUMNS))
    kept_images = {row[0] for row in label_rows}
    by_batch = {info.path: to_batch(info.path) for info in dataset.images}
    tables = {"label_boxes": boxes}
    for name, rows in (("box_disagreements", reviewed.disagreements), ("box_findings", reviewed.findings)):
        placed = [{"rel_path": by_batch.get(row["image"], row["image"]), **row} for row in rows]
        placed = [row for row in placed if row["rel_path"] in kept_images]
        if placed:
            tables[name] = pd.DataFrame(placed)
    return BatchLabels(
        labels=label_frame(label_rows), tables=tables, quarantined=list(quarantined.values()), summary=reviewed.summary
    )
