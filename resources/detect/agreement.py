"""Reviewer agreement on boxes: matching, agreement per image and per class, disagreements to
adjudicate, and a majority consensus.

Input is one :class:`BoxSet` per reviewer (each reviewer's own export, or ``split_by_reviewer`` of a
``label_boxes`` table), because "reviewer R saw this image and found nothing" must be told apart from
"R never saw it": an image is reviewed by R when it is listed in R's set, boxes or not.

**Matching.** On each image, every pair of reviewers is matched one-to-one: two boxes may match only if
they have the same class and IoU >= ``iou_threshold``; among the allowed pairings the one with the most
matches, then the highest total IoU, is taken (Hungarian, ``scipy.optimize.linear_sum_assignment``;
greedy by IoU without scipy). **Agreement** of a set of reviewer pairs is ``matched / union`` where
``union = boxes_a + boxes_b - matched`` (Jaccard over boxes), with ``f1 = 2·matched / (boxes_a + boxes_b)``
alongside; when nobody drew a box both are 1.0 (everyone agrees the part is good).

**Disagreements.** Boxes left unmatched are paired again across classes by IoU (>= ``pair_min_iou``):
such a pair is ``class_differs`` (overlap >= the threshold, other class) or ``low_iou`` (overlap below
the threshold, whatever the classes); a box with no such partner is ``unmatched`` (the other reviewer
drew nothing there).

**Consensus.** Per image, reviewers in name order add their boxes to clusters (each box joins the
best-matching cluster of its class that has no box of that reviewer yet, by the same rule, against the
cluster's mean box). A cluster backed by a strict majority of the image's reviewers becomes one box with
averaged corners, ``reviewer="consensus"`` and ``score`` = the share of reviewers backing it. A **tie**
(exactly half, e.g. 1 of 2) is not a majority: it is dropped unless ``keep_ties=True``, and either way the
image is listed in ``contested_images``: it needs adjudication, since training on it with a disputed
defect dropped would teach that the defect is good. An image seen by one reviewer passes through as is.
"""

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import combinations
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from resources.detect.boxes import Box, BoxSet, ImageInfo
from resources.detect.errors import BoxSetError
from resources.detect.iou import box_array, iou_matrix

__all__ = [
    "CONSENSUS_REVIEWER",
    "Agreement",
    "AgreementReport",
    "Disagreement",
    "DisagreementReason",
    "compare_reviews",
    "match_boxes",
]

logger = logging.getLogger(__name__)

CONSENSUS_REVIEWER = "consensus"
MatchMethod = Literal["hungarian", "greedy"]


class DisagreementReason(StrEnum):
    UNMATCHED = "unmatched"
    CLASS_DIFFERS = "class_differs"
    LOW_IOU = "low_iou"


@dataclass(frozen=True)
class Agreement:
    """Matched pairs and boxes over some reviewer pairs; ``jaccard`` and ``f1`` derive from them."""

    matched: int = 0
    boxes: int = 0  # boxes_a + boxes_b summed over the compared reviewer pairs

    @property
    def union(self) -> int:
        return self.boxes - self.matched

    @property
    def jaccard(self) -> float:
        return self.matched / self.union if self.union else 1.0

    @property
    def f1(self) -> float:
        return 2 * self.matched / self.boxes if self.boxes else 1.0

    def __add__(self, other: "Agreement") -> "Agreement":
        return Agreement(self.matched + other.matched, self.boxes + other.boxes)


@dataclass(frozen=True)
class Disagreement:
    """One box two reviewers disagree on; ``box_a`` or ``box_b`` is None when that reviewer drew nothing."""

    image: str
    reviewer_a: str
    box_a: Box | None
    reviewer_b: str
    box_b: Box | None
    reason: DisagreementReason
    iou: float | None = None

    @property
    def message(self) -> str:
        def say(reviewer: str, box: Box | None) -> str:
            if box is None:
                return f"{reviewer} drew nothing there"
            return f"{reviewer} drew {box.class_name!r} at ({box.x_min:g}, {box.y_min:g}, {box.x_max:g}, {box.y_max:g})"

        iou = f", IoU {self.iou:.2f}" if self.iou is not None else ""
        return (f"{self.image}: {say(self.reviewer_a, self.box_a)}; {say(self.reviewer_b, self.box_b)} "
                f"({self.reason}{iou}); adjudicate")

    def as_record(self) -> dict[str, Any]:
        """A flat row for an adjudication table."""
        def corners(box: Box | None) -> list[float] | None:
            return list(box.corners) if box is not None else None

        return {
            "image": self.image, "reason": self.reason.value, "iou": self.iou,
            "reviewer_a": self.reviewer_a, "class_a": self.box_a.class_name if self.box_a else None,
            "box_a": corners(self.box_a), "reviewer_b": self.reviewer_b,
            "class_b": self.box_b.class_name if self.box_b else None, "box_b": corners(self.box_b),
        }


