"""Geometry checks for a dataset of boxes, each a pure function returning findings.

Severity says what a finding does to training:

* ``blocking``: a model would learn something wrong: a box outside its image, a box of zero or negative
  area, a class outside the taxonomy. A dataset with a blocking finding should not be trained on.
* ``warning``: worth a reviewer's look but not wrong by itself: duplicate boxes (the same reviewer drew
  the same defect twice: it counts double in the loss) and tiny boxes (often a misclick, sometimes a
  real pinhole, so never blocking).

Readers already quarantine boxes outside the image or without area; these checks exist for boxes that
came another way (a table, a model's pre-labels, a merged set) and to gate any dataset the same way.
A check never raises for bad boxes: it reports every one, because a team fixes a batch in one pass only
when it sees all of it.
"""

import math
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from resources.detect.boxes import Box, BoxSet
from resources.detect.errors import DetectLabelError
from resources.detect.iou import box_array, iou_matrix

__all__ = [
    "CheckThresholds",
    "Finding",
    "Severity",
    "blocking",
    "boxes_have_area",
    "boxes_inside_image",
    "check_boxes",
    "classes_known",
    "duplicate_boxes",
    "tiny_boxes",
]

# IoU at or above which two boxes are called exact duplicates rather than near duplicates.
_EXACT_IOU = 1.0 - 1e-9


class Severity(StrEnum):
    BLOCKING = "blocking"
    WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    """One box (or pair of boxes) a check flags; ``message`` names where, what and the fix."""

    check: str
    severity: Severity
    image: str
    box: Box
    message: str
    other: Box | None = None

    def as_record(self) -> dict[str, Any]:
        """A flat row for a findings table or Dagster metadata."""
        return {
            "check": self.check,
            "severity": self.severity.value,
            "image": self.image,
            "class_name": self.box.class_name,
            "where": self.box.where,
            "other_where": self.other.where if self.other is not None else None,
            "message": self.message,
        }


@dataclass(frozen=True)
class CheckThresholds:
    """The knobs of the checks. ``min_area_fraction`` is a fraction of the image area (1e-4 = 0.01 %)."""

    tolerance_px: float = 1.0
    duplicate_iou: float = 0.9
    min_side_px: float = 4.0
    min_area_fraction: float = 1e-4

    def __post_init__(self) -> None:
        bad = []
        if not (math.isfinite(self.tolerance_px) and self.tolerance_px >= 0):
            bad.append(f"tolerance_px={self.tolerance_px} (needs >= 0)")
        if not 0 < self.duplicate_iou <= 1:
            bad.append(f"duplicate_iou={self.duplicate_iou} (needs 0 < x <= 1)")
        if not (math.isfinite(self.min_side_px) and self.min_side_px >= 0):
            bad.append(f"min_side_px={self.min_side_px} (needs >= 0)")
        if not 0 <= self.min_area_fraction < 1:
            bad.append(f"min_area_fraction={self.min_area_fraction} (needs 0 <= x < 1)")
        if bad:
            raise DetectLabelError(f"check thresholds out of range: {', '.join(bad)}; fix the settings")


def check_boxes(
    dataset: BoxSet,
    *,
    known_classes: Collection[str] | None = None,
    thresholds: CheckThresholds | None = None,
) -> list[Finding]:
    """Every check on ``dataset``, blocking findings first. ``known_classes`` is the variant's taxonomy;
    by default the set's own ``class_names`` (which a reader fills from the file's class list)."""
    limits = thresholds or CheckThresholds()
    findings = [
        *boxes_inside_image(dataset, tolerance_px=limits.tolerance_px),
        *boxes_have_area(dataset),
        *classes_known(dataset, known_classes if known_classes is not None else dataset.class_names),
        *duplicate_boxes(dataset, min_iou=limits.duplicate_iou),
        *tiny_boxes(dataset, min_side_px=limits.min_side_px, min_area_fraction=limits.min_area_fraction),
    ]
    return sorted(findings, key=lambda f: f.severity != Severity.BLOCKING)


def blocking(findings: Sequence[Finding]) -> list[Finding]:
    """The findings that should stop training."""
    return [f for f in findings if f.severity == Severity.BLOCKING]


