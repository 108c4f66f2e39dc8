"""Any format in, any format out: round trips through COCO, YOLO and VOC keep every box.

Tolerances: COCO and YOLO carry floats (written with ``repr``), so they keep boxes to float precision
(asserted at 1e-6 relative); VOC with integer coordinates (the default) moves a corner by at most
0.5 px, and with ``integer_coordinates=False`` it too keeps float precision.
"""

from itertools import product
from pathlib import Path

import pytest

from resources.detect.boxes import BoxSet
from resources.detect.errors import LabelFileError
from resources.detect.formats import (
    LabelFormat,
    read_coco,
    read_labels,
    read_voc,
    read_yolo,
    write_coco,
    write_labels,
    write_voc,
    write_yolo,
)


def assert_same_boxes(got: BoxSet, want: BoxSet, *, rel: float = 1e-6, abs_px: float = 0.0) -> None:
    """Same images with the same sizes, the same boxes per image in order, corners within tolerance."""
    assert {(i.path, i.width, i.height) for i in got.images} == {(i.path, i.width, i.height) for i in want.images}
    assert got.class_names == want.class_names
    for info in want.images:
        mine, theirs = got.boxes_for(info.path), want.boxes_for(info.path)
        assert [b.class_name for b in mine] == [b.class_name for b in theirs], info.path
        for g, w in zip(mine, theirs):
            assert g.corners == pytest.approx(w.corners, rel=rel, abs=abs_px), info.path


def coco_yolo_voc_coco(sample: BoxSet, images_dir: Path, tmp_path: Path, *, integer_voc: bool) -> BoxSet:
    first, problems = read_coco(write_coco(sample, tmp_path / "coco1.json"), images_dir=images_dir)
    assert problems == []
    write_yolo(first, tmp_path / "yolo")
    second, problems = read_yolo(tmp_path / "yolo", images_dir)
    assert problems == []
    write_voc(second, tmp_path / "voc", integer_coordinates=integer_voc)
    third, problems = read_voc(tmp_path / "voc", images_dir=images_dir, class_names=second.class_names)
    assert problems == []
    last, problems = read_coco(write_coco(third, tmp_path / "coco2.json"))
    assert problems == []
    return last


def test_coco_yolo_voc_coco_keeps_float_boxes(sample: BoxSet, images_dir: Path, tmp_path: Path) -> None:
    last = coco_yolo_voc_coco(sample, images_dir, tmp_path, integer_voc=False)
    assert_same_boxes(last, sample, rel=1e-6)


def test_coco_yolo_voc_coco_with_integer_voc_within_half_a_pixel(
    sample: BoxSet, images_dir: Path, tmp_path: Path
) -> None:
    last = coco_yolo_voc_coco(sample, images_dir, tmp_path, integer_voc=True)
    assert_same_boxes(last, sample, rel=0.0, abs_px=0.5)
    assert last.boxes_for("good.png") == ()  # the good part survived three formats


@pytest.mark.parametrize(("source", "target"), list(product(LabelFormat, LabelFormat)))
def test_any_format_to_any_format(
    integer_sample: BoxSet, images_dir: Path, tmp_path: Path, source: LabelFormat, target: LabelFormat
) -> None:
    """Whole-pixel boxes survive every pair of formats, VOC included, to float precision."""
    where = {LabelFormat.COCO: "ann.json", LabelFormat.YOLO: "labels", LabelFormat.VOC: "Annotations"}
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    write_labels(source, integer_sample, first_dir / where[source])
    read_once, problems = read_labels(source, first_dir / where[source], images_dir=images_dir)
    assert problems == []
    write_labels(target, read_once, second_dir / where[target])
    read_twice, problems = read_labels(target, second_dir / where[target], images_dir=images_dir)
    assert problems == []
    expected = integer_sample
    if LabelFormat.VOC in (source, target):  # VOC has no class list: read without one, classes come sorted
        expected = BoxSet.build(integer_sample.images, integer_sample.boxes)
    assert_same_boxes(read_twice, expected, rel=1e-9)


def test_dispatch_names_the_choices_and_needs_images_for_yolo(tmp_path: Path, sample: BoxSet) -> None:
    with pytest.raises(LabelFileError, match="unknown detection label format 'labelme'; choose one of coco, yolo, voc"):
        read_labels("labelme", tmp_path)
    with pytest.raises(LabelFileError, match="pass images_dir="):
        read_labels("YOLO", tmp_path)
    assert write_labels("coco", sample, tmp_path / "a.json") == [tmp_path / "a.json"]
