"""Reviewer agreement: matching, agreement figures, disagreements with reasons, majority consensus."""

import pyarrow as pa
import pytest

from resources.detect.agreement import (
    CONSENSUS_REVIEWER,
    DisagreementReason,
    compare_reviews,
    match_boxes,
)
from resources.detect.boxes import Box, BoxSet, ImageInfo, split_by_reviewer
from resources.detect.errors import BoxSetError

IMAGES = (ImageInfo("a.png", 100, 100), ImageInfo("b.png", 100, 100), ImageInfo("good.png", 50, 50))
NAMES = ("dent", "pit")


def review(reviewer: str, *boxes: tuple[str, str, float, float, float, float], images=IMAGES) -> BoxSet:
    return BoxSet(images, tuple(Box(i, c, x0, y0, x1, y1, reviewer=reviewer) for i, c, x0, y0, x1, y1 in boxes), NAMES)


def test_identical_reviews_agree_fully_and_good_parts_count_as_agreement() -> None:
    boxes = (("a.png", "dent", 10, 10, 30, 30), ("b.png", "pit", 50, 50, 60, 60))
    report = compare_reviews({"ann": review("ann", *boxes), "bob": review("bob", *boxes)})
    assert report.overall.jaccard == 1.0 and report.overall.f1 == 1.0
    assert report.per_image["good.png"].jaccard == 1.0  # both say: no defect
    assert report.disagreements == () and report.contested_images == ()
    assert [b.corners for b in report.consensus.boxes] == [(10, 10, 30, 30), (50, 50, 60, 60)]
    assert report.consensus.boxes_for("good.png") == ()


def test_unmatched_class_differs_and_low_iou() -> None:
    ann = review("ann", ("a.png", "dent", 10, 10, 30, 30), ("a.png", "dent", 60, 60, 80, 80),
                 ("b.png", "dent", 10, 10, 20, 20), ("b.png", "pit", 70, 70, 90, 90))
    bob = review("bob", ("a.png", "pit", 10, 10, 30, 30), ("a.png", "dent", 65, 65, 85, 85))
    report = compare_reviews({"ann": ann, "bob": bob})
    reasons = {(d.image, d.reason): d for d in report.disagreements}
    assert reasons[("a.png", DisagreementReason.CLASS_DIFFERS)].box_b.class_name == "pit"
    low = reasons[("a.png", DisagreementReason.LOW_IOU)]
    assert low.iou == pytest.approx(225 / 575)
    missing = [d for d in report.disagreements if d.reason is DisagreementReason.UNMATCHED]
    assert {(d.image, d.box_b) for d in missing} == {("b.png", None)} and len(missing) == 2
    assert "bob drew nothing there" in missing[0].message and "adjudicate" in missing[0].message
    assert report.per_image["a.png"].matched == 0 and report.per_image["a.png"].union == 4
    assert report.per_class["dent"].boxes == 4 and report.per_class["pit"].boxes == 2
    assert report.disagreements[0].as_record()["reviewer_a"] == "ann"


def test_agreement_figures() -> None:
    ann = review("ann", ("a.png", "dent", 0, 0, 10, 10), ("a.png", "dent", 20, 20, 30, 30),
                 ("a.png", "pit", 50, 50, 60, 60))
    bob = review("bob", ("a.png", "dent", 0, 0, 10, 10), ("a.png", "dent", 20, 20, 30, 30))
    report = compare_reviews({"ann": ann, "bob": bob})
    image = report.per_image["a.png"]
    assert (image.matched, image.boxes, image.union) == (2, 5, 3)
    assert image.jaccard == pytest.approx(2 / 3) and image.f1 == pytest.approx(4 / 5)
    assert report.per_class["dent"].jaccard == 1.0 and report.per_class["pit"].jaccard == 0.0


def test_hungarian_finds_more_matches_than_greedy() -> None:
    """Greedy takes the best pair first and strands the other box; the assignment matches both."""
    a = [Box("a.png", "dent", 5, 0, 15, 10), Box("a.png", "dent", 2, 0, 12, 10)]
    b = [Box("a.png", "dent", 5, 0, 15, 10), Box("a.png", "dent", 8, 0, 18, 10)]
    assert len(match_boxes(a, b, method="greedy")) == 1
    matches = match_boxes(a, b, method="hungarian")
    assert sorted((i, j) for i, j, _ in matches) == [(0, 1), (1, 0)]
    assert all(iou >= 0.5 for _, _, iou in matches)


