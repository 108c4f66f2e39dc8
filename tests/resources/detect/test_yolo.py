"""YOLO txt labels: class names files, image sizes from the files, every bad line quarantined."""

from pathlib import Path

import pytest
from PIL import Image

from resources.detect.boxes import Box, BoxSet, ImageInfo
from resources.detect.errors import BoxSetError, LabelFileError
from resources.detect.formats import find_names_file, image_size, read_class_names, read_yolo, write_yolo

from .conftest import make_image


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """images/{a,b,good}.png (100x50, 40x40, 32x32), labels/ with data.yaml names as a list."""
    images, labels = tmp_path / "images", tmp_path / "labels"
    make_image(images / "a.png", 100, 50)
    make_image(images / "b.png", 40, 40)
    make_image(images / "good.png", 32, 32)
    labels.mkdir()
    (labels / "data.yaml").write_text("names: [scratch, dent]\n", encoding="utf-8")
    (labels / "b.txt").write_text("1 0.5 0.5 0.25 0.25\n", encoding="utf-8")
    (labels / "good.txt").write_text("", encoding="utf-8")
    return labels, images


def test_reads_boxes_in_pixels_and_empty_file_as_good_part(layout: tuple[Path, Path]) -> None:
    labels, images = layout
    (labels / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n\n1 0.1 0.1 0.2 0.2 0.75\n", encoding="utf-8")
    dataset, problems = read_yolo(labels, images, reviewer="ann")
    assert problems == []
    assert dataset.class_names == ("scratch", "dent")
    assert [i.path for i in dataset.images] == ["a.png", "b.png", "good.png"]
    first, second = dataset.boxes_for("a.png")
    assert first.corners == pytest.approx((40.0, 15.0, 60.0, 35.0))
    assert (first.class_name, first.reviewer, first.source_item) == ("scratch", "ann", "line 1")
    assert (second.score, second.source_item) == (0.75, "line 3")  # blank line skipped, numbering kept
    assert dataset.boxes_for("good.png") == ()


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("0 0.5 0.5 0.2", "expected 5 fields"),
        ("0 0.5 0.5 0.2 0.2 0.9 0.1", "a segmentation polygon?"),
        ("0 0.5 0.5 1.2 0.2", "normalised to 0..1, got [1.2]"),
        ("0 0.5 -0.1 0.2 0.2", "normalised to 0..1"),
        ("0 0.5 abc 0.2 0.2", "not all numbers"),
        ("x 0.5 0.5 0.2 0.2", "class id 'x' is not an integer"),
        ("5 0.5 0.5 0.2 0.2", "class id 5 has no name (known ids: [0, 1])"),
        ("0 0.5 0.5 0 0.2", "zero or negative size"),
        ("0 0.95 0.5 0.5 0.2", "outside the 100x50 image"),
    ],
)
def test_bad_line_is_quarantined_with_file_and_line(layout: tuple[Path, Path], line: str, reason: str) -> None:
    labels, images = layout
    (labels / "a.txt").write_text(f"0 0.5 0.5 0.2 0.2\n{line}\n", encoding="utf-8")
    read = read_yolo(labels, images)
    assert len(read.problems) == 1
    problem = read.problems[0]
    assert (problem.file, problem.item, problem.image) == (str(labels / "a.txt"), "line 2", "a.png")
    assert reason in problem.reason and problem.fix
    assert [i.path for i in read.dataset.images] == ["b.png", "good.png"]  # the rest goes on


