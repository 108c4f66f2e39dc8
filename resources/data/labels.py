"""Label import: turn a batch's labels, in whichever standard layout it arrived, into one table.

Line teams label in three layouts and each is read here into the same long table, one row per
(image, reviewer), with columns ``LABEL_COLUMNS``:

* folder-per-class: the first folder of an image's path is its class (``scratch/cam1_00003.png``);
* ``labels.csv`` with header ``path,label[,reviewer]``; several rows per path when several reviewers
  labelled the same image;
* a COCO-style classification ``annotations.json`` (``images``, ``categories``, ``annotations``, with
  an optional per-annotation ``reviewer``).

Import only reads and validates the file itself. Whether every image has a label, whether labels are in
the variant's taxonomy and whether reviewers agree are decided by ``resources.data.label_quality``, because
those checks need the ingested images and the taxonomy and must report every problem at once rather
than stop at the first. So a label for an image that was not ingested is kept here, not dropped.
"""

import csv
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
from resources.errors import MfgVisionError

__all__ = [
    "CSV_FILE",
    "COCO_FILE",
    "LABEL_COLUMNS",
    "LABEL_FORMATS",
    "LabelImportError",
    "detect_label_format",
    "import_batch_labels",
    "labels_from_coco",
    "labels_from_csv",
    "label_frame",
    "labels_from_folders",
    "normalise_path",
]

logger = logging.getLogger(__name__)

LABEL_COLUMNS = ("rel_path", "label", "reviewer", "source")
LABEL_FORMATS = ("auto", "folders", "csv", "coco", "mvtec")
CSV_FILE = "labels.csv"
COCO_FILE = "annotations.json"

# Reviewer names used when the layout does not say who labelled an image.
FOLDER_REVIEWER = "folder"
CSV_DEFAULT_REVIEWER = "csv"
COCO_DEFAULT_REVIEWER = "coco"

# How many offending lines/paths an error message lists before "and N more".
_MAX_EXAMPLES = 5


class LabelImportError(MfgVisionError):
    """A batch's label file (or folder layout) cannot be read; the message names the file, the
    problem and the fix."""


def _examples(items: Sequence[str], limit: int = _MAX_EXAMPLES) -> str:
    """``a, b, c and 4 more``: enough examples to find the problem without flooding the log."""
    shown = ", ".join(items[:limit])
    rest = len(items) - limit
    return f"{shown} and {rest} more" if rest > 0 else shown


def _lines_word(lines: Sequence[int]) -> str:
    """``line 4`` or ``lines 4, 9, 12``: the prefix a CSV error starts with."""
    word = "line" if len(lines) == 1 else "lines"
    return f"{word} {_examples([str(n) for n in lines])}"


def normalise_path(raw: str) -> str:
    """Paths are compared with the ingest table's ``rel_path`` (forward slashes, relative), so
    Windows separators and a leading ``./`` written by labelling tools are normalised away."""
    path = raw.strip().replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path


def _outside(rel_path: str) -> bool:
    """Whether a label's path leaves the batch folder (absolute, a drive, or a '..' part)."""
    return rel_path.startswith("/") or (len(rel_path) > 1 and rel_path[1] == ":") or ".." in rel_path.split("/")


def label_frame(rows: Iterable[tuple[str, str, str, str]]) -> pd.DataFrame:
    """The label table with exactly ``LABEL_COLUMNS``, string-typed even when empty."""
    records = list(rows)
    return pd.DataFrame(
        {
            column: pd.Series([r[i] for r in records], dtype=str)
            for i, column in enumerate(LABEL_COLUMNS)
        }
    )


def labels_from_folders(rel_paths: Sequence[str]) -> pd.DataFrame:
    """Labels from a folder-per-class batch: the first folder of each path is the class.

    An image directly at the batch root has no class folder. Guessing a class for it (or leaving it
    out) would silently change the training set, so it is an error that names the image.
    """
    rows: list[tuple[str, str, str, str]] = []
    at_root: list[str] = []
    for raw in rel_paths:
        rel_path = normalise_path(str(raw))
        head, sep, _rest = rel_path.partition("/")
        label = head.strip()
        if not sep or not label:
            at_root.append(rel_path)
            continue
        rows.append((rel_path, label, FOLDER_REVIEWER, "folders"))
    if at_root:
        raise LabelImportError(
            f"folder-per-class labels: {len(at_root)} image(s) lie directly at the batch root, not in "
            f"a class folder (first: {_examples(at_root)}); move each into a folder named after its "
            f"class (e.g. scratch/{at_root[0]}), or add {CSV_FILE} or {COCO_FILE} to the batch"
        )
    return label_frame(rows)


