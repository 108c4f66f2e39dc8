"""The generated detection line: each format reads back with the boxes written, the boxes are the
exact extent of what was painted, a seed writes the same bytes, and the asked-for counts are there."""

import hashlib
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from resources.data.sample_boxes import DEFAULT_BOX_CLASSES, MIN_CHANGE, BoxLineSummary, write_box_line
from resources.data.sample_scenes import SampleLineError, camera_spec
from resources.detect import BoxSet
from resources.detect.formats import read_labels
from resources.errors import MfgVisionError

SIZE = 128


def _write(out: Path, fmt: str = "coco", **options: object) -> BoxLineSummary:
    values: dict[str, object] = {"seed": 7, "good_images": 4, "images_per_class": 4, "image_size": SIZE, "fmt": fmt}
    return write_box_line(out, **{**values, **options})  # type: ignore[arg-type]


def _boxes(dataset: BoxSet) -> set[tuple[object, ...]]:
    return {(b.image, b.class_name, *(round(v, 6) for v in b.corners)) for b in dataset.boxes}


def _digests(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize(
    ("fmt", "images", "labels", "extra"),
    [
        ("coco", "images", "annotations.json", None),
        ("yolo", "images", "labels", "data.yaml"),
        ("voc", "JPEGImages", "Annotations", None),
    ],
)
def test_each_format_reads_back_with_the_boxes_written(
    tmp_path: Path, fmt: str, images: str, labels: str, extra: str | None
) -> None:
    summary = _write(tmp_path / fmt, fmt)
    assert (summary.images_dir, summary.labels) == (tmp_path / fmt / images, tmp_path / fmt / labels)
    assert extra is None or (tmp_path / fmt / extra).is_file()
    dataset, problems = read_labels(fmt, summary.labels, images_dir=summary.images_dir)
    assert problems == []
    assert len(dataset.images) == summary.images == 16 and {i.width for i in dataset.images} == {SIZE}
    reference, _ = read_labels("coco", _write(tmp_path / "reference").labels)  # the same seed, as COCO
    assert _boxes(dataset) == _boxes(reference)
    assert all(float(v).is_integer() for box in dataset.boxes for v in box.corners)  # whole pixels: VOC is exact


def test_counts_good_parts_and_defects_per_image(tmp_path: Path) -> None:
    summary = _write(tmp_path / "out", good_images=5, images_per_class=6)
    dataset, _ = read_labels("coco", summary.labels, images_dir=summary.images_dir)
    per_image = Counter(box.image for box in dataset.boxes)
    assert summary.images == 5 + 3 * 6 and summary.good_images == 5
    assert sum(1 for info in dataset.images if info.path not in per_image) == 5  # good parts: no box
    assert set(per_image.values()) <= {1, 2, 3}
    assert summary.boxes == dict(Counter(box.class_name for box in dataset.boxes))
    for name in DEFAULT_BOX_CLASSES:
        with_class = {box.image for box in dataset.boxes if box.class_name == name}
        assert summary.images_with[name] == len(with_class) >= 6
    assert dataset.class_names == DEFAULT_BOX_CLASSES
    one = _write(tmp_path / "dents", classes=("dent",), good_images=0, images_per_class=3)
    assert (one.images, one.classes, set(one.boxes)) == (3, ("dent",), {"dent"}) and one.boxes["dent"] >= 3


def test_no_two_boxes_of_an_image_touch(tmp_path: Path) -> None:
    summary = _write(tmp_path / "out", good_images=0, images_per_class=8)
    dataset, _ = read_labels("coco", summary.labels)
    for info in dataset.images:
        boxes = dataset.boxes_for(info.path)
        for index, one in enumerate(boxes):
            for other in boxes[index + 1 :]:
                assert (one.x_max < other.x_min or other.x_max < one.x_min or one.y_max < other.y_min
                        or other.y_max < one.y_min), (info.path, one, other)


def test_a_box_is_the_extent_of_the_pixels_its_defect_changed() -> None:
    from resources.data.sample_boxes import _draw_image

    camera = camera_spec(7, "cam1")
    for first in DEFAULT_BOX_CLASSES:
        for index in range(4):
            _, painted = _draw_image(7, first, index, SIZE, camera, DEFAULT_BOX_CLASSES)
            assert painted and painted[0].class_name == first
            for defect in painted:
                rows, cols = np.nonzero(np.abs(defect.delta).max(axis=2) >= MIN_CHANGE)
                x0, y0 = defect.window[1].start, defect.window[0].start
                assert defect.corners == (x0 + cols.min(), y0 + rows.min(), x0 + cols.max() + 1, y0 + rows.max() + 1)
                assert np.count_nonzero(defect.delta) == 3 * len(rows)  # nothing changes outside the defect


def test_a_seed_writes_the_same_bytes_and_another_seed_other_images(tmp_path: Path) -> None:
    for fmt in ("coco", "yolo", "voc"):
        first, second = _write(tmp_path / f"a-{fmt}", fmt), _write(tmp_path / f"b-{fmt}", fmt)
        assert _digests(first.out_dir) == _digests(second.out_dir) and len(_digests(first.out_dir)) >= 17
    other = _write(tmp_path / "other", seed=8)
    same = _digests(tmp_path / "a-coco")
    assert all(digest != same[name] for name, digest in _digests(other.out_dir).items() if name.endswith(".png"))


def test_sixty_images_of_128_px_are_quick(tmp_path: Path) -> None:
    started = time.perf_counter()
    _write(tmp_path / "out", good_images=15, images_per_class=15)
    # About 0.7 s on the 2-core development machine; the bound is loose so a busy machine does not fail it.
    assert time.perf_counter() - started < 5.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fmt": "kitti"}, "format 'kitti' is unknown; choose one of coco, yolo, voc"),
        ({"classes": ("good", "dent")}, "'good' is not a class here"),
        ({"classes": ("crack",)}, "defects this generator draws: scratch, dent, stain"),
        ({"classes": ("dent", "dent")}, "without repeats"),
        ({"image_size": 32}, "image_size 32: needs 64 to 2048 px"),
        ({"good_images": 0, "images_per_class": 0}, "1 to 99999 images in all"),
        ({"good_images": -1}, "need counts >= 0"),
        ({"seed": -3}, "seed -3: needs an integer >= 0"),
    ],
)
def test_options_out_of_range_are_refused_with_what_is_allowed(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    with pytest.raises(SampleLineError, match=message) as caught:
        _write(tmp_path / "out", **options)
    assert isinstance(caught.value, MfgVisionError) and not (tmp_path / "out").exists()


def test_a_folder_with_files_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(SampleLineError, match="is not an empty folder; choose a new or empty one"):
        _write(tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]
