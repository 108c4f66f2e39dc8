import numpy as np
import pytest

from resources.anomaly.calibration import choose_threshold


def test_with_defects_the_threshold_passes_none_of_them() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.8])
    chosen = choose_threshold(scores, np.array([False, False, False, True, True]))
    assert chosen.rule == "zero_escapes"
    assert chosen.validation_rates["escapes"] == 0 and chosen.validation_rates["false_rejects"] == 0
    assert chosen.as_dict()["rule"] == "zero_escapes"


def test_without_defects_the_good_only_rule_sets_it_from_good_scores() -> None:
    scores = np.linspace(0.0, 1.0, 2000)
    chosen = choose_threshold(scores, np.zeros(2000, dtype=bool), target_false_reject_rate=0.001)
    assert chosen.rule == "good_only"
    assert chosen.validation_rates["false_rejects"] == 2 and chosen.validation_rates["escape_rate"] is None


def test_a_threshold_that_would_reject_every_part_is_never_chosen() -> None:
    scores = np.array([0.5, 0.6, 0.7, 0.05, 0.9])  # one defect scores below every good part
    is_defect = np.array([False, False, False, True, True])
    chosen = choose_threshold(scores, is_defect, target_false_reject_rate=0.0)
    assert chosen.rule == "good_only_fallback"
    assert chosen.validation_rates["false_rejects"] == 0
    assert chosen.validation_rates["escapes"] == 1  # the faint defect passes: the report must show it
    assert chosen.validation_rates["rejected"] < len(scores)
    record = chosen.as_dict()
    assert record["escape_rate"] == 0.5 and record["n_defect"] == 2 and "good-only fallback" in record["method"]


def test_no_good_validation_images_is_refused_with_what_to_do() -> None:
    with pytest.raises(ValueError, match="move some good images into validation"):
        choose_threshold(np.array([0.9]), np.array([True]))


def test_the_validation_rates_count_near_duplicate_groups_when_given() -> None:
    scores, is_defect = np.array([0.1, 0.2, 0.3, 0.8, 0.9]), np.array([False, False, False, True, True])
    chosen = choose_threshold(scores, is_defect, groups=np.array([0, 0, 0, 1, 2]))
    assert chosen.validation_rates["n_good_groups"] == 1 and chosen.validation_rates["n_good_effective"] == 1.0
    assert "n_good_groups" not in choose_threshold(scores, is_defect).validation_rates
