"""Hand-computed cases for resources.reporting.metrics (pure functions, no Dagster)."""

import json
import math

import numpy as np
import pytest

from resources.reporting.metrics import (
    ThresholdCalibration,
    calibrate_threshold,
    classification_metrics,
    decision_rates,
    defect_scores,
    roc_points,
    threshold_setters,
    worst_errors,
)

# Nine validation images. Sorted by score:
#   0.10 g, 0.20 g, 0.30 g, 0.45 D, 0.50 g, 0.60 D, 0.70 g, 0.80 D, 0.90 D
SCORES = np.array([0.1, 0.2, 0.3, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9])
IS_DEFECT = np.array([False, False, False, True, False, True, False, True, True])


# ---------------------------------------------------------------- calibrate_threshold


def test_zero_escapes_picks_highest_threshold_at_midpoint() -> None:
    cal = calibrate_threshold(SCORES, IS_DEFECT)
    # The lowest defect (0.45) must be rejected; the next lower score is 0.30 -> midpoint 0.375.
    assert cal.threshold == pytest.approx(0.375)
    assert cal.escape_rate == 0.0
    # Good parts at 0.50 and 0.70 are rejected: 2 of 5.
    assert cal.false_reject_rate == pytest.approx(0.4)
    assert (cal.n_good, cal.n_defect, cal.max_escape_rate) == (5, 4, 0.0)
    assert "midpoint" in cal.method


def test_allowing_a_quarter_of_escapes_raises_the_threshold() -> None:
    strict = calibrate_threshold(SCORES, IS_DEFECT, max_escape_rate=0.0)
    loose = calibrate_threshold(SCORES, IS_DEFECT, max_escape_rate=0.25)
    # One of four defects may escape: 0.45 passes, 0.60 must be rejected; next lower score 0.50.
    assert loose.threshold == pytest.approx(0.55)
    assert loose.threshold > strict.threshold
    assert loose.escape_rate == pytest.approx(0.25)
    assert loose.false_reject_rate == pytest.approx(0.2)  # only the good part at 0.70
    assert loose.false_reject_rate < strict.false_reject_rate


def test_ceiling_below_one_escape_allows_none() -> None:
    # 0.2 * 4 defects = 0.8 escapes -> 0 allowed: same as a zero target.
    assert calibrate_threshold(SCORES, IS_DEFECT, max_escape_rate=0.2).threshold == pytest.approx(0.375)


def test_separable_scores_give_zero_false_rejects() -> None:
    cal = calibrate_threshold(np.array([0.1, 0.2, 0.3, 0.7, 0.8]), np.array([0, 0, 0, 1, 1]))
    assert cal.threshold == pytest.approx(0.5)
    assert cal.false_reject_rate == 0.0
    assert cal.escape_rate == 0.0


def test_threshold_never_sits_on_a_defect_score_and_matches_decision_rates() -> None:
    cal = calibrate_threshold(SCORES, IS_DEFECT, max_escape_rate=0.25)
    assert cal.threshold not in set(SCORES[IS_DEFECT].tolist())
    rates = decision_rates(SCORES, IS_DEFECT, cal.threshold)
    assert rates["escape_rate"] == cal.escape_rate
    assert rates["false_reject_rate"] == cal.false_reject_rate


def test_tied_good_and_defect_scores_are_rejected_together() -> None:
    cal = calibrate_threshold(np.array([0.1, 0.5, 0.5, 0.9]), np.array([0, 0, 1, 1]))
    assert cal.threshold == pytest.approx(0.3)
    assert cal.escape_rate == 0.0
    assert cal.false_reject_rate == pytest.approx(0.5)


def test_no_score_below_the_defect_puts_threshold_on_it() -> None:
    cal = calibrate_threshold(np.array([0.2, 0.5, 0.6]), np.array([1, 0, 0]))
    assert cal.threshold == pytest.approx(0.2)
    assert cal.false_reject_rate == 1.0
    assert "every validation part is rejected" in cal.method


def test_fractional_ceiling_counts_escapes_exactly() -> None:
    # 0.29 * 100 is 28.999999999999996 in floating point; 29 escapes are still allowed.
    scores = np.concatenate([np.arange(100, dtype=float), [-1.0]])
    is_defect = np.array([True] * 100 + [False])
    cal = calibrate_threshold(scores, is_defect, max_escape_rate=0.29)
    assert cal.threshold == pytest.approx(28.5)
    assert cal.escape_rate == pytest.approx(0.29)


