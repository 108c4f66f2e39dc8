"""The anomaly report's figures: per split, per type, the decision at the threshold, errors, overlays."""

import numpy as np
import pytest

from resources.anomaly.evaluation import anomaly_split_section, map_overlay, worst_anomaly_errors

CLASSES = ["good", "crack"]


def test_split_section_holds_image_pixel_and_decision_figures() -> None:
    y = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.6, 0.7, 0.9])
    maps = np.zeros((5, 8, 8), np.float32)
    masks = np.zeros((5, 8, 8), bool)
    masks[3, 2:4, 2:4] = masks[4, 5:7, 5:7] = True
    maps[3, 2:4, 2:4] = maps[4, 5:7, 5:7] = 1.0  # a perfect map
    has_mask = np.array([False, False, False, True, False])  # image 4's mask was quarantined
    section = anomaly_split_section(
        y_true=y, scores=scores, classes=CLASSES, good_class="good", threshold=0.65,
        maps=maps, masks=masks, has_mask=has_mask,
    )
    assert section["image_auroc"] == 1.0 and section["n_masked"] == 1
    assert section["pixel_auroc"] == 1.0 and section["pro"] == pytest.approx(1.0)
    assert section["false_reject_rate"] == 0.0 and section["escape_rate"] == 0.0 and section["accuracy"] == 1.0
    assert section["is_defect"] == [False, False, False, True, True]
    without = anomaly_split_section(y_true=y, scores=scores, classes=CLASSES, good_class="good", threshold=0.5)
    assert without["pixel_auroc"] is None and "maps are not evaluated on this split" in without["pixel_metrics_note"]
    assert without["false_reject_rate"] == pytest.approx(1 / 3) and without["accuracy"] == pytest.approx(0.8)


def test_worst_errors_put_escapes_and_false_rejects_first() -> None:
    y = np.array([0, 0, 1, 1])
    scores = np.array([0.2, 0.9, 0.3, 0.7])
    errors = worst_anomaly_errors(y, scores, CLASSES, "good", threshold=0.5, k=3)
    assert [(e["index"], e["correct"]) for e in errors] == [(1, False), (2, False), (3, True)]
    assert errors[0]["predicted"] == "defect" and errors[1]["predicted"] == "good"


def test_overlay_is_clear_below_the_floor_and_outlines_the_mask() -> None:
    image = np.full((8, 8, 3), 100, np.uint8)
    anomaly_map = np.zeros((8, 8), np.float32)
    anomaly_map[0, 0] = 2.0
    mask = np.zeros((8, 8), bool)
    mask[3:6, 3:6] = True
    out = map_overlay(image, anomaly_map, threshold=1.0, floor=0.5, mask=mask)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert tuple(out[7, 7]) == (100, 100, 100)  # under the floor: untouched
    assert out[0, 0, 0] > 150 and out[0, 0, 1] < 50  # over the threshold: red (alpha 0.6)
    assert tuple(out[3, 3]) == (0, 255, 0) and tuple(out[4, 4]) == (100, 100, 100)  # outline only
