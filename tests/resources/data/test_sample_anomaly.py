from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resources.anomaly.layout import read_mvtec_layout
from resources.data.sample_anomaly import generate_anomaly_line
from resources.data.sample_scenes import SampleLineError

# sha256 of the decoded pixels (and relative paths) of small lines written by the code before the
# fixtured mode (f8190c8's parent and earlier), seed 7, 64 px
CLASSIFICATION_LINE_PIXELS = "4d84bbdbb0e0d01d067c5af39ad164c0e62a58b51e283a58141f237e38bc2a94"
FREE_POSE_ANOMALY_LINE_PIXELS = "88a5484b8ad56180e312751733e26e3b0996630838e1dc055ea0e061fd7cb2fe"


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


def _pixel_digest(root: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.png")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(np.asarray(Image.open(path)).tobytes())
    return digest.hexdigest()


def test_free_pose_scenes_are_pixel_for_pixel_those_before_the_fixtured_mode(tmp_path: Path) -> None:
    """The fixtured mode makes the same random draws, so the classification sample line (the demo's
    data, whose figures the README quotes) and the free-pose anomaly line are unchanged; digests taken
    from the code before the mode existed."""
    from resources.data.sample_line import generate_sample_line

    generate_sample_line(tmp_path / "cls", seed=7, images_per_class=2, image_size=64)
    generate_anomaly_line(tmp_path / "an", seed=7, train_good=2, test_good=1, test_per_defect=1, image_size=64, fixtured=False)
    assert _pixel_digest(tmp_path / "cls") == CLASSIFICATION_LINE_PIXELS
    assert _pixel_digest(tmp_path / "an") == FREE_POSE_ANOMALY_LINE_PIXELS
