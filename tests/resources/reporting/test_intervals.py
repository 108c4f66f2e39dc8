"""Exact intervals of a rate: what "0 escapes of 47" can vouch for."""

import numpy as np
import pytest

from resources.reporting.intervals import effective_size, rate_interval


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



def test_images_each_their_own_group_are_worth_as_many_parts() -> None:
    groups = np.arange(40)
    assert effective_size(groups, np.ones(40, bool)) == (40, 40.0)
    assert rate_interval(3, 40, effective_total=effective_size(groups, np.ones(40, bool))[1]) == rate_interval(3, 40)


def test_groups_of_one_size_are_worth_one_part_each() -> None:
    # 60 images: 10 parts shot six times each
    groups = np.repeat(np.arange(10), 6)
    assert effective_size(groups, np.ones(60, bool)) == (10, pytest.approx(10.0))
    # only the selected images count: the first 30 are 5 parts
    assert effective_size(groups, np.arange(60) < 30) == (5, pytest.approx(5.0))


def test_one_big_group_is_worth_little_more_than_one_part() -> None:
    # one part imaged 91 times and nine parts once: Kish's (sum m)^2 / sum m^2 = 100^2 / (91^2 + 9)
    groups = np.concatenate([np.zeros(91, int), np.arange(1, 10)])
    n_groups, parts = effective_size(groups, np.ones(100, bool))
    assert n_groups == 10 and parts == pytest.approx(10_000 / 8290)
    # 91 of 100 rejected (the big group) is about one part's evidence: the interval spans most of [0, 1]
    low, high = rate_interval(91, 100, effective_total=parts)
    assert low < 0.2 and high > 0.99 and low < 0.91 < high


def test_zero_of_n_with_fewer_parts_widens_to_what_the_parts_vouch_for() -> None:
    per_image, per_part = rate_interval(0, 60), rate_interval(0, 60, effective_total=10.0)
    assert per_part == pytest.approx(rate_interval(0, 10))
    assert per_part[1] > 2 * per_image[1]


def test_a_whole_effective_count_gives_the_exact_interval_of_that_count() -> None:
    # 6 of 80 images worth 40 parts is 3 of 40
    assert rate_interval(6, 80, effective_total=40.0) == pytest.approx(rate_interval(3, 40))


def test_a_fractional_effective_count_lies_between_its_whole_neighbours() -> None:
    # 5 of 40 images worth 20 parts counts as 2.5 of 20
    low, high = rate_interval(5, 40, effective_total=20.0)
    two, three = rate_interval(2, 20), rate_interval(3, 20)
    assert two[0] < low < three[0] and two[1] < high < three[1]


def test_all_of_n_keeps_the_closed_upper_bound() -> None:
    low, high = rate_interval(12, 12, effective_total=4.0)
    assert high == 1.0 and low == pytest.approx(rate_interval(4, 4)[0])


@pytest.mark.parametrize(("total", "parts"), [(10, 0.5), (10, 11.0), (0, 1.0)])
def test_more_parts_than_images_or_fewer_than_one_are_refused(total: int, parts: float) -> None:
    with pytest.raises(ValueError, match="independent parts"):
        rate_interval(0, total, effective_total=parts)


def test_group_ids_of_another_length_are_refused() -> None:
    with pytest.raises(ValueError, match="one group id per image"):
        effective_size(np.arange(3), np.ones(4, bool))
