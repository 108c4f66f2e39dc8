"""YOLO txt labels: one ``.txt`` per image, one line ``class cx cy w h`` per box, normalised to 0..1.

Layout (ultralytics'): ``images/<sub>/<name>.<ext>`` pairs with ``labels/<sub>/<name>.txt``; the two
folders are passed separately. Class names come from ``data.yaml`` (``names:`` as a list or an
``{id: name}`` mapping) or ``classes.txt`` (one name a line, line n = id n-1), found in the labels folder
or its parent unless named. Because the numbers are relative, reading needs each image's size: it is
read from the image header with PIL (EXIF 90° turns swap it, as ultralytics does).

An empty ``.txt`` is a good part (ultralytics' background image). An image with **no** ``.txt`` is, by
default, a problem and not a good part: in inspection an unlabelled image silently counted as good is a
missed defect; pass ``missing_label_is_good=True`` for datasets that leave backgrounds without a file.
A sixth column is read as a confidence (``save_conf`` prediction files); training labels have five.
Reviewer names have no place in YOLO files: ``reviewer=`` sets one for the whole read.
"""

import os
from pathlib import Path

from resources.detect.boxes import Box, BoxSet, ImageInfo
from resources.detect.errors import LabelFileError, Problem
from resources.detect.formats._common import (
    one_file_per_image,
    DEFAULT_TOLERANCE_PX,
    IMAGE_SUFFIXES,
    LabelRead,
    assemble,
    image_size,
    place_box,
    read_text,
)

__all__ = ["NAMES_FILES", "find_names_file", "read_class_names", "read_yolo", "write_yolo"]

NAMES_FILES = ("data.yaml", "data.yml", "classes.txt")


def find_names_file(labels_dir: Path) -> Path:
    """The class-names file for a labels folder: ``data.yaml``/``data.yml``/``classes.txt`` in the folder,
    then in its parent. Raises :class:`LabelFileError` listing where it looked."""
    labels_dir = Path(labels_dir)
    candidates = [folder / name for folder in (labels_dir, labels_dir.parent) for name in NAMES_FILES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise LabelFileError(
        f"{labels_dir}: no class names file (looked for {', '.join(str(c) for c in candidates)}); "
        "add a data.yaml with 'names:' or a classes.txt, or pass names_file="
    )


def read_class_names(path: Path) -> dict[int, str]:
    """Class id → name from ``data.yaml`` (``names`` list or mapping) or ``classes.txt``."""
    path = Path(path)
    text = read_text(path, "class names file")
    if path.suffix.lower() == ".txt":
        lines = text.splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        names = {n: line.strip() for n, line in enumerate(lines)}
    else:
        names = _yaml_names(path, text)
    if not names or not all(names.values()):
        blank = [n for n, name in names.items() if not name]
        raise LabelFileError(f"{path}: class names are empty (ids {blank or 'all'}); write one name per class id")
    if len(set(names.values())) != len(names):
        raise LabelFileError(f"{path}: a class name is used for two ids ({names}); give each id its own name")
    return names


def read_yolo(
    labels_dir: Path,
    images_dir: Path,
    *,
    names_file: Path | None = None,
    reviewer: str | None = None,
    tolerance_px: float = DEFAULT_TOLERANCE_PX,
    missing_label_is_good: bool = False,
) -> LabelRead:
    """Read every image under ``images_dir`` with its label file under ``labels_dir``.

    Raises :class:`LabelFileError` when the class names are missing or broken, or when either folder
    does not exist; every per-line or per-image problem is quarantined instead (see the module doc).
    """
    labels_dir, images_dir = Path(labels_dir), Path(images_dir)
    if not images_dir.is_dir():
        raise LabelFileError(f"{images_dir}: images folder not found; YOLO needs the images to know their size")
    if not labels_dir.is_dir():
        raise LabelFileError(f"{labels_dir}: labels folder not found; check the path")
    names_path = Path(names_file) if names_file is not None else find_names_file(labels_dir)
    names = read_class_names(names_path)
    problems: list[Problem] = []
    by_stem: dict[str, list[Path]] = {}
    for image in sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        by_stem.setdefault(image.relative_to(images_dir).with_suffix("").as_posix(), []).append(image)
    not_labels = {names_path.resolve(), *((labels_dir / name).resolve() for name in NAMES_FILES)}
    label_files = {
        p.relative_to(labels_dir).with_suffix("").as_posix(): p
        for p in sorted(labels_dir.rglob("*.txt"))
        if p.resolve() not in not_labels
    }
    images: list[ImageInfo] = []
    placed: list[Box] = []
    for stem, paths in by_stem.items():
        rel = paths[0].relative_to(images_dir).as_posix()
        label = label_files.get(stem)
        file = str(label) if label is not None else str(labels_dir / f"{stem}.txt")
        if len(paths) > 1:
            others = ", ".join(p.name for p in paths)
            problems.extend(Problem(file, "", f"one label file for several images ({others})",
                                    "rename the images so each has its own stem", p.relative_to(images_dir).as_posix())
                            for p in paths)
            continue
        try:
            width, height = image_size(paths[0])
        except (OSError, ValueError) as exc:
            problems.append(Problem(str(paths[0]), "", f"image cannot be decoded ({exc})",
                                    "replace the file or drop it from the dataset", rel))
            continue
        info = ImageInfo(rel, width, height, file)
        images.append(info)
        if label is None:
            if not missing_label_is_good:
                problems.append(Problem(file, "", "image has no label file",
                                        "label it, or write an empty .txt if it is a good part", rel))
            continue
        _read_label_file(label, info, names, reviewer, tolerance_px, placed, problems)
    for stem in sorted(set(label_files) - set(by_stem)):
        problems.append(Problem(str(label_files[stem]), "", f"no image {stem}.* under {images_dir}",
                                "copy the image there or delete the label file"))
    return assemble(images, placed, problems, [names[i] for i in sorted(names)])


def write_yolo(
    dataset: BoxSet, labels_dir: Path, *, names_file: Path | None = None, write_scores: bool = False
) -> list[Path]:
    """Write one ``.txt`` per image (empty for a good part) and ``data.yaml`` (``names`` mapping, default
    inside ``labels_dir``). Numbers are written with ``repr`` so a round trip is exact to float precision.
    ``write_scores`` adds the confidence column (prediction files only: ultralytics training refuses it).
    Refuses a folder that already holds ``.txt`` files, so stale labels never mix with new ones, and two
    images that would share one file (``a.png``/``a.jpg``)."""
    import yaml

    labels_dir = Path(labels_dir)
    targets = one_file_per_image(labels_dir, dataset, ".txt", ".txt label files")
    written: list[Path] = []
    for target, image in targets.items():
        info = dataset.image(image)
        lines = []
        for box in dataset.boxes_for(info.path):
            cid = dataset.class_id(box)
            cx = (box.x_min + box.x_max) / 2 / info.width
            cy = (box.y_min + box.y_max) / 2 / info.height
            values = [cx, cy, box.width / info.width, box.height / info.height]
            if write_scores and box.score is not None:
                values.append(box.score)
            lines.append(" ".join([str(cid), *(repr(float(v)) for v in values)]))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        written.append(target)
    names_path = Path(names_file) if names_file is not None else labels_dir / "data.yaml"
    names_path.parent.mkdir(parents=True, exist_ok=True)
    document = {"nc": len(dataset.class_names), "names": dict(enumerate(dataset.class_names))}
    partial = names_path.with_name(names_path.name + ".partial")
    partial.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
    os.replace(partial, names_path)
    written.append(names_path)
    return written


# ------------------------------------------------------------------------------------------ reading


def _yaml_names(path: Path, text: str) -> dict[int, str]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LabelFileError(f"{path}: not valid YAML ({exc}); fix the file") from exc
    raw = data.get("names") if isinstance(data, dict) else None
    if isinstance(raw, list):
        return {n: str(name).strip() for n, name in enumerate(raw)}
    if isinstance(raw, dict):
        names: dict[int, str] = {}
        for key, name in raw.items():
            try:
                names[int(key)] = str(name).strip()
            except (TypeError, ValueError):
                raise LabelFileError(f"{path}: names key {key!r} is not a class id; use 0, 1, 2, ...") from None
        return names
    raise LabelFileError(
        f"{path}: no 'names:' list or mapping (found {type(raw).__name__}); "
        "add e.g. 'names: [scratch, dent]' or 'names: {0: scratch, 1: dent}'"
    )


def _read_label_file(
    label: Path,
    info: ImageInfo,
    names: dict[int, str],
    reviewer: str | None,
    tolerance_px: float,
    placed: list[Box],
    problems: list[Problem],
) -> None:
    """Every box of one label file into ``placed``, every bad line into ``problems``."""
    file = str(label)
    try:
        text = label.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(file, "", f"label file cannot be read as UTF-8 text ({exc})",
                                "export the labels again", info.path))
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        result = _parse_line(line, f"line {number}", file, info, names, reviewer, tolerance_px)
        if isinstance(result, Problem):
            problems.append(result)
        else:
            placed.append(result)