@dataclass(frozen=True)
class AgreementReport:
    """What ``compare_reviews`` finds; ``per_image`` covers images seen by two or more reviewers."""

    reviewers: tuple[str, ...]
    per_image: dict[str, Agreement]
    per_class: dict[str, Agreement]
    overall: Agreement
    disagreements: tuple[Disagreement, ...]
    consensus: BoxSet
    contested_images: tuple[str, ...]


def match_boxes(
    a: Sequence[Box],
    b: Sequence[Box],
    *,
    iou_threshold: float = 0.5,
    same_class: bool = True,
    method: MatchMethod = "hungarian",
) -> list[tuple[int, int, float]]:
    """One-to-one matches ``(index in a, index in b, IoU)`` between two reviewers' boxes of one image."""
    if not a or not b:
        return []
    ious = iou_matrix(box_array(a), box_array(b))
    allowed = ious >= iou_threshold
    if same_class:
        allowed &= np.array([[x.class_name == y.class_name for y in b] for x in a], dtype=bool)
    return _assign(ious, allowed, method)


def compare_reviews(
    reviews: Mapping[str, BoxSet],
    *,
    iou_threshold: float = 0.5,
    pair_min_iou: float = 0.1,
    keep_ties: bool = False,
    method: MatchMethod = "hungarian",
) -> AgreementReport:
    """Agreement, disagreements and consensus of several reviewers (see the module doc)."""
    if not 0 < iou_threshold <= 1 or not 0 < pair_min_iou <= iou_threshold:
        raise BoxSetError(f"need 0 < pair_min_iou <= iou_threshold <= 1, got {pair_min_iou}, {iou_threshold}")
    names = tuple(sorted(reviews))
    images = _image_infos(reviews)
    per_image: dict[str, Agreement] = {}
    per_class: dict[str, Agreement] = {}
    disagreements: list[Disagreement] = []
    consensus_boxes: list[Box] = []
    contested: list[str] = []
    for path in images:
        seen_by = [n for n in names if reviews[n].has_image(path)]
        boxes = {n: reviews[n].boxes_for(path) for n in seen_by}
        if len(seen_by) >= 2:
            total = Agreement()
            for ra, rb in combinations(seen_by, 2):
                pair, classes, found = _compare_pair(path, ra, boxes[ra], rb, boxes[rb],
                                                     iou_threshold, pair_min_iou, method)
                total += pair
                disagreements.extend(found)
                for name, counts in classes.items():
                    per_class[name] = per_class.get(name, Agreement()) + counts
            per_image[path] = total
        kept, disputed = _consensus(path, seen_by, boxes, iou_threshold, keep_ties, method)
        consensus_boxes.extend(kept)
        if disputed:
            contested.append(path)
    overall = sum(per_image.values(), Agreement())
    class_names = _class_names(reviews)
    consensus = BoxSet.build(images.values(), consensus_boxes, class_names)
    logger.info("%d reviewers, %d images compared: agreement %.3f (F1 %.3f), %d disagreements, %d contested",
                len(names), len(per_image), overall.jaccard, overall.f1, len(disagreements), len(contested))
    return AgreementReport(names, per_image, dict(sorted(per_class.items())), overall, tuple(disagreements),
                           consensus, tuple(contested))


# ---------------------------------------------------------------------------------------- internals


def _assign(
    ious: npt.NDArray[np.float64], allowed: npt.NDArray[np.bool_], method: MatchMethod
) -> list[tuple[int, int, float]]:
    """Most allowed matches, then most total IoU: a match is worth more than any IoU gain."""
    if not allowed.any():
        return []
    if method == "hungarian":
        try:
            from scipy.optimize import linear_sum_assignment
        except ImportError:  # pragma: no cover - scipy is in the lock; the fallback keeps the module usable
            logger.warning("scipy is not installed: matching boxes greedily by IoU")
            method = "greedy"
        else:
            weight = float(min(ious.shape) + 1)
            cost = np.where(allowed, -(weight + ious), 0.0)
            rows, cols = linear_sum_assignment(cost)
            return [(int(i), int(j), float(ious[i, j])) for i, j in zip(rows, cols) if allowed[i, j]]
    if method != "greedy":
        raise BoxSetError(f"unknown matching method {method!r}; choose 'hungarian' or 'greedy'")
    pairs = sorted(zip(*np.nonzero(allowed)), key=lambda ij: -ious[ij])
    used_a: set[int] = set()
    used_b: set[int] = set()
    out = []
    for i, j in pairs:
        if i not in used_a and j not in used_b:
            used_a.add(int(i))
            used_b.add(int(j))
            out.append((int(i), int(j), float(ious[i, j])))
    return out


