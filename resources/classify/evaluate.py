"""The classifier's report sections: the threshold from validation, the figures on test.

Test-split accuracy, per-class precision/recall and the confusion matrix; for the good-vs-defect
decision, the false-reject and escape rates at an operating threshold calibrated on validation
(default target: zero escapes, then the lowest false-reject rate), counted in near-copy groups for
their intervals. Pure: probabilities in, report sections out.
"""

from dataclasses import asdict
from typing import Any

import numpy as np

__all__ = ["classification_sections", "split_section"]


def split_section(
    probabilities: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    good_class: str | None,
    threshold: float | None,
    groups: np.ndarray | None,
) -> dict[str, Any]:
    """The classifier's figures on one split plus the decision rates every task reports (their
    intervals counted in near-duplicate ``groups`` when given)."""
    from resources.reporting.metrics import RATE_KEYS, classification_metrics, decision_rates, defect_scores, roc_points

    section = classification_metrics(labels, probabilities, classes)
    if good_class is not None:
        scores = defect_scores(probabilities, classes, good_class)
        is_defect = labels != list(classes).index(good_class)
        section["decision"] = decision_rates(scores, is_defect, threshold, groups)
        section.update({key: section["decision"][key] for key in RATE_KEYS})
        section["roc"] = roc_points(scores, is_defect)
        section["defect_scores"] = [round(float(v), 6) for v in scores]
        section["is_defect"] = [bool(v) for v in is_defect]
    else:
        section.update(dict.fromkeys(RATE_KEYS))
    return section


def classification_sections(
    *,
    classes: list[str],
    good_class: str | None,
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    max_escape_rate: float,
    gallery_size: int,
    groups: dict[str, np.ndarray | None] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """(report sections, notes) from validation and test probabilities: ``val`` and ``test`` are
    (probabilities, class indices); ``groups`` holds each split's near-duplicate group ids."""
    from resources.reporting.metrics import calibrate_threshold, defect_scores, threshold_setters, worst_errors

    notes: list[str] = []
    calibration = None
    set_by: list[dict] = []
    if good_class is not None:
        val_scores = defect_scores(val[0], classes, good_class)
        val_defect = val[1] != classes.index(good_class)
        calibration = asdict(calibrate_threshold(val_scores, val_defect, max_escape_rate=max_escape_rate))
        set_by = [{**row, "true": classes[val[1][row["index"]]]} for row in threshold_setters(val_scores, val_defect)]
    else:
        notes.append(
            "No class is marked good (--good-class), so every class is a defect type: false-reject and "
            "escape rates are not computed and no operating threshold is calibrated."
        )
    threshold = calibration["threshold"] if calibration else None
    groups = groups or {}
    sections = {
        "threshold": calibration,
        "val": split_section(val[0], val[1], classes, good_class, threshold, groups.get("val")),
        "test": split_section(test[0], test[1], classes, good_class, threshold, groups.get("test")),
        "worst_errors": worst_errors(test[1], test[0], classes, k=gallery_size),
        "threshold_set_by": set_by,
    }
    return sections, notes
