"""Several reviewers' boxes of one batch: their agreement, what to adjudicate, and the consensus the
detector learns from; plus the boxes worth a second look (duplicates, tiny boxes).

A batch whose boxes name two or more reviewers (a COCO annotation's or a VOC object's ``reviewer``)
is compared image by image (``agreement.compare_reviews``: boxes matched by IoU, same class). The
detector trains on the consensus (boxes a majority drew, corners averaged); every reviewer's own
boxes stay in ``label_boxes`` beside it, and each disagreement is a row of ``box_disagreements`` for a
person to settle. Warnings (duplicate or tiny boxes) go to ``box_findings``: they do not block, a
pinhole can be real.
"""

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from resources.detect.agreement import CONSENSUS_REVIEWER, compare_reviews
from resources.detect.boxes import Box, BoxSet
from resources.detect.checks import Severity, check_boxes

__all__ = ["DEFAULT_REVIEWER", "ReviewedBoxes", "review_boxes"]

DEFAULT_REVIEWER = "default"


@dataclass
class ReviewedBoxes:
    """What the reviews say: each image's label per reviewer, the boxes to train on, the rest for people."""

    labels: dict[str, dict[str, str]]
    """image → reviewer → its most frequent box class (or the good class for no box)."""
    training: BoxSet
    """the consensus where several reviewers drew, else the one reviewer's boxes."""
    disagreements: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def _primary(boxes: list[Box], good_class: str) -> str:
    counts = Counter(box.class_name for box in boxes)
    return min(counts, key=lambda name: (-counts[name], name)) if counts else good_class


def _corners(box: Box | None) -> str:
    return "" if box is None else json.dumps([round(v, 2) for v in (box.x_min, box.y_min, box.x_max, box.y_max)])


def review_boxes(dataset: BoxSet, good_class: str) -> ReviewedBoxes:
    """Compare the reviewers of ``dataset`` (one reviewer: nothing to compare) and check its boxes."""
    reviewer_of = {id(box): box.reviewer or DEFAULT_REVIEWER for box in dataset.boxes}
    reviewers = sorted(set(reviewer_of.values())) or [DEFAULT_REVIEWER]
    findings = [
        {**finding.as_record(), "other_where": finding.as_record()["other_where"] or ""}
        for finding in check_boxes(dataset)
        if finding.severity is Severity.WARNING
    ]
    summary: dict[str, Any] = {"reviewers": reviewers, "warnings": dict(Counter(f["check"] for f in findings))}
    if len(reviewers) < 2:
        labels = {info.path: {reviewers[0]: _primary(list(dataset.boxes_for(info.path)), good_class)} for info in dataset.images}
        return ReviewedBoxes(labels=labels, training=dataset, findings=findings, summary=summary)
    reviews = {
        name: BoxSet(dataset.images, tuple(b for b in dataset.boxes if reviewer_of[id(b)] == name), dataset.class_names)
        for name in reviewers
    }
    report = compare_reviews(reviews)
    labels = {
        info.path: {name: _primary(list(reviews[name].boxes_for(info.path)), good_class) for name in reviewers}
        for info in dataset.images
    }
    disagreements = [
        {
            "image": item.image,
            "reviewer_a": item.reviewer_a,
            "class_a": item.box_a.class_name if item.box_a else "",
            "box_a": _corners(item.box_a),
            "reviewer_b": item.reviewer_b,
            "class_b": item.box_b.class_name if item.box_b else "",
            "box_b": _corners(item.box_b),
            "reason": str(item.reason),
            "iou": float(item.iou) if item.iou is not None else float("nan"),
        }
        for item in report.disagreements
    ]
    summary.update(
        agreement_f1=round(report.overall.f1, 4),
        per_class_f1={name: round(a.f1, 4) for name, a in report.per_class.items()},
        disagreements=len(disagreements),
        contested_images=len(report.contested_images),
        consensus_reviewer=CONSENSUS_REVIEWER,
    )
    return ReviewedBoxes(
        labels=labels, training=report.consensus, disagreements=disagreements, findings=findings, summary=summary
    )
