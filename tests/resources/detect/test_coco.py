"""COCO detection JSON: reading, writing, and every bad input a labelling tool can produce."""

import json
import re
from pathlib import Path
from typing import Any

import pytest

from resources.detect.boxes import BoxSet
from resources.detect.errors import LabelFileError, LabelItemError, raise_for_problems
from resources.detect.formats import read_coco, write_coco
from resources.errors import MfgVisionError

from .conftest import make_image


def coco(annotations: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    document = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 64, "height": 48},
            {"id": 2, "file_name": "b.png", "width": 40, "height": 40},
            {"id": 3, "file_name": "good.png", "width": 32, "height": 32},
        ],
        "categories": [{"id": 7, "name": "dent"}, {"id": 3, "name": "scratch"}],
        "annotations": annotations,
    }
    document.update(extra)
    return document


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


GOOD_B = {"id": 20, "image_id": 2, "category_id": 7, "bbox": [1, 2, 10, 5]}


def test_reads_boxes_good_parts_and_category_order(tmp_path: Path) -> None:
    path = write_json(tmp_path / "ann.json", coco([
        {"id": 10, "image_id": 1, "category_id": 3, "bbox": [2.5, 3, 10, 4.5], "reviewer": "bob", "score": 0.8},
        GOOD_B,
    ]))
    dataset, problems = read_coco(path, reviewer="ann")
    assert problems == []
    assert dataset.class_names == ("scratch", "dent")  # ordered by category id (3, 7)
    assert [i.path for i in dataset.images] == ["a.png", "b.png", "good.png"]
    assert dataset.boxes_for("good.png") == ()
    first, second = dataset.boxes
    assert (first.class_name, first.corners, first.reviewer, first.score) == (
        "scratch", (2.5, 3, 12.5, 7.5), "bob", 0.8)
    assert (second.reviewer, second.source_file, second.source_item) == ("ann", str(path), "annotation id 20")


def test_write_then_read_is_exact(tmp_path: Path, sample: BoxSet) -> None:
    path = write_coco(sample, tmp_path / "out" / "ann.json")
    dataset, problems = read_coco(path)
    assert problems == [] and dataset.class_names == sample.class_names
    assert [(b.image, b.class_name) for b in dataset.boxes] == [(b.image, b.class_name) for b in sample.boxes]
    for got, want in zip(dataset.boxes, sample.boxes):
        assert got.corners == pytest.approx(want.corners, rel=1e-12)
    assert [i.path for i in dataset.images] == [i.path for i in sample.images]


@pytest.mark.parametrize(
    ("annotation", "reason"),
    [
        ({"id": 11, "image_id": 99, "category_id": 3, "bbox": [1, 1, 2, 2]}, "image_id 99 points to no image"),
        ({"id": 11, "image_id": 1, "category_id": 5, "bbox": [1, 1, 2, 2]}, "category_id 5 points to no category"),
        ({"id": 11, "image_id": 1, "category_id": 3, "bbox": [60, 1, 10, 2]}, "outside the 64x48 image by 6 px"),
        ({"id": 11, "image_id": 1, "category_id": 3, "bbox": [1, 1, 0, 2]}, "zero or negative size"),
        ({"id": 11, "image_id": 1, "category_id": 3, "bbox": [1, 1, -3, 2]}, "zero or negative size"),
        ({"id": 11, "image_id": 1, "category_id": 3, "bbox": [1, "x", 2, 2]}, "bbox must be 4 numbers"),
    ],
)
def test_bad_annotation_is_quarantined_and_the_rest_goes_on(tmp_path: Path, annotation: dict, reason: str) -> None:
    path = write_json(tmp_path / "ann.json", coco([annotation, GOOD_B]))
    dataset, problems = read_coco(path)
    assert len(problems) == 1
    problem = problems[0]
    assert (problem.file, problem.item) == (str(path), "annotation id 11")
    assert reason in problem.reason and problem.fix
    assert f"{path} annotation id 11" in problem.message
    assert problem.as_record()["item"] == "annotation id 11"
    # b.png and the good part are still there; a.png is set aside whenever it owns the bad box
    assert "b.png" in [i.path for i in dataset.images] and len(dataset.boxes) == 1
    if problem.image == "a.png":
        assert "a.png" not in [i.path for i in dataset.images]