def test_missing_label_file_and_orphan_label(layout: tuple[Path, Path]) -> None:
    labels, images = layout
    (labels / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n", encoding="utf-8")
    dataset, problems = read_yolo(labels, images)
    by_reason = {p.reason: p for p in problems}
    assert by_reason["image has no label file"].image == "a.png"
    assert "empty .txt if it is a good part" in by_reason["image has no label file"].fix
    orphan = next(p for p in problems if "no image ghost" in p.reason)
    assert orphan.file == str(labels / "ghost.txt") and orphan.image is None
    assert "a.png" not in [i.path for i in dataset.images]
    lenient, problems = read_yolo(labels, images, missing_label_is_good=True)
    assert lenient.boxes_for("a.png") == () and len(problems) == 1  # only the orphan


def test_undecodable_image_is_quarantined(layout: tuple[Path, Path]) -> None:
    labels, images = layout
    (labels / "a.txt").write_text("", encoding="utf-8")
    (images / "a.png").write_bytes(b"not a png")
    dataset, problems = read_yolo(labels, images)
    assert problems[0].image == "a.png" and "cannot be decoded" in problems[0].reason
    assert [i.path for i in dataset.images] == ["b.png", "good.png"]


def test_names_as_mapping_and_classes_txt(tmp_path: Path) -> None:
    (tmp_path / "data.yaml").write_text("path: .\nnames:\n  0: scratch\n  1: dent\n", encoding="utf-8")
    assert read_class_names(tmp_path / "data.yaml") == {0: "scratch", 1: "dent"}
    (tmp_path / "classes.txt").write_text("scratch\ndent\n\n", encoding="utf-8")
    assert read_class_names(tmp_path / "classes.txt") == {0: "scratch", 1: "dent"}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("data.yaml", "path: .\ntrain: images\n", "no 'names:' list or mapping"),
        ("data.yaml", "names: [a, a]\n", "used for two ids"),
        ("data.yaml", "names: {zero: a}\n", "names key 'zero' is not a class id"),
        ("data.yaml", "names: [a\n", "not valid YAML"),
        ("data.yaml", "", "is empty"),
        ("classes.txt", "a\n\nb\n", "class names are empty"),
    ],
)
def test_broken_names_file_raises(tmp_path: Path, name: str, text: str, message: str) -> None:
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(LabelFileError, match=message) as info:
        read_class_names(tmp_path / name)
    assert str(tmp_path / name) in str(info.value)


def test_names_file_is_searched_in_labels_then_parent(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    with pytest.raises(LabelFileError, match="no class names file.*add a data.yaml"):
        find_names_file(labels)
    (tmp_path / "classes.txt").write_text("dent\n", encoding="utf-8")
    assert find_names_file(labels) == tmp_path / "classes.txt"
    (labels / "data.yaml").write_text("names: [dent]\n", encoding="utf-8")
    assert find_names_file(labels) == labels / "data.yaml"


def test_classes_txt_in_the_labels_folder_is_not_a_label_file(tmp_path: Path) -> None:
    make_image(tmp_path / "images" / "a.png", 10, 10)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "classes.txt").write_text("dent\n", encoding="utf-8")
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n", encoding="utf-8")
    dataset, problems = read_yolo(tmp_path / "labels", tmp_path / "images")
    assert problems == [] and len(dataset.boxes) == 1


def test_missing_folders_raise(tmp_path: Path) -> None:
    with pytest.raises(LabelFileError, match="images folder not found"):
        read_yolo(tmp_path / "labels", tmp_path / "images")
    (tmp_path / "images").mkdir()
    with pytest.raises(LabelFileError, match="labels folder not found"):
        read_yolo(tmp_path / "labels", tmp_path / "images", names_file=tmp_path / "x.yaml")


def test_write_then_read_round_trips_with_subfolders(tmp_path: Path, sample: BoxSet, images_dir: Path) -> None:
    written = write_yolo(sample, tmp_path / "labels")
    assert (tmp_path / "labels" / "sub" / "b.txt") in written
    assert (tmp_path / "labels" / "good.txt").read_text() == ""  # good part: empty file
    dataset, problems = read_yolo(tmp_path / "labels", images_dir)
    assert problems == [] and dataset.class_names == sample.class_names
    for info in sample.images:
        got, want = dataset.boxes_for(info.path), sample.boxes_for(info.path)
        assert [b.class_name for b in got] == [b.class_name for b in want]
        for g, w in zip(got, want):
            assert g.corners == pytest.approx(w.corners, rel=1e-9, abs=1e-9)


def test_writer_refuses_stale_labels_and_clashing_stems(tmp_path: Path, sample: BoxSet) -> None:
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "old.txt").write_text("", encoding="utf-8")
    with pytest.raises(LabelFileError, match="already holds .txt"):
        write_yolo(sample, tmp_path / "labels")
    clash = BoxSet((ImageInfo("a.png", 5, 5), ImageInfo("a.jpg", 5, 5)))
    with pytest.raises(BoxSetError, match="would share"):
        write_yolo(clash, tmp_path / "other")
    unknown = BoxSet((ImageInfo("a.png", 5, 5),), (Box("a.png", "crack", 0, 0, 1, 1),), ("dent",))
    with pytest.raises(BoxSetError, match="'crack' is not in class_names"):
        write_yolo(unknown, tmp_path / "third")


def test_exif_rotation_swaps_the_size(tmp_path: Path) -> None:
    """A phone photo stored 60x20 and shown turned is labelled at 20x60, as ultralytics reads it."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (60, 20)).save(tmp_path / "turned.jpg", exif=exif)
    Image.new("RGB", (60, 20)).save(tmp_path / "plain.jpg")
    assert image_size(tmp_path / "turned.jpg") == (20, 60)
    assert image_size(tmp_path / "plain.jpg") == (60, 20)