@pytest.mark.parametrize(
    ("is_defect", "missing"), [([0, 0, 0], "defective"), ([1, 1, 1], "good")]
)
def test_one_sided_calibration_set_is_an_error(is_defect: list[int], missing: str) -> None:
    with pytest.raises(ValueError, match="needs both good and defective") as exc:
        calibrate_threshold(np.array([0.1, 0.5, 0.9]), np.array(is_defect))
    assert f"Add labelled {missing} images" in str(exc.value)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_escape_ceiling_out_of_range_is_an_error(rate: float) -> None:
    with pytest.raises(ValueError, match=r"max_escape_rate must be in \[0, 1\)"):
        calibrate_threshold(SCORES, IS_DEFECT, max_escape_rate=rate)


def test_bad_inputs_are_errors() -> None:
    with pytest.raises(ValueError, match="same length"):
        calibrate_threshold(np.array([0.1, 0.2]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="NaN"):
        calibrate_threshold(np.array([0.1, np.nan]), np.array([0, 1]))
    with pytest.raises(ValueError, match="boolean or 0/1"):
        calibrate_threshold(np.array([0.1, 0.2]), np.array([0, 2]))


def test_calibration_is_frozen_and_json_able() -> None:
    cal = calibrate_threshold(SCORES, IS_DEFECT)
    assert isinstance(cal, ThresholdCalibration)
    with pytest.raises(AttributeError):
        cal.threshold = 0.9  # type: ignore[misc]
    assert json.loads(json.dumps(cal.as_dict()))["threshold"] == pytest.approx(0.375)


# ---------------------------------------------------------------- decision_rates


def test_decision_rates_counts_and_boundary() -> None:
    rates = decision_rates(SCORES, IS_DEFECT, 0.5)  # score == threshold is rejected
    assert rates["rejected"] == 5  # 0.5, 0.6, 0.7, 0.8, 0.9
    assert rates["false_rejects"] == 2  # 0.5, 0.7
    assert rates["escapes"] == 1  # 0.45
    assert rates["false_reject_rate"] == pytest.approx(0.4)
    assert rates["escape_rate"] == pytest.approx(0.25)
    assert (rates["n_good"], rates["n_defect"]) == (5, 4)
    assert rates["note"] is None
    # exact (Clopper-Pearson) 95 % intervals of 2 of 5 and 1 of 4, as published tables give them
    assert rates["false_reject_rate_ci95"] == pytest.approx([0.0527, 0.8534], abs=5e-4)
    assert rates["escape_rate_ci95"] == pytest.approx([0.0063, 0.8059], abs=5e-4)


def test_intervals_count_near_duplicate_groups_when_given() -> None:
    # the five good images are two parts (0.1/0.2/0.3 and 0.5/0.7), the four defects four parts
    groups = np.array([0, 0, 0, 2, 1, 3, 1, 4, 5])
    rates = decision_rates(SCORES, IS_DEFECT, 0.5, groups)
    plain = decision_rates(SCORES, IS_DEFECT, 0.5)
    assert {k: rates[k] for k in plain if not k.endswith("_ci95")} == {k: plain[k] for k in plain if not k.endswith("_ci95")}
    assert (rates["n_good_groups"], rates["n_defect_groups"], rates["interval_basis"]) == (2, 4, "near-duplicate groups")
    # groups of 3 and 2 good images: (3 + 2)^2 / (9 + 4) = 1.92 parts; the 4 defects 4 parts
    assert (rates["n_good_effective"], rates["n_defect_effective"]) == (1.92, 4.0)
    # 2 of 5 good images worth 1.92 parts: wider than 2 of 5
    assert rates["false_reject_rate_ci95"][1] - rates["false_reject_rate_ci95"][0] > (
        plain["false_reject_rate_ci95"][1] - plain["false_reject_rate_ci95"][0]
    )
    # every defect its own group: the per-image interval
    assert rates["escape_rate_ci95"] == pytest.approx(plain["escape_rate_ci95"])
    assert "n_good_groups" not in plain


def test_groups_of_another_length_are_refused() -> None:
    with pytest.raises(ValueError, match="one group id per image"):
        decision_rates(SCORES, IS_DEFECT, 0.5, np.arange(4))


def test_rates_are_none_with_a_note_when_test_set_has_no_defects() -> None:
    rates = decision_rates(np.array([0.1, 0.6, 0.2]), np.array([False, False, False]), 0.5)
    assert rates["escape_rate"] is None and rates["escape_rate_ci95"] is None
    assert rates["escapes"] == 0
    assert rates["false_reject_rate"] == pytest.approx(1 / 3)
    assert "no defective images" in rates["note"]


def test_rates_are_none_with_a_note_when_test_set_has_no_good_parts() -> None:
    rates = decision_rates(np.array([0.1, 0.6]), np.array([1, 1]), 0.5)
    assert rates["false_reject_rate"] is None
    assert rates["escape_rate"] == pytest.approx(0.5)
    assert "no good images" in rates["note"]


# ---------------------------------------------------------------- classification


CLASSES = ["good", "scratch", "dent"]
# true:      good good good scratch scratch dent
# predicted: good good scratch scratch dent dent
Y_TRUE = np.array([0, 0, 0, 1, 1, 2])
PROBS = np.array(
    [
        [0.90, 0.05, 0.05],
        [0.60, 0.30, 0.10],
        [0.20, 0.70, 0.10],  # wrong, confidence 0.70
        [0.10, 0.80, 0.10],
        [0.05, 0.05, 0.90],  # wrong, confidence 0.90
        [0.20, 0.25, 0.55],
    ]
)


def test_confusion_matrix_and_per_class_numbers() -> None:
    m = classification_metrics(Y_TRUE, PROBS, CLASSES)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["n_images"] == 6
    assert m["classes"] == CLASSES
    good, scratch, dent = (m["per_class"][c] for c in CLASSES)
    assert good == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert scratch == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert dent == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    json.dumps(m)


def test_class_names_work_as_labels() -> None:
    names = np.array(["good", "good", "good", "scratch", "scratch", "dent"])
    assert classification_metrics(names, PROBS, CLASSES) == classification_metrics(Y_TRUE, PROBS, CLASSES)
    with pytest.raises(ValueError, match="not in classes"):
        classification_metrics(np.array(["good"] * 5 + ["crack"]), PROBS, CLASSES)


def test_undefined_precision_and_recall_are_none() -> None:
    m = classification_metrics(np.array([0, 0]), np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0]]), CLASSES)
    assert m["per_class"]["dent"] == {"precision": None, "recall": None, "f1": None, "support": 0}


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"shape \(n_images, 2\)"):
        classification_metrics(Y_TRUE, PROBS, ["good", "scratch"])
    with pytest.raises(ValueError, match="outside 0..2"):
        classification_metrics(np.array([0, 0, 0, 1, 1, 3]), PROBS, CLASSES)


