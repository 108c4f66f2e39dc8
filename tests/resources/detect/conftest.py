"""Shared fixtures for the detection-label tests: a small labelled set and its images, made with PIL."""

from pathlib import Path

import pytest
from PIL import Image

from resources.detect.boxes import Box, BoxSet, ImageInfo

CLASSES = ("scratch", "dent", "pit")


def make_image(path: Path, width: int, height: int, *, seed: int = 0) -> Path:
    """A tiny image whose pixels depend on ``seed`` (content does not matter, size does)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (width, height), (40 + seed * 30 % 200, 90, 140))
    image.save(path)
    return path


def write_images(dataset: BoxSet, images_dir: Path) -> Path:
    for n, info in enumerate(dataset.images):
        make_image(images_dir / info.path, info.width, info.height, seed=n)
    return images_dir


@pytest.fixture
def sample() -> BoxSet:
    """Three images: two with boxes at sub-pixel coordinates (one in a subfolder), one good part."""
    images = (ImageInfo("a.png", 64, 48), ImageInfo("sub/b.png", 40, 40), ImageInfo("good.png", 32, 32))
    boxes = (
        Box("a.png", "scratch", 3.25, 4.5, 20.75, 18.125),
        Box("a.png", "dent", 30.0, 10.0, 64.0, 48.0),  # touches the right and bottom edges
        Box("a.png", "scratch", 0.0, 0.0, 5.5, 7.0),  # touches the top-left corner
        Box("sub/b.png", "pit", 12.3, 17.7, 19.9, 25.1),
    )
    return BoxSet(images, boxes, CLASSES)


@pytest.fixture
def integer_sample() -> BoxSet:
    """The same layout with whole-pixel corners: every format round-trips it exactly."""
    images = (ImageInfo("a.png", 64, 48), ImageInfo("sub/b.png", 40, 40), ImageInfo("good.png", 32, 32))
    boxes = (
        Box("a.png", "scratch", 3, 4, 21, 18),
        Box("a.png", "dent", 30, 10, 64, 48),
        Box("sub/b.png", "pit", 12, 17, 20, 25),
    )
    return BoxSet(images, boxes, CLASSES)


@pytest.fixture
def images_dir(tmp_path: Path, sample: BoxSet) -> Path:
    """The images of ``sample`` (and ``integer_sample``: same paths and sizes) under tmp_path/images."""
    return write_images(sample, tmp_path / "images")