def test_a_bad_box_sets_its_whole_image_aside(tmp_path: Path) -> None:
    """Dropping only the bad box would teach the model that the defect it marked is a good part."""
    path = write_json(tmp_path / "ann.json", coco([
        {"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5]},
        {"id": 2, "image_id": 1, "category_id": 3, "bbox": [1, 1, 0, 5]},
        GOOD_B,
    ]))
    read = read_coco(path)
    assert read.quarantined_images == ["a.png"]
    assert [b.image for b in read.dataset.boxes] == ["b.png"]


def test_overhang_within_tolerance_is_clipped(tmp_path: Path) -> None:
    path = write_json(tmp_path / "ann.json", coco([{"id": 1, "image_id": 1, "category_id": 3,
                                                     "bbox": [-0.6, 40, 10, 8.8]}]))
    dataset, problems = read_coco(path)
    assert problems == [] and dataset.boxes[0].corners == (0.0, 40.0, 9.4, 48.0)
    _, strict = read_coco(path, tolerance_px=0.5)
    assert "by 0.8 px" in strict[0].reason


def test_image_problems(tmp_path: Path) -> None:
    document = coco([{"id": 1, "image_id": 4, "category_id": 3, "bbox": [1, 1, 2, 2]}])
    document["images"] += [
        {"id": 4, "file_name": "nosize.png"},
        {"id": 1, "file_name": "again.png", "width": 5, "height": 5},
    ]
    dataset, problems = read_coco(write_json(tmp_path / "ann.json", document))
    reasons = {(p.item, p.image): p.reason for p in problems}
    assert "no valid width/height" in reasons[("image id 4", "nosize.png")]
    assert "image id is used twice" in reasons[("image id 1", "a.png")]
    assert [i.path for i in dataset.images] == ["b.png", "good.png"]  # both a.png and again.png set aside


def test_images_dir_checks_existence_and_size(tmp_path: Path) -> None:
    make_image(tmp_path / "img" / "a.png", 64, 48)
    make_image(tmp_path / "img" / "b.png", 41, 40)
    path = write_json(tmp_path / "ann.json", coco([]))
    dataset, problems = read_coco(path, images_dir=tmp_path / "img")
    reasons = {p.image: p.reason for p in problems}
    assert "size says 40x40 but the image is 41x40" in reasons["b.png"]
    assert "cannot be opened" in reasons["good.png"]
    assert [i.path for i in dataset.images] == ["a.png"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("  \n", "is empty"),
        ('{"images": [', "not valid JSON (line 1"),
        ("[]", "a COCO file is a JSON object"),
        ('{"images": []}', "no list 'categories', 'annotations'"),
    ],
)
def test_whole_file_problems_raise(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "ann.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LabelFileError, match=re.escape(message)) as info:
        read_coco(path)
    assert str(path) in str(info.value) and isinstance(info.value, MfgVisionError)


def test_broken_categories_raise(tmp_path: Path) -> None:
    doc = coco([], categories=[{"id": 1, "name": "dent"}, {"id": 1, "name": "pit"}])
    with pytest.raises(LabelFileError, match="category id 1 is used twice"):
        read_coco(write_json(tmp_path / "a.json", doc))
    doc = coco([], categories=[{"id": 1}])
    with pytest.raises(LabelFileError, match=r"categories\[0\]: needs an integer id and a non-empty name"):
        read_coco(write_json(tmp_path / "b.json", doc))


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(LabelFileError, match="not found"):
        read_coco(tmp_path / "nope.json")


def test_strict_callers_can_raise_the_problems(tmp_path: Path) -> None:
    path = write_json(tmp_path / "ann.json", coco([{"id": 5, "image_id": 9, "category_id": 3, "bbox": [1, 1, 2, 2]}]))
    _, problems = read_coco(path)
    with pytest.raises(LabelItemError, match=r"1 label item\(s\) are wrong:\n.*annotation id 5") as info:
        raise_for_problems(problems)
    assert info.value.problems == tuple(problems)
    assert isinstance(problems[0].to_error(), MfgVisionError)
    raise_for_problems([])  # nothing to raise
