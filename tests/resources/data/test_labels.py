"""Label import: the three layouts, and every error a labelling team can cause, with its message."""

import json
from pathlib import Path

import pytest

from resources.data.labels import (
    LABEL_COLUMNS,
    LabelImportError,
    detect_label_format,
    import_batch_labels,
    labels_from_coco,
    labels_from_csv,
    labels_from_folders,
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def rows(table) -> list[tuple[str, ...]]:
    return sorted(tuple(r) for r in table[list(LABEL_COLUMNS)].itertuples(index=False))


# ------------------------------------------------------------------------------------------- folders


def test_folders_first_folder_is_the_class() -> None:
    table = labels_from_folders(["scratch/cam1_00003.png", "good/sub/cam2_1.png", "Dent/x.png"])
    assert list(table.columns) == list(LABEL_COLUMNS)
    assert rows(table) == [
        ("Dent/x.png", "Dent", "folder", "folders"),  # case kept as written
        ("good/sub/cam2_1.png", "good", "folder", "folders"),
        ("scratch/cam1_00003.png", "scratch", "folder", "folders"),
    ]


def test_folders_image_at_batch_root_is_named() -> None:
    with pytest.raises(LabelImportError) as info:
        labels_from_folders(["good/a.png", "stray.png"])
    message = str(info.value)
    assert "stray.png" in message and "batch root" in message
    assert "move" in message  # the fix


def test_folders_empty_input_gives_empty_typed_table() -> None:
    table = labels_from_folders([])
    assert list(table.columns) == list(LABEL_COLUMNS) and table.empty


# ----------------------------------------------------------------------------------------------- csv


def test_csv_with_reviewers_and_defaults(tmp_path: Path) -> None:
    csv_path = write(
        tmp_path / "labels.csv",
        "path,label,reviewer\n"
        "cam1/1.png, scratch ,alice\n"
        "cam1/1.png,dent,bob\n"
        "cam1/2.png,good,\n"
        ".\\cam1\\3.png,good\n",  # reviewer field left off; Windows path
    )
    assert rows(labels_from_csv(csv_path)) == [
        ("cam1/1.png", "dent", "bob", "csv"),
        ("cam1/1.png", "scratch", "alice", "csv"),
        ("cam1/2.png", "good", "csv", "csv"),
        ("cam1/3.png", "good", "csv", "csv"),
    ]


def test_csv_without_reviewer_column_and_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_bytes("\ufeffPath,Label,notes\na.png,good,fine\n\n".encode())
    assert rows(labels_from_csv(path)) == [("a.png", "good", "csv", "csv")]


def test_csv_missing_column_names_file_line_and_fix(tmp_path: Path) -> None:
    csv_path = write(tmp_path / "labels.csv", "path,class\na.png,good\n")
    with pytest.raises(LabelImportError) as info:
        labels_from_csv(csv_path)
    message = str(info.value)
    assert "labels.csv line 1" in message
    assert "missing required column(s) label" in message
    assert "path,label[,reviewer]" in message


def test_csv_empty_labels_listed_with_line_numbers(tmp_path: Path) -> None:
    csv_path = write(tmp_path / "labels.csv", "path,label\na.png,good\nb.png,\nc.png,good\nd.png,  \n")
    with pytest.raises(LabelImportError) as info:
        labels_from_csv(csv_path)
    message = str(info.value)
    assert "labels.csv lines 3, 5: label is empty" in message
    assert "b.png" in message and "d.png" in message
    assert "fill in the class" in message


def test_csv_conflicting_rows_for_same_reviewer(tmp_path: Path) -> None:
    csv_path = write(
        tmp_path / "labels.csv",
        "path,label,reviewer\na.png,good,alice\nb.png,dent,alice\na.png,scratch,alice\n",
    )
    with pytest.raises(LabelImportError) as info:
        labels_from_csv(csv_path)
    message = str(info.value)
    assert "labels.csv" in message
    assert "line 2 says 'good'" in message and "line 4 says 'scratch'" in message
    assert "keep one row per image and reviewer" in message


def test_csv_repeated_identical_row_is_kept_once(tmp_path: Path) -> None:
    csv_path = write(tmp_path / "labels.csv", "path,label\na.png,good\na.png,good\n")
    assert rows(labels_from_csv(csv_path)) == [("a.png", "good", "csv", "csv")]


def test_csv_row_with_unquoted_comma(tmp_path: Path) -> None:
    csv_path = write(tmp_path / "labels.csv", "path,label\na,b.png,good\n")
    with pytest.raises(LabelImportError, match=r"labels\.csv line 2: more fields.*quote"):
        labels_from_csv(csv_path)


def test_csv_empty_file_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LabelImportError, match=r"labels\.csv line 1: the file is empty"):
        labels_from_csv(write(tmp_path / "labels.csv", ""))
    with pytest.raises(LabelImportError, match=r"nope\.csv: file not found"):
        labels_from_csv(tmp_path / "nope.csv")


def test_csv_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_bytes(b"path,label\n\xff\xfe.png,good\n")
    with pytest.raises(LabelImportError, match=r"labels\.csv: not UTF-8.*save the file as UTF-8"):
        labels_from_csv(path)


# ---------------------------------------------------------------------------------------------- coco