def _parse_line(
    line: str, item: str, file: str, info: ImageInfo, names: dict[int, str], reviewer: str | None, tolerance_px: float
) -> Box | Problem:
    fields = line.split()
    if len(fields) not in (5, 6):
        hint = " (a segmentation polygon?)" if len(fields) >= 7 else ""
        return Problem(file, item, f"expected 5 fields 'class cx cy w h' (6 with a confidence), got "
                       f"{len(fields)}{hint}: {line.strip()[:60]!r}", "export as YOLO detection boxes", info.path)
    try:
        class_id = int(fields[0])
    except ValueError:
        return Problem(file, item, f"class id {fields[0]!r} is not an integer", "write the class id as 0, 1, ...",
                       info.path)
    if class_id not in names:
        return Problem(file, item, f"class id {class_id} has no name (known ids: {sorted(names)})",
                       "add the class to data.yaml/classes.txt or fix the line", info.path)
    try:
        values = [float(v) for v in fields[1:]]
    except ValueError:
        return Problem(file, item, f"values {fields[1:]} are not all numbers", "fix the line", info.path)
    outside = [v for v in values if not 0.0 <= v <= 1.0]
    if outside:
        return Problem(file, item, f"values must be normalised to 0..1, got {outside}",
                       "divide pixel values by the image width/height", info.path)
    cx, cy, w, h = values[:4]
    corners = (
        (cx - w / 2) * info.width, (cy - h / 2) * info.height, (cx + w / 2) * info.width, (cy + h / 2) * info.height
    )
    score = values[4] if len(values) == 5 else None
    return place_box(info, names[class_id], corners, file=file, item=item, tolerance_px=tolerance_px,
                     reviewer=reviewer, score=score)