def boxes_inside_image(dataset: BoxSet, *, tolerance_px: float = 1.0) -> list[Finding]:
    """Boxes reaching outside ``[0, width] × [0, height]`` by more than ``tolerance_px`` (blocking: the
    model would be told a defect is where there is no image)."""
    findings = []
    for box in dataset.boxes:
        info = dataset.image(box.image)
        overhang = max(-box.x_min, -box.y_min, box.x_max - info.width, box.y_max - info.height)
        if overhang > tolerance_px:
            findings.append(Finding(
                "inside_image", Severity.BLOCKING, box.image, box,
                f"{box.where}: box of class {box.class_name!r} lies outside the {info.width}x{info.height} image "
                f"by {overhang:g} px (tolerance {tolerance_px:g}); redraw it inside the image",
            ))
    return findings


def boxes_have_area(dataset: BoxSet) -> list[Finding]:
    """Boxes of zero or negative width or height (blocking: no pixels to learn from, or swapped corners)."""
    return [
        Finding("positive_area", Severity.BLOCKING, box.image, box,
                f"{box.where}: box of class {box.class_name!r} is {box.width:g} x {box.height:g} px; "
                "redraw it (corners swapped?) or delete it")
        for box in dataset.boxes
        if box.width <= 0 or box.height <= 0
    ]


def classes_known(dataset: BoxSet, known_classes: Collection[str]) -> list[Finding]:
    """Boxes whose class is not in ``known_classes`` (blocking: the model would get a class nobody
    asked for, or lose a defect to a typo)."""
    known = set(known_classes)
    choices = ", ".join(sorted(known)) or "none"
    return [
        Finding("known_class", Severity.BLOCKING, box.image, box,
                f"{box.where}: class {box.class_name!r} is not in the taxonomy ({choices}); "
                "rename it in the labelling tool or add the class to the variant")
        for box in dataset.boxes
        if box.class_name not in known
    ]


def duplicate_boxes(dataset: BoxSet, *, min_iou: float = 0.9) -> list[Finding]:
    """Pairs of boxes on one image with the same class and the same reviewer overlapping with
    IoU >= ``min_iou`` (warning). Boxes of different reviewers are agreement, not duplicates."""
    groups: dict[tuple[str, str, str | None], list[Box]] = defaultdict(list)
    for box in dataset.boxes:
        groups[(box.image, box.class_name, box.reviewer)].append(box)
    findings = []
    for (image, class_name, _), boxes in groups.items():
        if len(boxes) < 2:
            continue
        ious = iou_matrix(box_array(boxes), box_array(boxes))
        rows, cols = np.nonzero(np.triu(ious >= min_iou, k=1))
        for i, j in zip(rows.tolist(), cols.tolist()):
            iou = float(ious[i, j])
            kind = "exact duplicate" if iou >= _EXACT_IOU else f"near duplicate (IoU {iou:.2f})"
            findings.append(Finding(
                "duplicate", Severity.WARNING, image, boxes[j],
                f"{boxes[j].where}: {kind} of {boxes[i].where} (class {class_name!r}); delete one of the two",
                other=boxes[i],
            ))
    return findings


def tiny_boxes(dataset: BoxSet, *, min_side_px: float = 4.0, min_area_fraction: float = 1e-4) -> list[Finding]:
    """Boxes with a side under ``min_side_px`` or an area under ``min_area_fraction`` of the image
    (warning: often a misclick; a real pinhole defect is confirmed, not deleted). Boxes without area
    are left to ``boxes_have_area``."""
    findings = []
    for box in dataset.boxes:
        if box.width <= 0 or box.height <= 0:
            continue
        info = dataset.image(box.image)
        fraction = box.area / (info.width * info.height)
        if min(box.width, box.height) < min_side_px or fraction < min_area_fraction:
            findings.append(Finding(
                "tiny", Severity.WARNING, box.image, box,
                f"{box.where}: box of class {box.class_name!r} is tiny ({box.width:g} x {box.height:g} px, "
                f"{fraction:.4%} of the image; limits {min_side_px:g} px, {min_area_fraction:.4%}); "
                "confirm it is a real defect or delete it",
            ))
    return findings