def coco(**overrides: object) -> dict:
    data = {
        "images": [{"id": 1, "file_name": "cam1/1.png"}, {"id": 2, "file_name": "cam1/2.png"}],
        "categories": [{"id": 10, "name": "good"}, {"id": 11, "name": "scratch"}],
        "annotations": [
            {"image_id": 1, "category_id": 10, "reviewer": "alice"},
            {"image_id": 1, "category_id": 11, "reviewer": "bob"},
            {"image_id": 2, "category_id": 11},
        ],
    }
    data.update(overrides)
    return data


def test_coco_reads_reviewers_and_default(tmp_path: Path) -> None:
    path = write(tmp_path / "annotations.json", json.dumps(coco()))
    assert rows(labels_from_coco(path)) == [
        ("cam1/1.png", "good", "alice", "coco"),
        ("cam1/1.png", "scratch", "bob", "coco"),
        ("cam1/2.png", "scratch", "coco", "coco"),
    ]


def test_coco_invalid_json_names_line(tmp_path: Path) -> None:
    path = write(tmp_path / "annotations.json", '{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(LabelImportError) as info:
        labels_from_coco(path)
    message = str(info.value)
    assert "annotations.json line 2" in message and "invalid JSON" in message
    assert "re-export" in message


def test_coco_unknown_category(tmp_path: Path) -> None:
    data = coco(annotations=[{"image_id": 1, "category_id": 99}])
    path = write(tmp_path / "annotations.json", json.dumps(data))
    with pytest.raises(LabelImportError) as info:
        labels_from_coco(path)
    message = str(info.value)
    assert "annotations.json" in message
    assert "annotations[0] (category_id 99)" in message
    assert "known ids are [10, 11]" in message and "add the category" in message


def test_coco_unknown_image(tmp_path: Path) -> None:
    data = coco(annotations=[{"image_id": 7, "category_id": 10}])
    path = write(tmp_path / "annotations.json", json.dumps(data))
    with pytest.raises(LabelImportError, match=r"annotations\[0\] \(image_id 7\).*add the image entry"):
        labels_from_coco(path)


def test_coco_wrong_structure(tmp_path: Path) -> None:
    path = write(tmp_path / "annotations.json", json.dumps({"images": {}, "categories": [], "annotations": []}))
    with pytest.raises(LabelImportError, match=r"annotations\.json: top-level 'images' must be a list"):
        labels_from_coco(path)
    data = coco(annotations=[{"image_id": 1, "category_id": 10, "reviewer": 3}])
    path = write(tmp_path / "annotations.json", json.dumps(data))
    with pytest.raises(LabelImportError, match=r"annotations\[0\] has 'reviewer' 3"):
        labels_from_coco(path)


def test_coco_conflicting_annotations_for_same_reviewer(tmp_path: Path) -> None:
    data = coco(
        annotations=[{"image_id": 1, "category_id": 10}, {"image_id": 1, "category_id": 11}]
    )
    path = write(tmp_path / "annotations.json", json.dumps(data))
    with pytest.raises(LabelImportError, match=r"annotations\[0\] says 'good'; annotations\[1\] says 'scratch'"):
        labels_from_coco(path)


# ----------------------------------------------------------------------------------- detect / import


def test_detect_label_format(tmp_path: Path) -> None:
    assert detect_label_format(tmp_path) == "folders"
    write(tmp_path / "labels.csv", "path,label\n")
    assert detect_label_format(tmp_path) == "csv"
    (tmp_path / "labels.csv").unlink()
    write(tmp_path / "annotations.json", "{}")
    assert detect_label_format(tmp_path) == "coco"


def test_detect_both_files_is_ambiguous(tmp_path: Path) -> None:
    write(tmp_path / "labels.csv", "path,label\n")
    write(tmp_path / "annotations.json", "{}")
    with pytest.raises(LabelImportError) as info:
        detect_label_format(tmp_path)
    message = str(info.value)
    assert "labels.csv" in message and "annotations.json" in message
    assert "remove the one that is not the source of truth" in message


def test_detect_missing_batch_folder(tmp_path: Path) -> None:
    with pytest.raises(LabelImportError, match="batch folder not found"):
        detect_label_format(tmp_path / "missing")


def test_import_batch_labels_auto_keeps_labels_for_missing_images(tmp_path: Path) -> None:
    write(tmp_path / "labels.csv", "path,label\ncam1/1.png,good\ncam2/0013.png,dent\n")
    table = import_batch_labels(tmp_path, ["cam1/1.png"])
    assert rows(table) == [
        ("cam1/1.png", "good", "csv", "csv"),
        ("cam2/0013.png", "dent", "csv", "csv"),
    ]


def test_import_batch_labels_explicit_formats(tmp_path: Path) -> None:
    paths = ["good/1.png", "dent/2.png"]
    assert rows(import_batch_labels(tmp_path, paths, "folders"))[0] == ("dent/2.png", "dent", "folder", "folders")
    write(tmp_path / "annotations.json", json.dumps(coco()))
    assert len(import_batch_labels(tmp_path, paths, "auto")) == 3
    with pytest.raises(LabelImportError, match=r"labels\.csv: file not found"):
        import_batch_labels(tmp_path, paths, "csv")


def test_import_batch_labels_rejects_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="choose one of auto, folders, csv, coco"):
        import_batch_labels(tmp_path, [], "yolo")
