"""Pascal VOC XML: the 1-based pixel convention, safe parsing, and every bad file quarantined."""

from pathlib import Path

import pytest

from resources.detect.boxes import Box, BoxSet, ImageInfo
from resources.detect.errors import LabelFileError, LabelItemError
from resources.detect.formats import parse_xml_safely, read_voc, read_voc_file, write_voc

from .conftest import make_image


def voc(filename: str | None = "a.png", size: str | None = "<width>64</width><height>48</height>",
        objects: str = "") -> str:
    name = f"<filename>{filename}</filename>" if filename is not None else ""
    size_element = f"<size>{size}<depth>3</depth></size>" if size is not None else ""
    return f"<annotation><folder>x</folder>{name}{size_element}{objects}</annotation>"


def obj(name: str, xmin: str, ymin: str, xmax: str, ymax: str) -> str:
    return (f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
            f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_one_based_inclusive_corners_become_continuous_zero_based(tmp_path: Path) -> None:
    """xmin=1..xmax=10 covers the first ten pixel columns: x_min 0, x_max 10 (VOC width xmax-xmin+1)."""
    path = write(tmp_path / "ann" / "a.xml", voc(objects=obj("dent", "1", "1", "10", "48")))
    info, boxes = read_voc_file(path)
    assert (info.path, info.width, info.height) == ("a.png", 64, 48)
    assert boxes[0].corners == (0.0, 0.0, 10.0, 48.0)
    assert (boxes[0].source_file, boxes[0].source_item) == (str(path), "object 1")


def test_integer_files_round_trip_exactly(tmp_path: Path) -> None:
    original = voc(objects=obj("dent", "1", "5", "64", "48") + obj("pit", "7", "8", "9", "10"))
    info, boxes = read_voc_file(write(tmp_path / "in" / "a.xml", original))
    write_voc(BoxSet.build([info], boxes), tmp_path / "out")
    again_info, again = read_voc_file(tmp_path / "out" / "a.xml")
    assert again_info == ImageInfo("a.png", 64, 48, str(tmp_path / "out" / "a.xml"))
    assert [b.corners for b in again] == [b.corners for b in boxes]
    text = (tmp_path / "out" / "a.xml").read_text()
    assert "<xmin>1</xmin>" in text and "<xmax>64</xmax>" in text and "<xmin>7</xmin>" in text


def test_written_coordinates_move_at_most_half_a_pixel(tmp_path: Path, sample: BoxSet) -> None:
    write_voc(sample, tmp_path / "ann")
    dataset, problems = read_voc(tmp_path / "ann", class_names=sample.class_names)
    assert problems == []
    for got, want in zip(dataset.boxes, sample.boxes):
        assert max(abs(g - w) for g, w in zip(got.corners, want.corners)) <= 0.5


def test_sub_pixel_box_is_widened_to_one_pixel(tmp_path: Path) -> None:
    thin = BoxSet((ImageInfo("a.png", 20, 20),), (Box("a.png", "dent", 10.2, 3, 10.4, 9),), ("dent",))
    write_voc(thin, tmp_path / "ann")
    _, boxes = read_voc_file(tmp_path / "ann" / "a.xml")
    assert boxes[0].corners == (10.0, 3.0, 11.0, 9.0)


def test_float_coordinates_round_trip_to_float_precision(tmp_path: Path, sample: BoxSet) -> None:
    write_voc(sample, tmp_path / "ann", integer_coordinates=False)
    dataset, _ = read_voc(tmp_path / "ann", class_names=sample.class_names)
    for got, want in zip(dataset.boxes, sample.boxes):
        assert got.corners == pytest.approx(want.corners, rel=1e-12)


def test_paths_reviewer_score_and_good_parts_survive(tmp_path: Path, sample: BoxSet) -> None:
    marked = BoxSet(sample.images, [Box(b.image, b.class_name, *b.corners, reviewer="ann", score=0.5)
                                    for b in sample.boxes], sample.class_names)
    write_voc(marked, tmp_path / "ann")
    assert (tmp_path / "ann" / "sub" / "b.xml").is_file() and (tmp_path / "ann" / "good.xml").is_file()
    dataset, problems = read_voc(tmp_path / "ann")
    assert problems == []
    assert sorted(i.path for i in dataset.images) == ["a.png", "good.png", "sub/b.png"]
    assert dataset.boxes_for("good.png") == ()
    assert {(b.reviewer, b.score) for b in dataset.boxes} == {("ann", 0.5)}
    assert dataset.class_names == ("dent", "pit", "scratch")  # sorted when no class list is given


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "annotation file is empty"),
        ("<annotation><filename>a.png</filename>", "not well-formed XML"),
        ("<voc><filename>a.png</filename></voc>", "not a VOC annotation"),
        (voc(filename=None), "not a VOC annotation"),
        (voc(size=None), "no valid <size>"),
        (voc(size="<width>0</width><height>48</height>"), "no valid <size>"),
    ],
)
def test_bad_file_is_quarantined_and_others_go_on(tmp_path: Path, text: str, reason: str) -> None:
    bad = write(tmp_path / "ann" / "bad.xml", text)
    write(tmp_path / "ann" / "ok.xml", voc("ok.png", objects=obj("dent", "2", "2", "9", "9")))
    dataset, problems = read_voc(tmp_path / "ann")
    assert len(problems) == 1 and problems[0].file == str(bad)
    assert reason in problems[0].reason and problems[0].fix
    assert [i.path for i in dataset.images] == ["ok.png"]
    with pytest.raises(LabelFileError, match=str(bad)):
        read_voc_file(bad)