def _read_text(path: Path) -> str:
    """Read a label file as UTF-8 (a BOM from spreadsheet exports is dropped)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise LabelImportError(
            f"{path}: file not found; put the label file in the batch folder or choose another "
            f"label_format ({', '.join(LABEL_FORMATS)})"
        ) from exc
    except UnicodeDecodeError as exc:
        raise LabelImportError(
            f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save the file as UTF-8"
        ) from exc
    except OSError as exc:
        raise LabelImportError(f"{path}: cannot be read ({exc}); check the file's permissions") from exc


def _conflict_error(
    path: Path, conflicts: dict[tuple[str, str], list[tuple[str, str]]]
) -> LabelImportError:
    """One error for every (path, reviewer) that was given different labels."""
    parts = []
    for (rel_path, reviewer), seen in list(conflicts.items())[:_MAX_EXAMPLES]:
        given = "; ".join(f"{loc} says {label!r}" for loc, label in seen)
        parts.append(f"{rel_path!r} by reviewer {reviewer!r} ({given})")
    rest = len(conflicts) - _MAX_EXAMPLES
    more = f"; and {rest} more" if rest > 0 else ""
    return LabelImportError(
        f"{path}: {len(conflicts)} image(s) have different labels from the same reviewer: "
        f"{'; '.join(parts)}{more}; keep one row per image and reviewer (or give each row its own "
        f"reviewer name)"
    )


def _collect(
    path: Path, entries: Sequence[tuple[str, str, str, str]], source: str
) -> pd.DataFrame:
    """Build the table from (location, rel_path, label, reviewer) entries.

    The same (path, reviewer) twice with the same label is an export artefact and is kept once; with
    different labels the file contradicts itself and no choice here would be right, so it is an error.
    """
    first: dict[tuple[str, str], tuple[str, str]] = {}
    conflicts: dict[tuple[str, str], list[tuple[str, str]]] = {}
    rows: list[tuple[str, str, str, str]] = []
    duplicates = 0
    for location, rel_path, label, reviewer in entries:
        key = (rel_path, reviewer)
        if key not in first:
            first[key] = (location, label)
            rows.append((rel_path, label, reviewer, source))
            continue
        if first[key][1] == label:
            duplicates += 1
            continue
        conflicts.setdefault(key, [first[key]]).append((location, label))
    if conflicts:
        raise _conflict_error(path, conflicts)
    if duplicates:
        logger.info("%s: %d repeated (path, reviewer, label) entries kept once", path, duplicates)
    return label_frame(rows)


def labels_from_csv(csv_path: Path) -> pd.DataFrame:
    """Labels from a batch's ``labels.csv`` (header ``path,label[,reviewer]``).

    Header names are matched case-insensitively and extra columns (notes, timestamps) are ignored,
    because labelling tools add them. A blank or absent reviewer becomes ``"csv"``. Every problem of
    one kind is reported at once, with its line numbers, so a file is fixed in one pass.
    """
    csv_path = Path(csv_path)
    text = _read_text(csv_path)
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise LabelImportError(
                f"{csv_path} line 1: the file is empty; write the header 'path,label' (optionally "
                f"',reviewer') and one row per image"
            )
        names = [cell.strip().lower() for cell in header]
        missing = [name for name in ("path", "label") if name not in names]
        if missing:
            raise LabelImportError(
                f"{csv_path} line 1: missing required column(s) {', '.join(missing)} (header is "
                f"{','.join(header)}); the header must be path,label[,reviewer]"
            )
        repeated = sorted({name for name in names if names.count(name) > 1 and name})
        if repeated:
            raise LabelImportError(
                f"{csv_path} line 1: column(s) {', '.join(repeated)} appear more than once in the "
                f"header; keep one of each"
            )
        i_path, i_label = names.index("path"), names.index("label")
        i_reviewer = names.index("reviewer") if "reviewer" in names else None

        short: list[int] = []
        long: list[int] = []
        no_path: list[int] = []
        outside: list[str] = []
        no_label: list[str] = []
        no_label_lines: list[int] = []
        entries: list[tuple[str, str, str, str]] = []
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue  # blank lines are formatting, not data
            if len(row) > len(header):
                long.append(line)
                continue
            if len(row) <= max(i_path, i_label):
                short.append(line)
                continue
            rel_path = normalise_path(row[i_path])
            label = row[i_label].strip()
            if not rel_path:
                no_path.append(line)
                continue
            if _outside(rel_path):
                outside.append(f"line {line} ({rel_path!r})")
                continue
            if not label:
                no_label_lines.append(line)
                no_label.append(rel_path)
                continue
            reviewer = ""
            if i_reviewer is not None and i_reviewer < len(row):
                reviewer = row[i_reviewer].strip()
            entries.append((f"line {line}", rel_path, label, reviewer or CSV_DEFAULT_REVIEWER))
    except csv.Error as exc:
        raise LabelImportError(
            f"{csv_path} line {reader.line_num}: not valid CSV ({exc}); check quoting on that line"
        ) from exc

    if long:
        raise LabelImportError(
            f"{csv_path} {_lines_word(long)}: more fields than the header's {len(header)} "
            f"({','.join(header)}); quote values that contain a comma (\"a,b.png\") or delete the "
            f"extra fields"
        )
    if short:
        raise LabelImportError(
            f"{csv_path} {_lines_word(short)}: the row ends before the path and label fields of the "
            f"header ({','.join(header)}); fill in the missing fields or delete the row(s)"
        )
    if outside:
        raise LabelImportError(
            f"{csv_path}: {len(outside)} path(s) point outside the batch folder ({_examples(outside)}); a path "
            "is relative to the folder that holds labels.csv (e.g. cam1/0001.png): move the image into the "
            "dataset folder and write its relative path"
        )
    if no_path:
        raise LabelImportError(
            f"{csv_path} {_lines_word(no_path)}: path is empty; write the image's path relative to "
            f"the batch folder (e.g. cam1/0001.png) or delete the row(s)"
        )
    if no_label_lines:
        raise LabelImportError(
            f"{csv_path} {_lines_word(no_label_lines)}: label is empty (for {_examples(no_label)}); "
            f"fill in the class or delete the row(s)"
        )
    return _collect(csv_path, entries, "csv")


def _coco_list(data: dict, key: str, json_path: Path) -> list[dict]:
    """A top-level COCO list whose items are objects, or an error naming the key."""
    value = data.get(key)
    if not isinstance(value, list):
        raise LabelImportError(
            f"{json_path}: top-level {key!r} must be a list (found {type(value).__name__}); a COCO "
            f"classification file has 'images', 'categories' and 'annotations' lists"
        )
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise LabelImportError(
                f"{json_path}: {key}[{index}] must be an object (found {type(item).__name__}); fix "
                f"that entry"
            )
    return value


def _coco_field(item: dict, field: str, where: str, json_path: Path, kind: type | tuple) -> object:
    value = item.get(field)
    if value is None or not isinstance(value, kind) or isinstance(value, bool):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise LabelImportError(
            f"{json_path}: {where} needs {field!r} as {expected} (found {value!r}); fix that entry"
        )
    return value


def labels_from_coco(json_path: Path) -> pd.DataFrame:
    """Labels from a COCO-style classification ``annotations.json``.

    Each annotation labels one image with one category; an optional string ``reviewer`` per
    annotation says who (default ``"coco"``). Ids that point nowhere mean the export is broken, and
    guessing would mislabel images, so they are errors that name the annotation and the valid ids.
    Images without any annotation are not an error here: the coverage check reports them.
    """
    json_path = Path(json_path)
    text = _read_text(json_path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelImportError(
            f"{json_path} line {exc.lineno} column {exc.colno}: invalid JSON ({exc.msg}); re-export "
            f"the annotations or fix the file"
        ) from exc
    if not isinstance(data, dict):
        raise LabelImportError(
            f"{json_path}: the top level must be an object with 'images', 'categories' and "
            f"'annotations' (found {type(data).__name__}); re-export in COCO format"
        )
    images = _coco_list(data, "images", json_path)
    categories = _coco_list(data, "categories", json_path)
    annotations = _coco_list(data, "annotations", json_path)

    files: dict[object, str] = {}
    for index, image in enumerate(images):
        where = f"images[{index}]"
        image_id = _coco_field(image, "id", where, json_path, (int, str))
        file_name = normalise_path(str(_coco_field(image, "file_name", where, json_path, str)))
        if not file_name:
            raise LabelImportError(f"{json_path}: {where} has an empty 'file_name'; fix that entry")
        if _outside(file_name):
            raise LabelImportError(
                f"{json_path}: {where} has file_name {file_name!r}, which points outside the dataset folder; "
                "file names are relative to the folder that holds annotations.json"
            )
        if image_id in files:
            raise LabelImportError(
                f"{json_path}: {where} reuses image id {image_id!r} (already {files[image_id]!r}); "
                f"give every image its own id"
            )
        files[image_id] = file_name

    names: dict[object, str] = {}
    for index, category in enumerate(categories):
        where = f"categories[{index}]"
        category_id = _coco_field(category, "id", where, json_path, (int, str))
        name = str(_coco_field(category, "name", where, json_path, str)).strip()
        if not name:
            raise LabelImportError(f"{json_path}: {where} has an empty 'name'; name the class")
        if category_id in names:
            raise LabelImportError(
                f"{json_path}: {where} reuses category id {category_id!r} (already "
                f"{names[category_id]!r}); give every category its own id"
            )
        names[category_id] = name

    unknown_category: list[str] = []
    unknown_image: list[str] = []
    entries: list[tuple[str, str, str, str]] = []
    for index, annotation in enumerate(annotations):
        where = f"annotations[{index}]"
        image_id = _coco_field(annotation, "image_id", where, json_path, (int, str))
        category_id = _coco_field(annotation, "category_id", where, json_path, (int, str))
        reviewer = annotation.get("reviewer")
        if reviewer is not None and not isinstance(reviewer, str):
            raise LabelImportError(
                f"{json_path}: {where} has 'reviewer' {reviewer!r}; it must be a string (the "
                f"reviewer's name) or be left out"
            )
        if category_id not in names:
            unknown_category.append(f"{where} (category_id {category_id!r})")
            continue
        if image_id not in files:
            unknown_image.append(f"{where} (image_id {image_id!r})")
            continue
        entries.append(
            (where, files[image_id], names[category_id], (reviewer or "").strip() or COCO_DEFAULT_REVIEWER)
        )
    if unknown_category:
        raise LabelImportError(
            f"{json_path}: {len(unknown_category)} annotation(s) use a category_id that is not in "
            f"'categories' ({_examples(unknown_category)}); known ids are "
            f"{sorted(names, key=str)}; add the category or fix the annotation"
        )
    if unknown_image:
        raise LabelImportError(
            f"{json_path}: {len(unknown_image)} annotation(s) point to an image_id that is not in "
            f"'images' ({_examples(unknown_image)}); add the image entry or delete the annotation"
        )
    return _collect(json_path, entries, "coco")


def detect_label_format(batch_dir: Path) -> str:
    """Which layout a batch uses: ``"csv"``, ``"coco"`` or ``"folders"``.

    Both files at once means two sources of truth; picking one silently could train on the stale
    one, so that is an error saying which file to remove.
    """
    batch_dir = Path(batch_dir)
    if not batch_dir.is_dir():
        raise LabelImportError(
            f"{batch_dir}: batch folder not found; check the landing-zone path of the batch"
        )
    has_csv = (batch_dir / CSV_FILE).is_file()
    has_coco = (batch_dir / COCO_FILE).is_file()
    if has_csv and has_coco:
        raise LabelImportError(
            f"{batch_dir}: both {CSV_FILE} and {COCO_FILE} are present, so the labels are ambiguous; "
            f"remove the one that is not the source of truth (or set label_format to 'csv' or "
            f"'coco' for this variant)"
        )
    if has_csv:
        return "csv"
    if has_coco:
        return "coco"
    return "folders"


def import_batch_labels(
    batch_dir: Path, rel_paths: Sequence[str], label_format: str = "auto"
) -> pd.DataFrame:
    """The labels of one batch as a table with ``LABEL_COLUMNS``.

    ``rel_paths`` are the batch's ingested images; the folder layout derives labels from them. For
    the file layouts they only feed a log line: a label for an image that was not ingested is kept so
    the coverage check can report it with the file it came from.
    """
    if label_format not in LABEL_FORMATS:
        raise ValueError(
            f"label_format {label_format!r} is not supported; choose one of {', '.join(LABEL_FORMATS)}"
        )
    batch_dir = Path(batch_dir)
    chosen = detect_label_format(batch_dir) if label_format == "auto" else label_format
    if chosen == "folders":
        table = labels_from_folders(rel_paths)
    elif chosen == "csv":
        table = labels_from_csv(batch_dir / CSV_FILE)
    elif chosen == "mvtec":
        from resources.data.mvtec_labels import labels_from_mvtec

        table = labels_from_mvtec(rel_paths).labels
    else:
        table = labels_from_coco(batch_dir / COCO_FILE)
    known = {normalise_path(str(p)) for p in rel_paths}
    orphans = int((~table["rel_path"].isin(known)).sum()) if len(table) else 0
    logger.info(
        "%s: %d label rows from %s layout (%d images ingested, %d labels name images not ingested)",
        batch_dir,
        len(table),
        chosen,
        len(known),
        orphans,
    )
    return table
