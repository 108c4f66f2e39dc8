from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resources.anomaly.layout import AnomalyLayoutError, content_region, fit_mask, read_mvtec_layout


def _image(path: Path, size: tuple[int, int] = (40, 20), value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0]), value, dtype=np.uint8)).save(path)
    return path


def _mask(path: Path, size: tuple[int, int] = (40, 20)) -> Path:
    pixels = np.zeros((size[1], size[0]), dtype=np.uint8)
    pixels[5:10, 10:30] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def _dataset(root: Path) -> Path:
    _image(root / "train/good/000.png")
    _image(root / "train/good/001.png")
    _image(root / "test/good/000.png")
    _image(root / "test/crack/000.png")
    _mask(root / "ground_truth/crack/000_mask.png")
    _image(root / "test/crack/001.png")  # no mask
    _mask(root / "ground_truth/crack/009_mask.png")  # no image
    return root


def test_the_layout_lists_images_masks_and_what_is_odd(tmp_path: Path) -> None:
    layout = read_mvtec_layout(_dataset(tmp_path))
    assert [p.name for p in layout.train_good] == ["000.png", "001.png"]
    assert [(i.path.name, i.defect_type, i.mask is not None) for i in layout.test] == [
        ("000.png", "crack", True),
        ("001.png", "crack", False),
        ("000.png", "good", False),
    ]
    assert layout.defect_types == ["crack"]
    assert any("001.png: no mask" in p for p in layout.problems)
    assert any("009_mask.png: a mask with no image" in p for p in layout.problems)


@pytest.mark.parametrize(
    ("remove", "message"),
    [("train/good/*", "train/good holds no images"), ("test/good/*", "test/good holds no images")],
)
def test_a_layout_without_good_parts_is_refused_by_name(tmp_path: Path, remove: str, message: str) -> None:
    root = _dataset(tmp_path)
    for path in root.glob(remove):
        path.unlink()
    with pytest.raises(AnomalyLayoutError, match=message):
        read_mvtec_layout(root)


def test_a_folder_that_is_not_the_layout_says_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(AnomalyLayoutError, match="train/good/"):
        read_mvtec_layout(tmp_path)


def test_a_mask_is_fitted_like_its_image(tmp_path: Path) -> None:
    mask = fit_mask(_mask(tmp_path / "m.png"), (40, 20), 32, "letterbox")
    region = content_region(40, 20, 32, "letterbox")
    assert region[8:24].all() and not region[:8].any() and not region[24:].any()
    assert mask.sum() > 0 and not (mask & ~region).any()
    rows = np.flatnonzero(mask.any(axis=1))
    assert rows.min() >= 8 + 4 and rows.max() <= 8 + 8  # rows 5..9 of 20, scaled by 0.8, below the border
    assert content_region(40, 20, 32, "squash").all()


def test_a_mask_of_the_wrong_size_or_not_binary_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AnomalyLayoutError, match="the mask is 40×20 but its image is 41×20"):
        fit_mask(_mask(tmp_path / "m.png"), (41, 20), 32, "letterbox")
    grey = _image(tmp_path / "grey.png", value=100)
    with pytest.raises(AnomalyLayoutError, match="not a binary mask"):
        fit_mask(grey, (40, 20), 32, "letterbox")
