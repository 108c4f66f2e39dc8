"""The synthetic sample line: determinism, layout, metadata and argument checks."""

import csv
import hashlib
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resources.data.sample_line import (
    DEFAULT_CLASSES,
    METADATA_COLUMNS,
    METADATA_FILE,
    SampleLineSummary,
    generate_sample_line,
)

PER_CLASS = 4
SIZE = 64
NAME = re.compile(r"^(?P<camera>cam[12])_(?P<shift>day|night)_(?P<index>\d{5})\.png$")
LIGHTING = re.compile(r"^(bright|dim)-(left|right|top|bottom)$")


def _digests(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _metadata(root: Path) -> list[dict[str, str]]:
    with open(root / METADATA_FILE, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == METADATA_COLUMNS
        return list(reader)


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> SampleLineSummary:
    return generate_sample_line(
        tmp_path_factory.mktemp("line") / "out", seed=3, images_per_class=PER_CLASS, image_size=SIZE
    )


def test_same_seed_gives_identical_files_and_another_seed_different_images(
    line: SampleLineSummary, tmp_path: Path
) -> None:
    options = {"images_per_class": PER_CLASS, "image_size": SIZE}
    again = generate_sample_line(tmp_path / "again", seed=3, **options)
    other = generate_sample_line(tmp_path / "other", seed=4, **options)

    first, second, third = _digests(line.out_dir), _digests(again.out_dir), _digests(other.out_dir)
    assert first == second
    assert first.keys() == third.keys()
    images = [name for name in first if name.endswith(".png")]
    assert all(first[name] != third[name] for name in images)


def test_an_image_depends_only_on_its_identity_not_on_the_other_classes(
    line: SampleLineSummary, tmp_path: Path
) -> None:
    only_good = generate_sample_line(
        tmp_path / "good", seed=3, images_per_class=PER_CLASS, image_size=SIZE, classes=["good"]
    )
    full = _digests(line.out_dir)
    for name, digest in _digests(only_good.out_dir).items():
        if name.endswith(".png"):
            assert full[name] == digest


def test_layout_is_a_folder_per_class_named_by_camera_shift_index(line: SampleLineSummary) -> None:
    assert line.classes == DEFAULT_CLASSES
    assert line.counts == {name: PER_CLASS for name in DEFAULT_CLASSES}
    assert line.cameras == ("cam1", "cam2")
    assert (line.seed, line.image_size) == (3, SIZE)
    top_level = {path.name for path in line.out_dir.iterdir()}
    assert top_level == {*DEFAULT_CLASSES, METADATA_FILE}
    for class_name in DEFAULT_CLASSES:
        files = sorted((line.out_dir / class_name).iterdir())
        assert len(files) == PER_CLASS
        matches = [NAME.fullmatch(path.name) for path in files]
        assert all(matches), [path.name for path in files]
        assert sorted(int(m["index"]) for m in matches if m) == list(range(PER_CLASS))
        # Round-robin over cameras, then shifts: every camera/shift pair is present.
        assert {(m["camera"], m["shift"]) for m in matches if m} == {
            ("cam1", "day"), ("cam2", "day"), ("cam1", "night"), ("cam2", "night")
        }


def test_metadata_lists_every_image_in_capture_order(line: SampleLineSummary) -> None:
    rows = _metadata(line.out_dir)
    on_disk = {p.relative_to(line.out_dir).as_posix() for p in line.out_dir.rglob("*.png")}
    assert sorted(row["path"] for row in rows) == sorted(on_disk)
    times = []
    for row in rows:
        match = NAME.fullmatch(row["path"].split("/")[1])
        assert match and row["path"].split("/")[0] in DEFAULT_CLASSES
        assert (row["camera"], row["shift"]) == (match["camera"], match["shift"])
        assert LIGHTING.fullmatch(row["lighting"]), row["lighting"]
        stamp = datetime.fromisoformat(row["capture_time"])
        assert stamp.utcoffset() == timedelta(0)
        times.append(stamp)
    assert all(later > earlier for earlier, later in zip(times, times[1:]))
    shifts = [row["shift"] for row in rows]
    assert shifts == sorted(shifts, key=("day", "night").index)  # the day shift comes first
    assert times[0] >= datetime(2026, 1, 5, 6, tzinfo=UTC)


def test_grey_by_default_and_rgb_when_asked(line: SampleLineSummary, tmp_path: Path) -> None:
    grey = Image.open(next((line.out_dir / "good").glob("*.png")))
    assert (grey.mode, grey.size) == ("L", (SIZE, SIZE))

    coloured = generate_sample_line(
        tmp_path / "rgb", seed=3, images_per_class=2, image_size=48, classes=["stain"], colour=True
    )
    image = Image.open(next((coloured.out_dir / "stain").glob("*.png")))
    assert (image.mode, image.size) == ("RGB", (48, 48))
    pixels = np.asarray(image, dtype=np.int16)
    assert np.abs(pixels[..., 0] - pixels[..., 2]).max() > 0  # really coloured, not grey in RGB


def test_the_part_stands_out_from_the_belt_in_every_image(line: SampleLineSummary) -> None:
    """A cheap guard against blank or washed-out renders: the plate is brighter than the belt."""
    for class_name in DEFAULT_CLASSES:
        for path in (line.out_dir / class_name).glob("*.png"):
            pixels = np.asarray(Image.open(path), dtype=np.float32)
            centre = pixels[SIZE // 3 : 2 * SIZE // 3, SIZE // 3 : 2 * SIZE // 3]
            border = np.concatenate([pixels[:4].ravel(), pixels[-4:].ravel()])
            assert centre.mean() > border.mean() + 15, path


def test_unknown_class_is_refused_listing_the_supported_ones(tmp_path: Path) -> None:
    supported = "supported: good, scratch, dent, stain, missing_hole"
    with pytest.raises(ValueError, match=f"'crack'.*{supported}"):
        generate_sample_line(tmp_path / "x", seed=1, classes=["good", "crack"])
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"classes": ["good", "good"]}, "more than once"),
        ({"classes": []}, "classes is empty"),
        ({"cameras": ["line_cam"]}, "no '_'"),
        ({"shifts": []}, "shifts is empty"),
        ({"images_per_class": 0}, "images_per_class must be between"),
        ({"image_size": 16}, "image_size must be between"),
        ({"start_time": datetime(2026, 1, 5, 6)}, "has no time zone"),
    ],
)
def test_bad_arguments_are_refused_with_the_fix(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    arguments: dict = {"images_per_class": 2, "image_size": 32, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_sample_line(tmp_path / "x", seed=1, **arguments)
    assert not (tmp_path / "x").exists()


def test_a_folder_holding_files_is_refused_but_empty_folders_are_fine(tmp_path: Path) -> None:
    used = tmp_path / "used"
    (used / "good").mkdir(parents=True)
    (used / "good" / "old.png").write_bytes(b"x")
    with pytest.raises(FileExistsError, match=r"used: already holds files \(e\.g\. good/old\.png"):
        generate_sample_line(used, seed=1, images_per_class=1, image_size=32)

    empty = tmp_path / "empty"
    (empty / "good").mkdir(parents=True)
    summary = generate_sample_line(
        empty, seed=1, images_per_class=1, image_size=32, classes=["good"]
    )
    assert summary.counts == {"good": 1}


def test_start_time_in_another_zone_is_written_as_utc(tmp_path: Path) -> None:
    start = datetime(2026, 3, 2, 8, 0, tzinfo=timezone(timedelta(hours=2)))
    summary = generate_sample_line(
        tmp_path / "x", seed=1, images_per_class=2, image_size=32, classes=["good"], shifts=["day"]
    )
    assert _metadata(summary.out_dir)[0]["capture_time"].startswith("2026-01-05T06:00")
    shifted = generate_sample_line(
        tmp_path / "y",
        seed=1,
        images_per_class=2,
        image_size=32,
        classes=["good"],
        shifts=["day"],
        start_time=start,
    )
    first = datetime.fromisoformat(_metadata(shifted.out_dir)[0]["capture_time"])
    assert first.utcoffset() == timedelta(0)
    assert timedelta(0) < first - datetime(2026, 3, 2, 6, 0, tzinfo=UTC) < timedelta(minutes=1)
