"""Geometry checks: each finding, its severity and its thresholds."""

import pytest

from resources.detect.boxes import Box, BoxSet, ImageInfo
from resources.detect.checks import (
    CheckThresholds,
    Severity,
    blocking,
    boxes_have_area,
    boxes_inside_image,
    check_boxes,
    classes_known,
    duplicate_boxes,
    tiny_boxes,
)
from resources.detect.errors import DetectLabelError

IMAGE = ImageInfo("a.png", 100, 100)


def one_image(*boxes: Box, names: tuple[str, ...] = ("dent", "pit")) -> BoxSet:
    return BoxSet((IMAGE,), boxes, names)


def box(x0: float, y0: float, x1: float, y1: float, cls: str = "dent", reviewer: str | None = "ann") -> Box:
    return Box("a.png", cls, x0, y0, x1, y1, reviewer=reviewer, source_file="ann.json", source_item="annotation id 1")


def test_clean_set_has_no_findings(sample: BoxSet) -> None:
    assert check_boxes(sample, thresholds=CheckThresholds(min_side_px=4, min_area_fraction=1e-4)) == []


def test_outside_image_respects_tolerance() -> None:
    dataset = one_image(box(-0.5, 0, 10, 10), box(95, 95, 102.5, 99))
    findings = boxes_inside_image(dataset, tolerance_px=1.0)
    assert len(findings) == 1 and findings[0].severity is Severity.BLOCKING
    assert "by 2.5 px" in findings[0].message and "ann.json annotation id 1" in findings[0].message
    assert len(boxes_inside_image(dataset, tolerance_px=0.0)) == 2


def test_non_positive_area_is_blocking() -> None:
    findings = boxes_have_area(one_image(box(10, 10, 10, 20), box(30, 30, 20, 40), box(0, 0, 5, 5)))
    assert [f.box.corners for f in findings] == [(10, 10, 10, 20), (30, 30, 20, 40)]
    assert all(f.severity is Severity.BLOCKING and "corners swapped?" in f.message for f in findings)


def test_unknown_class_lists_the_taxonomy() -> None:
    findings = classes_known(one_image(box(0, 0, 5, 5, cls="Dent")), {"dent", "pit"})
    assert len(findings) == 1 and "class 'Dent' is not in the taxonomy (dent, pit)" in findings[0].message


def test_duplicates_same_reviewer_only() -> None:
    dataset = one_image(
        box(0, 0, 10, 10), box(0, 0, 10, 10),  # exact, same reviewer
        box(50, 50, 60, 60), box(50, 50, 60, 60.5),  # IoU 0.95
        box(20, 20, 30, 30), box(20, 20, 30, 30, reviewer="bob"),  # two reviewers agree: not a duplicate
        box(70, 70, 80, 80), box(70, 70, 80, 80, cls="pit"),  # other class: not a duplicate
    )
    findings = duplicate_boxes(dataset, min_iou=0.9)
    assert [f.severity for f in findings] == [Severity.WARNING] * 2
    assert "exact duplicate" in findings[0].message and "near duplicate (IoU 0.95)" in findings[1].message
    assert findings[0].other is not None
    assert len(duplicate_boxes(dataset, min_iou=0.99)) == 1


def test_tiny_by_side_and_by_area() -> None:
    big_image = ImageInfo("big.png", 2000, 2000)
    dataset = BoxSet(
        (IMAGE, big_image),
        (box(0, 0, 3, 50), box(0, 0, 10, 10), Box("big.png", "dent", 0, 0, 15, 15), box(5, 5, 5, 9)),
        ("dent",),
    )
    findings = tiny_boxes(dataset, min_side_px=4, min_area_fraction=1e-4)
    # 3 px side; 15x15 on a 2000x2000 image is 0.0056 % of it; the zero-width box is left to boxes_have_area
    assert [f.box.corners for f in findings] == [(0, 0, 3, 50), (0, 0, 15, 15)]
    assert all(f.severity is Severity.WARNING for f in findings)
    assert tiny_boxes(dataset, min_side_px=0, min_area_fraction=0) == []


def test_check_boxes_puts_blocking_first_and_uses_the_taxonomy() -> None:
    dataset = one_image(box(0, 0, 2, 2), box(90, 90, 120, 99), box(40, 40, 60, 60, cls="crack"), names=("dent",))
    findings = check_boxes(dataset, known_classes={"dent"})
    assert [f.check for f in findings] == ["inside_image", "known_class", "tiny"]
    assert [f.check for f in blocking(findings)] == ["inside_image", "known_class"]
    record = findings[0].as_record()
    assert record["severity"] == "blocking" and record["where"] == "ann.json annotation id 1"


@pytest.mark.parametrize(
    "kwargs", [{"tolerance_px": -1}, {"duplicate_iou": 0}, {"min_side_px": float("nan")}, {"min_area_fraction": 1}]
)
def test_thresholds_are_bounded(kwargs: dict) -> None:
    with pytest.raises(DetectLabelError, match="out of range"):
        CheckThresholds(**kwargs)