@pytest.mark.parametrize(
    ("objects", "reason"),
    [
        (obj("dent", "10", "1", "5", "9"), "zero or negative size (-4 x 9 px)"),
        (obj("dent", "1", "1", "70", "9"), "outside the 64x48 image by 6 px"),
        (obj("dent", "1", "a", "5", "9"), "needs numeric xmin"),
        ("<object><bndbox/></object>", "object has no <name>"),
        (obj("crack", "1", "1", "5", "9"), "class 'crack' is not in the class list"),
    ],
)
def test_bad_object_is_quarantined(tmp_path: Path, objects: str, reason: str) -> None:
    path = write(tmp_path / "ann" / "a.xml", voc(objects=obj("dent", "2", "2", "9", "9") + objects))
    write(tmp_path / "ann" / "b.xml", voc("b.png"))
    dataset, problems = read_voc(tmp_path / "ann", class_names=["dent", "pit"])
    assert [(p.file, p.item, p.image) for p in problems] == [(str(path), "object 2", "a.png")]
    assert reason in problems[0].reason
    assert [i.path for i in dataset.images] == ["b.png"]
    with pytest.raises(LabelItemError, match="object 2"):
        read_voc_file(path, class_names=["dent", "pit"])


def test_zero_based_files_are_clipped_within_tolerance(tmp_path: Path) -> None:
    path = write(tmp_path / "a.xml", voc(objects=obj("dent", "0", "0", "5", "5")))
    assert read_voc_file(path)[1][0].corners == (0.0, 0.0, 5.0, 5.0)
    with pytest.raises(LabelItemError, match="outside"):
        read_voc_file(path, tolerance_px=0.0)


def test_images_dir_missing_image_wrong_size_and_unlabelled_image(tmp_path: Path) -> None:
    make_image(tmp_path / "img" / "a.png", 64, 48)
    make_image(tmp_path / "img" / "b.png", 10, 10)
    make_image(tmp_path / "img" / "c.png", 12, 12)
    write(tmp_path / "ann" / "a.xml", voc("a.png"))
    write(tmp_path / "ann" / "b.xml", voc("b.png"))  # claims 64x48
    write(tmp_path / "ann" / "gone.xml", voc("gone.png"))
    dataset, problems = read_voc(tmp_path / "ann", images_dir=tmp_path / "img")
    reasons = {p.image: p.reason for p in problems}
    assert "size says 64x48 but the image is 10x10" in reasons["b.png"]
    assert "names image gone.png, which cannot be opened" in reasons["gone.png"]
    assert reasons["c.png"] == "image has no annotation file"
    assert [i.path for i in dataset.images] == ["a.png"]
    lenient, _ = read_voc(tmp_path / "ann", images_dir=tmp_path / "img", missing_label_is_good=True)
    assert lenient.image("c.png").width == 12 and lenient.boxes_for("c.png") == ()


def test_two_files_for_one_image(tmp_path: Path) -> None:
    write(tmp_path / "ann" / "a.xml", voc("a.png"))
    write(tmp_path / "ann" / "a_copy.xml", voc("a.png"))
    dataset, problems = read_voc(tmp_path / "ann")
    assert len(problems) == 2 and all("two annotation files" in p.reason for p in problems)
    assert dataset.images == ()


def test_no_annotation_files_raises(tmp_path: Path) -> None:
    with pytest.raises(LabelFileError, match="no .xml annotation files"):
        read_voc(tmp_path)


def test_dtd_and_entities_are_refused(tmp_path: Path) -> None:
    """A billion-laughs file must be refused before any expansion, not parsed."""
    bomb = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
            "<annotation><filename>&lol2;</filename></annotation>")
    external = ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                "<annotation><filename>&x;</filename></annotation>")
    for name, text in (("bomb.xml", bomb), ("external.xml", external)):
        path = write(tmp_path / name, text)
        with pytest.raises(LabelFileError, match="DTD or entities"):
            parse_xml_safely(path)
    assert parse_xml_safely(write(tmp_path / "ok.xml", voc())).tag == "annotation"


def test_writer_refuses_a_folder_with_xml_files(tmp_path: Path, sample: BoxSet) -> None:
    write(tmp_path / "ann" / "old.xml", voc())
    with pytest.raises(LabelFileError, match="already holds .xml"):
        write_voc(sample, tmp_path / "ann")
