from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resources.anomaly.layout import read_mvtec_layout
from resources.data.sample_anomaly import generate_anomaly_line
from resources.data.sample_scenes import SampleLineError


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("anomaly") / "line"
    generate_anomaly_line(out, seed=3, train_good=4, test_good=3, test_per_defect=2, image_size=64)
    return out


def test_the_line_is_an_mvtec_layout_with_a_mask_for_every_defect(line: Path) -> None:
    layout = read_mvtec_layout(line)
    assert len(layout.train_good) == 4 and layout.problems == []
    assert layout.defect_types == ["dent", "missing_hole", "scratch", "stain"]
    for item in layout.test:
        if item.is_defect:
            mask = np.asarray(Image.open(item.mask))
            assert mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 255}
            assert 0 < (mask == 255).mean() < 0.5, item.path  # the defect, not the whole image


def test_the_same_seed_writes_the_same_bytes(tmp_path: Path, line: Path) -> None:
    again = tmp_path / "again"
    generate_anomaly_line(again, seed=3, train_good=4, test_good=3, test_per_defect=2, image_size=64)
    for path in sorted(line.rglob("*.png")):
        assert path.read_bytes() == (again / path.relative_to(line)).read_bytes(), path


def test_bad_options_say_what_is_allowed(tmp_path: Path) -> None:
    with pytest.raises(SampleLineError, match="train_good"):
        generate_anomaly_line(tmp_path / "a", seed=0, train_good=0)
    with pytest.raises(SampleLineError, match="choose one or more"):
        generate_anomaly_line(tmp_path / "b", seed=0, defects=("good",))


def test_fixtured_parts_vary_less_than_free_ones_and_defects_keep_their_masks(tmp_path: Path) -> None:
    """An anomaly station holds parts in a jig: good parts look alike pixel for pixel (a detector of
    good parts only has a chance), unlike the classification line's parts at any angle."""
    spread = {}
    for fixtured in (True, False):
        out = tmp_path / str(fixtured)
        generate_anomaly_line(out, seed=5, train_good=12, test_good=1, test_per_defect=2, image_size=64, fixtured=fixtured)
        good = np.stack([np.asarray(Image.open(p), dtype=np.float32) for p in sorted((out / "train" / "good").iterdir())])
        spread[fixtured] = float(good.std(axis=0).mean())
        masks = [np.asarray(Image.open(p)) for p in sorted((out / "ground_truth").rglob("*_mask.png"))]
        assert len(masks) == 8 and all(0 < (m == 255).mean() < 0.5 for m in masks)
    assert spread[True] < 0.6 * spread[False], spread
