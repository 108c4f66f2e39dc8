"""A landed batch's box labels in every format become image labels, ``label_boxes`` rows and quarantined images."""

from pathlib import Path

import pytest

from resources.data.sample_boxes import write_box_line
from resources.detect.engine import DetectEngine
from resources.detect.errors import LabelFileError
from resources.engine_io import BatchFiles

SUFFIXES = DetectEngine.label_file_suffixes


def _files(root: Path) -> BatchFiles:
    rel = {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}
    return BatchFiles(
        batch="b1",
        images={r: p for r, p in rel.items() if p.suffix == ".png"},
        sidecars={r: p for r, p in rel.items() if p.suffix in SUFFIXES},
    )


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc"])
def test_every_format_gives_the_same_labels_and_boxes(tmp_path: Path, fmt: str) -> None:
    summary = write_box_line(tmp_path / fmt, seed=3, good_images=6, images_per_class=3, image_size=96, fmt=fmt)
    read = DetectEngine().batch_labels(_files(tmp_path / fmt), fmt, "good")
    assert read.quarantined == []
    assert len(read.labels) == summary.images
    assert (read.labels["label"] == "good").sum() == summary.good_images
    boxes = read.tables["label_boxes"]
    assert len(boxes) == sum(summary.boxes.values())
    assert set(boxes["class_name"]) == {"scratch", "dent", "stain"}
    assert set(boxes["rel_path"]) <= set(read.labels["rel_path"])
    assert (boxes["x_max"] > boxes["x_min"]).all() and (boxes["x_max"] <= boxes["image_width"]).all()


def test_a_bad_label_line_sets_its_image_aside_and_the_rest_goes_on(tmp_path: Path) -> None:
    root = tmp_path / "yolo"
    write_box_line(root, seed=4, good_images=4, images_per_class=2, image_size=96, fmt="yolo")
    victim = sorted((root / "labels").glob("*.txt"))[0]
    victim.write_text("0 0.5 0.5 1.7 0.2\n")  # a width outside 0..1
    read = DetectEngine().batch_labels(_files(root), "yolo", "good")
    image = f"images/{victim.stem}.png"
    assert [q["rel_path"] for q in read.quarantined] == [image]
    assert victim.name in read.quarantined[0]["detail"] and "line 1" in read.quarantined[0]["detail"]
    assert image not in set(read.labels["rel_path"]) and len(read.labels) == 4 + 6 - 1


def test_an_image_no_label_lists_is_quarantined_not_called_good(tmp_path: Path) -> None:
    root = tmp_path / "voc"
    write_box_line(root, seed=5, good_images=3, images_per_class=1, image_size=96, fmt="voc")
    xml = sorted((root / "Annotations").glob("*.xml"))[0]
    xml.unlink()
    read = DetectEngine().batch_labels(_files(root), "voc", "good")
    (set_aside,) = [q for q in read.quarantined if xml.stem in q["rel_path"]]
    assert set_aside["rel_path"] == f"JPEGImages/{xml.stem}.png" and "no annotation file" in set_aside["detail"]
    assert "/tmp/" not in set_aside["detail"]  # the scratch folder the batch was rebuilt in is not named


def test_a_format_without_boxes_and_a_missing_good_class_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "coco"
    write_box_line(root, seed=6, good_images=2, images_per_class=1, image_size=96, fmt="coco")
    with pytest.raises(LabelFileError, match="label format 'folders' has no boxes"):
        DetectEngine().batch_labels(_files(root), "folders", "good")
    with pytest.raises(LabelFileError, match="needs a good class"):
        DetectEngine().batch_labels(_files(root), "coco", None)
    labels = DetectEngine().dataset_labels(root, "coco", "good")
    assert set(labels.columns) == {"rel_path", "label", "box_classes"} and "good" in set(labels["label"])


def test_an_image_that_decodes_at_another_size_than_its_labels_is_set_aside(tmp_path: Path) -> None:
    root = tmp_path / "coco"
    write_box_line(root, seed=9, good_images=2, images_per_class=1, image_size=96, fmt="coco")
    files = _files(root)
    sizes = {rel: (96, 96) for rel in files.images}
    turned = sorted(files.images)[0]
    sizes[turned] = (72, 96)  # e.g. an EXIF-rotated phone picture: its labels assume other pixels
    read = DetectEngine().batch_labels(BatchFiles(files.batch, files.images, files.sidecars, sizes), "coco", "good")
    assert [(q["rel_path"], q["reason"]) for q in read.quarantined] == [(turned, "box_label_size")]
    assert "decodes as 72×96" in read.quarantined[0]["detail"]


def test_two_reviewers_are_compared_and_the_detector_learns_their_consensus(tmp_path: Path) -> None:
    import json

    root = tmp_path / "coco"
    write_box_line(root, seed=10, good_images=2, images_per_class=2, image_size=96, fmt="coco")
    coco = json.loads((root / "annotations.json").read_text())
    first = [dict(a, reviewer="ana") for a in coco["annotations"]]
    second = [dict(a, id=a["id"] + 10_000, reviewer="ben") for a in coco["annotations"][1:]]  # ben missed one box
    coco["annotations"] = first + second
    (root / "annotations.json").write_text(json.dumps(coco))
    read = DetectEngine().batch_labels(_files(root), "coco", "good")
    assert read.quarantined == []
    assert set(read.labels["reviewer"]) == {"ana", "ben"} and len(read.labels) == 2 * 8
    boxes = read.tables["label_boxes"]
    assert set(boxes["reviewer"]) == {"ana", "ben", "consensus"}
    (missed,) = read.tables["box_disagreements"].itertuples()
    assert missed.reason == "unmatched" and {missed.reviewer_a, missed.reviewer_b} == {"ana", "ben"}
    assert read.summary["reviewers"] == ["ana", "ben"] and 0 < read.summary["agreement_f1"] < 1