def test_matching_requires_the_same_class_and_the_threshold() -> None:
    a = [Box("a.png", "dent", 0, 0, 10, 10)]
    assert match_boxes(a, [Box("a.png", "pit", 0, 0, 10, 10)]) == []
    assert match_boxes(a, [Box("a.png", "pit", 0, 0, 10, 10)], same_class=False)[0][2] == 1.0
    assert match_boxes(a, [Box("a.png", "dent", 0, 0, 10, 5)], iou_threshold=0.6) == []
    with pytest.raises(BoxSetError, match="choose 'hungarian' or 'greedy'"):
        match_boxes(a, a, method="best")  # type: ignore[arg-type]


def test_majority_consensus_averages_corners() -> None:
    ann = review("ann", ("a.png", "dent", 10, 10, 30, 30), ("a.png", "pit", 70, 70, 80, 80))
    bob = review("bob", ("a.png", "dent", 12, 10, 32, 30))
    cat = review("cat", ("a.png", "dent", 14, 13, 34, 33))
    report = compare_reviews({"ann": ann, "bob": bob, "cat": cat})
    (dent,) = report.consensus.boxes  # the pit has 1 of 3 votes
    assert dent.corners == pytest.approx((12, 11, 32, 31))
    assert (dent.reviewer, dent.score, dent.source_item) == (CONSENSUS_REVIEWER, 1.0, "3 of 3 reviewers")
    assert report.contested_images == ("a.png",)
    two_of_three = compare_reviews({"ann": ann, "bob": review("bob", ("a.png", "pit", 70, 70, 80, 80)),
                                    "cat": cat})
    assert {(b.class_name, b.score) for b in two_of_three.consensus.boxes} == {("dent", 2 / 3), ("pit", 2 / 3)}


def test_ties_are_dropped_unless_kept_and_always_contested() -> None:
    reviews = {"ann": review("ann", ("a.png", "dent", 10, 10, 30, 30)), "bob": review("bob")}
    dropped = compare_reviews(reviews)
    assert dropped.consensus.boxes == () and dropped.contested_images == ("a.png",)
    kept = compare_reviews(reviews, keep_ties=True)
    assert [b.score for b in kept.consensus.boxes] == [0.5] and kept.contested_images == ("a.png",)


def test_image_seen_by_one_reviewer_passes_through_and_is_not_compared() -> None:
    only_ann = ImageInfo("c.png", 20, 20)
    ann = BoxSet((*IMAGES, only_ann), (Box("c.png", "dent", 1, 1, 9, 9, reviewer="ann"),), NAMES)
    report = compare_reviews({"ann": ann, "bob": review("bob")})
    assert "c.png" not in report.per_image
    assert report.consensus.boxes_for("c.png")[0].source_item == "1 of 1 reviewers"


def test_reviewers_must_agree_on_image_size() -> None:
    other = review("bob", images=(ImageInfo("a.png", 90, 100),))
    with pytest.raises(BoxSetError, match="a.png is 100x100 for one reviewer and 90x100 for bob"):
        compare_reviews({"ann": review("ann"), "bob": other})


def test_from_a_label_boxes_table() -> None:
    ann = review("ann", ("a.png", "dent", 10, 10, 30, 30))
    bob = review("bob", ("a.png", "dent", 11, 10, 31, 30))
    table = pa.concat_tables([ann.to_arrow(reviewer="ann"), bob.to_arrow(reviewer="bob")])
    report = compare_reviews(split_by_reviewer(table))
    assert report.reviewers == ("ann", "bob") and report.overall.jaccard == 1.0
    assert report.consensus.class_names == NAMES


def test_parameters_are_checked() -> None:
    with pytest.raises(BoxSetError, match="pair_min_iou <= iou_threshold"):
        compare_reviews({"ann": review("ann")}, iou_threshold=0.3, pair_min_iou=0.4)
