"""The in-memory form and its label_boxes table: good parts kept, types fixed, round trips exact."""

import math

import pyarrow as pa
import pytest

from resources.detect.boxes import TABLE_COLUMNS, Box, BoxSet, ImageInfo, split_by_reviewer
from resources.detect.errors import BoxSetError, DetectLabelError
from resources.errors import MfgVisionError


def test_box_geometry() -> None:
    box = Box("a.png", "dent", 2.0, 3.0, 12.0, 8.0)
    assert (box.width, box.height, box.area) == (10.0, 5.0, 50.0)
    assert Box("a.png", "dent", 5.0, 5.0, 1.0, 9.0).area == 0.0  # swapped corners have no area


def test_box_refuses_non_finite_coordinates() -> None:
    with pytest.raises(BoxSetError, match="finite") as info:
        Box("a.png", "dent", 0.0, 0.0, math.nan, 4.0)
    assert isinstance(info.value, MfgVisionError) and isinstance(info.value, ValueError)


def test_box_set_refuses_a_box_for_an_unlisted_image() -> None:
    with pytest.raises(BoxSetError, match="not listed.*b.png"):
        BoxSet((ImageInfo("a.png", 10, 10),), (Box("b.png", "dent", 0, 0, 1, 1),))


def test_box_set_refuses_duplicate_images_and_class_names() -> None:
    with pytest.raises(BoxSetError, match="twice"):
        BoxSet((ImageInfo("a.png", 10, 10), ImageInfo("a.png", 10, 10)))
    with pytest.raises(BoxSetError, match="unique"):
        BoxSet((ImageInfo("a.png", 10, 10),), (), ("dent", "dent"))


def test_image_info_needs_a_size() -> None:
    with pytest.raises(DetectLabelError, match="positive size"):
        ImageInfo("a.png", 0, 10)


def test_class_id_names_the_box_and_the_choices(sample: BoxSet) -> None:
    assert sample.class_id(sample.boxes[1]) == 1
    stray = Box("a.png", "crack", 0, 0, 1, 1, source_file="x.json", source_item="annotation id 9")
    with pytest.raises(BoxSetError, match=r"x.json annotation id 9: class 'crack' is not in class_names"):
        BoxSet(sample.images, (stray,), sample.class_names).class_id(stray)


def test_build_defaults_class_names_to_sorted_box_classes() -> None:
    images = (ImageInfo("a.png", 10, 10),)
    built = BoxSet.build(images, [Box("a.png", "pit", 0, 0, 1, 1), Box("a.png", "dent", 0, 0, 2, 2)])
    assert built.class_names == ("dent", "pit")


def test_table_has_typed_columns_and_a_row_per_good_part(sample: BoxSet) -> None:
    table = sample.to_arrow(reviewer="ann")
    assert tuple(table.column_names) == TABLE_COLUMNS
    assert table.schema.field("image_width").type == pa.int32()
    assert table.schema.field("x_min").type == pa.float64()
    assert table.num_rows == len(sample.boxes) + 1  # good.png has one row with null box columns
    good = [row for row in table.to_pylist() if row["image"] == "good.png"]
    assert good == [{**good[0], "class_name": None, "x_min": None, "reviewer": "ann"}]
    assert good[0]["image_width"] == 32


def test_table_round_trip_is_exact(sample: BoxSet) -> None:
    assert BoxSet.from_arrow(sample.to_arrow()) == sample
    frame = sample.to_pandas()
    assert frame.attrs["class_names"] == list(sample.class_names)
    assert BoxSet.from_pandas(frame) == sample


def test_from_arrow_names_missing_columns(sample: BoxSet) -> None:
    with pytest.raises(BoxSetError, match="lacks columns.*reviewer"):
        BoxSet.from_arrow(sample.to_arrow().drop_columns(["reviewer"]))


def test_split_by_reviewer_keeps_each_reviewers_good_parts(sample: BoxSet) -> None:
    bob = BoxSet(sample.images[:2], sample.boxes[:1], sample.class_names)  # bob did not see good.png
    table = pa.concat_tables([sample.to_arrow(reviewer="ann"), bob.to_arrow(reviewer="bob")])
    reviews = split_by_reviewer(table)
    assert sorted(reviews) == ["ann", "bob"]
    assert [i.path for i in reviews["ann"].images] == ["a.png", "sub/b.png", "good.png"]
    assert [i.path for i in reviews["bob"].images] == ["a.png", "sub/b.png"]  # sub/b.png: bob found nothing
    assert reviews["bob"].boxes_for("sub/b.png") == ()
    assert reviews["ann"].class_names == sample.class_names


def test_split_by_reviewer_refuses_unattributed_rows(sample: BoxSet) -> None:
    with pytest.raises(BoxSetError, match="no reviewer.*fill the reviewer column"):
        split_by_reviewer(sample.to_arrow())