def _compare_pair(
    image: str, ra: str, a: Sequence[Box], rb: str, b: Sequence[Box],
    iou_threshold: float, pair_min_iou: float, method: MatchMethod,
) -> tuple[Agreement, dict[str, Agreement], list[Disagreement]]:
    matches = match_boxes(a, b, iou_threshold=iou_threshold, method=method)
    classes: dict[str, Agreement] = {}
    for box in (*a, *b):
        classes[box.class_name] = classes.get(box.class_name, Agreement()) + Agreement(0, 1)
    for i, _, _ in matches:
        classes[a[i].class_name] += Agreement(1, 0)
    left_a = [i for i in range(len(a)) if i not in {m[0] for m in matches}]
    left_b = [j for j in range(len(b)) if j not in {m[1] for m in matches}]
    found: list[Disagreement] = []
    explained = match_boxes([a[i] for i in left_a], [b[j] for j in left_b],
                            iou_threshold=pair_min_iou, same_class=False, method=method)
    for i, j, iou in explained:
        box_a, box_b = a[left_a[i]], b[left_b[j]]
        same = box_a.class_name == box_b.class_name
        reason = DisagreementReason.LOW_IOU if same or iou < iou_threshold else DisagreementReason.CLASS_DIFFERS
        found.append(Disagreement(image, ra, box_a, rb, box_b, reason, iou))
    paired_a = {left_a[i] for i, _, _ in explained}
    paired_b = {left_b[j] for _, j, _ in explained}
    found.extend(Disagreement(image, ra, a[i], rb, None, DisagreementReason.UNMATCHED)
                 for i in left_a if i not in paired_a)
    found.extend(Disagreement(image, ra, None, rb, b[j], DisagreementReason.UNMATCHED)
                 for j in left_b if j not in paired_b)
    return Agreement(len(matches), len(a) + len(b)), classes, found


def _consensus(
    image: str, seen_by: Sequence[str], boxes: Mapping[str, Sequence[Box]],
    iou_threshold: float, keep_ties: bool, method: MatchMethod,
) -> tuple[list[Box], bool]:
    """Consensus boxes of one image and whether any cluster lacked a strict majority."""
    clusters: list[list[Box]] = []
    for reviewer in seen_by:
        means = [_mean_box(image, members) for members in clusters]
        mine = list(boxes[reviewer])
        matches = match_boxes(means, mine, iou_threshold=iou_threshold, method=method)
        for cluster_index, box_index, _ in matches:
            clusters[cluster_index].append(mine[box_index])
        matched = {m[1] for m in matches}
        clusters.extend([box] for k, box in enumerate(mine) if k not in matched)
    voters = len(seen_by)
    kept: list[Box] = []
    disputed = False
    for members in clusters:
        support = len(members)
        majority = 2 * support > voters
        tie = 2 * support == voters
        disputed |= not majority
        if majority or (tie and keep_ties):
            mean = _mean_box(image, members)
            kept.append(Box(image, mean.class_name, *mean.corners, reviewer=CONSENSUS_REVIEWER,
                            score=support / voters, source_item=f"{support} of {voters} reviewers"))
    return kept, disputed


def _mean_box(image: str, members: Sequence[Box]) -> Box:
    x_min, y_min, x_max, y_max = (float(v) for v in box_array(members).mean(axis=0))
    return Box(image, members[0].class_name, x_min, y_min, x_max, y_max)


def _image_infos(reviews: Mapping[str, BoxSet]) -> dict[str, ImageInfo]:
    """Every image any reviewer saw; reviewers must agree on its size (they saw the same file)."""
    infos: dict[str, ImageInfo] = {}
    for name in sorted(reviews):
        for info in reviews[name].images:
            known = infos.setdefault(info.path, ImageInfo(info.path, info.width, info.height))
            if (known.width, known.height) != (info.width, info.height):
                raise BoxSetError(
                    f"image {info.path} is {known.width}x{known.height} for one reviewer and "
                    f"{info.width}x{info.height} for {name}; they labelled different files: re-export from one"
                )
    return dict(sorted(infos.items()))


def _class_names(reviews: Mapping[str, BoxSet]) -> tuple[str, ...]:
    """The reviewers' common class list, or the sorted union when their lists differ."""
    lists = {review.class_names for review in reviews.values()}
    if len(lists) == 1:
        return next(iter(lists))
    return tuple(sorted({name for names in lists for name in names}))
