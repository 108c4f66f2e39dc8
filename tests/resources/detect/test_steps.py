"""The detection engine's threshold on validation: both kinds of image, defect images only, none."""

from pathlib import Path

import numpy as np
import pytest

from resources.detect.engine import DetectEngine
from resources.detect.steps import SCORE_FLOOR, _calibrate
from resources.detect.yolo_errors import DetectorConfigError
from tests.resources.detect.test_batch_labels import _files


def test_good_and_defect_images_take_the_shared_rule() -> None:
    scores = np.array([0.05, 0.1, 0.2, 0.6, 0.7, 0.9])
    defect = np.array([False, False, False, True, True, True])
    calibration = _calibrate(scores, defect, 0.0, None)
    assert 0.2 < calibration["threshold"] <= 0.6 and calibration["escape_rate"] == 0.0
    assert calibration["false_reject_rate"] == 0.0


def test_defect_images_only_set_the_highest_threshold_within_the_budget() -> None:
    scores = np.array([0.3, 0.5, 0.8, 0.9])
    defect = np.ones(4, dtype=bool)
    calibration = _calibrate(scores, defect, 0.0, None)
    assert calibration["threshold"] == pytest.approx(0.3) and calibration["escape_rate"] == 0.0
    assert calibration["false_reject_rate"] is None and "defect images only" in calibration["method"]
    assert _calibrate(scores, defect, 0.25, None)["threshold"] == pytest.approx(0.5)  # one escape of four allowed


def test_a_threshold_below_the_floor_is_raised_and_measured_again() -> None:
    scores = np.array([0.0, 0.4, 0.0, 0.2])
    defect = np.array([False, False, True, True])
    calibration = _calibrate(scores, defect, 0.0, None)
    assert calibration["threshold"] == SCORE_FLOOR and "raised from" in calibration["method"]
    assert calibration["escape_rate"] == pytest.approx(0.5)  # the defect with no box passes at the floor


def test_validation_without_a_defect_image_is_refused() -> None:
    with pytest.raises(DetectorConfigError, match="none with a defect box; add labelled defect images"):
        _calibrate(np.array([0.1, 0.2]), np.zeros(2, dtype=bool), 0.0, None)


def test_ultralytics_own_layout_with_split_folders_is_read(tmp_path: Path) -> None:
    from resources.data.sample_boxes import write_box_line

    root = tmp_path / "yolo"
    write_box_line(root, seed=8, good_images=4, images_per_class=2, image_size=96, fmt="yolo")
    for kind in ("images", "labels"):
        folder = root / kind
        (folder / "train").mkdir()
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            path.rename(folder / "train" / path.name)
    read = DetectEngine().batch_labels(_files(root), "yolo", "good")
    assert read.quarantined == [] and len(read.labels) == 10
    assert all(rel.startswith("images/train/") for rel in read.labels["rel_path"])
