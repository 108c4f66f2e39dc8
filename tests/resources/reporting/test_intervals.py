"""Exact intervals of a rate: what "0 escapes of 47" can vouch for."""

import pytest

from resources.reporting.intervals import rate_interval


def test_zero_of_n_is_bounded_by_the_exact_upper_limit_not_by_zero() -> None:
    low, high = rate_interval(0, 47)
    assert low == 0.0
    # two-sided 95 %: the upper limit solves (1 - p)^47 = 0.025
    assert high == pytest.approx(1 - 0.025 ** (1 / 47), rel=1e-6)
    assert high > 0.07


def test_all_of_n_mirrors_zero_of_n() -> None:
    low, high = rate_interval(47, 47)
    assert high == 1.0
    assert low == pytest.approx(0.025 ** (1 / 47), rel=1e-6)


def test_interval_holds_the_measured_rate_and_narrows_with_more_parts() -> None:
    small, large = rate_interval(5, 50), rate_interval(50, 500)
    assert small[0] < 0.1 < small[1] and large[0] < 0.1 < large[1]
    assert large[1] - large[0] < small[1] - small[0]


def test_higher_confidence_gives_a_wider_interval() -> None:
    narrow, wide = rate_interval(3, 40, confidence=0.9), rate_interval(3, 40, confidence=0.99)
    assert wide[0] < narrow[0] and wide[1] > narrow[1]


def test_no_parts_measured_is_no_interval() -> None:
    assert rate_interval(0, 0) is None


@pytest.mark.parametrize(("count", "total"), [(-1, 5), (6, 5), (0, -1)])
def test_impossible_counts_are_refused(count: int, total: int) -> None:
    with pytest.raises(ValueError, match="0 <= count <= total"):
        rate_interval(count, total)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95])
def test_confidence_outside_zero_one_is_refused(confidence: float) -> None:
    with pytest.raises(ValueError, match="confidence must be in"):
        rate_interval(1, 5, confidence=confidence)


def test_groups_as_many_as_images_give_the_per_image_interval() -> None:
    assert rate_interval(3, 40, groups=40) == rate_interval(3, 40)


def test_fewer_groups_than_images_widen_the_interval_to_what_the_groups_can_vouch_for() -> None:
    # 0 escapes of 60 images that are 10 parts shot six times each: 10 parts' worth of evidence
    per_image, per_group = rate_interval(0, 60), rate_interval(0, 60, groups=10)
    assert per_group == pytest.approx(rate_interval(0, 10))
    assert per_group[1] > 2 * per_image[1]


def test_a_fractional_effective_count_lies_between_its_whole_neighbours() -> None:
    # 5 of 40 images in 20 groups counts as 2.5 of 20
    low, high = rate_interval(5, 40, groups=20)
    two, three = rate_interval(2, 20), rate_interval(3, 20)
    assert two[0] < low < three[0] and two[1] < high < three[1]


def test_all_of_n_in_groups_keeps_the_closed_upper_bound() -> None:
    low, high = rate_interval(12, 12, groups=4)
    assert high == 1.0 and low == pytest.approx(rate_interval(4, 4)[0])


@pytest.mark.parametrize(("total", "groups"), [(10, 0), (10, 11), (0, 1)])
def test_more_groups_than_images_or_none_are_refused(total: int, groups: int) -> None:
    with pytest.raises(ValueError, match="groups"):
        rate_interval(0, total, groups=groups)