def test_defect_scores_and_unknown_good_class() -> None:
    np.testing.assert_allclose(defect_scores(PROBS, CLASSES, "good"), 1 - PROBS[:, 0])
    with pytest.raises(ValueError, match=r"'ok' is not one of the classes \['good', 'scratch', 'dent'\]"):
        defect_scores(PROBS, CLASSES, "ok")


# ---------------------------------------------------------------- roc_points


def test_roc_points_auc_and_json_able_thresholds() -> None:
    roc = roc_points(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    assert roc["auc"] == pytest.approx(0.75)
    assert roc["fpr"][0] == 0.0 and roc["tpr"][-1] == 1.0
    assert roc["thresholds"][0] is None  # sklearn's +inf "reject nothing"
    assert all(isinstance(t, float) for t in roc["thresholds"][1:])
    json.dumps(roc, allow_nan=False)


def test_roc_with_one_class_has_no_auc() -> None:
    roc = roc_points(np.array([0.1, 0.4]), np.array([0, 0]))
    assert roc["auc"] is None
    assert roc["fpr"] == [] and "needs both" in roc["note"]


# ---------------------------------------------------------------- worst_errors


def test_worst_errors_order_then_least_confident_correct() -> None:
    items = worst_errors(Y_TRUE, PROBS, CLASSES, k=4)
    assert [i["index"] for i in items] == [4, 2, 5, 1]
    assert [i["correct"] for i in items] == [False, False, True, True]
    assert items[0] == {"index": 4, "true": "scratch", "predicted": "dent", "confidence": 0.9, "correct": False}
    assert items[2]["confidence"] == pytest.approx(0.55)


def test_worst_errors_truncates_and_handles_no_errors() -> None:
    assert [i["index"] for i in worst_errors(Y_TRUE, PROBS, CLASSES, k=1)] == [4]
    assert worst_errors(Y_TRUE, PROBS, CLASSES, k=0) == []
    all_right = worst_errors(np.array([0, 1]), np.array([[0.9, 0.1, 0.0], [0.4, 0.6, 0.0]]), CLASSES)
    assert [(i["index"], i["correct"]) for i in all_right] == [(1, True), (0, True)]
    with pytest.raises(ValueError, match="non-negative integer"):
        worst_errors(Y_TRUE, PROBS, CLASSES, k=-1)


def test_everything_is_plain_python() -> None:
    cal = calibrate_threshold(SCORES, IS_DEFECT)
    for value in cal.as_dict().values():
        assert not isinstance(value, np.generic)
    assert not math.isnan(cal.threshold)


def test_good_only_calibration_rejects_the_allowed_share_of_good_parts() -> None:
    from resources.reporting.metrics import calibrate_good_only, decision_rates

    scores = np.arange(1000, dtype=np.float64)
    calibration = calibrate_good_only(scores, target_false_reject_rate=0.01)
    rates = decision_rates(scores, np.zeros(1000, dtype=bool), calibration.threshold)
    assert rates["false_rejects"] == 10 and calibration.false_reject_rate == 0.01
    assert calibration.escape_rate is None and calibration.n_defect == 0
    assert "good-only rule" in calibration.method


def test_good_only_calibration_with_few_parts_says_how_little_it_knows_and_never_rejects_all() -> None:
    from resources.reporting.metrics import calibrate_good_only

    calibration = calibrate_good_only(np.array([0.2, 0.5, 0.1]), target_false_reject_rate=0.001)
    assert calibration.threshold > 0.5 and calibration.false_reject_rate == 0.0
    assert "only known to be below 0.333" in calibration.method
    one = calibrate_good_only(np.array([0.3]), target_false_reject_rate=0.99)
    assert one.threshold > 0.3  # a target near 1 still passes the one part
    with pytest.raises(ValueError, match="hold out good images"):
        calibrate_good_only(np.array([]))
    with pytest.raises(ValueError, match="target_false_reject_rate"):
        calibrate_good_only(np.array([0.1]), target_false_reject_rate=1.0)


def test_good_only_threshold_holds_for_float32_scores_and_ties() -> None:
    from resources.reporting.metrics import calibrate_good_only

    scores = np.array([0.1, 0.2, 0.7, 0.7, 0.9], dtype=np.float32)
    one = calibrate_good_only(scores, target_false_reject_rate=0.0)
    assert not (scores >= np.float32(one.threshold)).any()  # the highest part passes in float32 too
    tied = calibrate_good_only(scores, target_false_reject_rate=0.4)  # two allowed, but 0.7 ties with 0.7
    assert int((scores >= np.float32(tied.threshold)).sum()) == 1
    assert tied.false_reject_rate == pytest.approx(0.2)  # what is achieved, not what was allowed


# ---------------------------------------------------------------- threshold_setters


def test_threshold_setters_are_the_lowest_defects_with_what_catching_each_costs() -> None:
    # defects sorted: 0.45 (index 3), 0.60 (5), 0.80 (7), 0.90 (8); good: 0.1 0.2 0.3 0.5 0.7
    rows = threshold_setters(SCORES, IS_DEFECT, k=3)
    assert [r["index"] for r in rows] == [3, 5, 7]
    assert [r["good_at_or_above"] for r in rows] == [2, 1, 0]  # 0.5 and 0.7 score at or above 0.45
    assert rows[0]["false_reject_rate_to_catch"] == pytest.approx(2 / 5)
    # the first one's cost is what zero-escape calibration pays on this set
    assert rows[0]["false_reject_rate_to_catch"] == pytest.approx(calibrate_threshold(SCORES, IS_DEFECT).false_reject_rate)
    assert threshold_setters(SCORES, IS_DEFECT, k=0) == []
    json.dumps(rows)  # plain Python, for the report JSON
