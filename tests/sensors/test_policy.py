import pytest

from sensors.policy import BatchRef, assess_health, plan_landing_runs, population_stability_index, sum_windows


def test_first_tick_groups_new_batches_per_partition() -> None:
    batches = [BatchRef("l1", "a", "b1", 10), BatchRef("l1", "a", "b2", 11), BatchRef("l1", "b", "b1", 12)]
    plan = plan_landing_runs(batches, seen={}, ingested={}, registered_partitions={"l1.a", "l1.b"})
    assert [(r.partition, r.batches) for r in plan.requests] == [("l1.a", ("b1", "b2")), ("l1.b", ("b1",))]
    assert plan.requests[0].run_key == "l1.a:b1@10,b2@11"
    assert set(plan.seen) == {"l1/a/b1", "l1/a/b2", "l1/b/b1"}


def test_nothing_new_means_no_request() -> None:
    batches = [BatchRef("l1", "a", "b1", 10)]
    plan = plan_landing_runs(batches, seen={"l1/a/b1": 10}, ingested={}, registered_partitions={"l1.a"})
    assert plan.requests == ()


def test_already_ingested_batches_are_not_rerun() -> None:
    batches = [BatchRef("l1", "a", "onboard-1", 10)]
    plan = plan_landing_runs(batches, seen={}, ingested={"l1.a": {"onboard-1"}}, registered_partitions={"l1.a"})
    assert plan.requests == ()
    assert "l1/a/onboard-1" in plan.seen


def test_unregistered_variants_wait_outside_the_cursor() -> None:
    batches = [BatchRef("l1", "new", "b1", 10)]
    plan = plan_landing_runs(batches, seen={}, ingested={}, registered_partitions=set())
    assert plan.requests == ()
    assert plan.unregistered == ("l1/new/b1",)
    assert plan.seen == {}
    later = plan_landing_runs(batches, seen=plan.seen, ingested={}, registered_partitions={"l1.new"})
    assert [r.partition for r in later.requests] == ["l1.new"]


def _window(**counts):
    base = {
        "inspected": 0, "rejected": 0, "confirmed_defects": 0, "false_rejects": 0, "escapes_found": 0,
        "score_histogram": [0] * 4, "input_brightness_histogram": [0] * 4,
    }
    return {**base, **counts}


def test_rates_come_from_summed_counts_not_averaged_ratios() -> None:
    totals = sum_windows([
        _window(inspected=100, rejected=10, confirmed_defects=8, false_rejects=2),
        _window(inspected=10, rejected=5, confirmed_defects=0, false_rejects=5, escapes_found=1),
    ])
    assert totals.inspected == 110
    assert totals.false_reject_rate == 7 / (110 - 8 - 1)
    assert totals.escape_rate == 1 / 9
    assert sum_windows([_window()]).escape_rate is None  # no defective part seen: not 0.0


def test_psi_is_zero_for_equal_and_large_for_shifted_histograms() -> None:
    assert population_stability_index([10, 20, 30, 40], [1, 2, 3, 4]) == pytest.approx(0.0)
    assert population_stability_index([40, 30, 20, 10], [0, 5, 15, 80]) > 0.25
    with pytest.raises(ValueError, match="bins"):
        population_stability_index([1, 2], [1, 2, 3])


def test_health_waits_for_evidence_then_flags_drift_and_rates() -> None:
    baseline = [40, 30, 20, 10]
    few = sum_windows([_window(inspected=20, score_histogram=[0, 0, 0, 20], input_brightness_histogram=[20, 0, 0, 0])])
    assert assess_health(few, baseline_scores=baseline, baseline_brightness=baseline).action == "wait"
    healthy = sum_windows([_window(inspected=200, rejected=10, confirmed_defects=10, score_histogram=[80, 60, 40, 20],
                                   input_brightness_histogram=[80, 60, 40, 20])])
    assert assess_health(healthy, baseline_scores=baseline, baseline_brightness=baseline).action == "healthy"
    drifted = sum_windows([_window(inspected=200, rejected=40, confirmed_defects=10, false_rejects=30,
                                   score_histogram=[10, 10, 30, 150], input_brightness_histogram=[0, 0, 20, 180])])
    verdict = assess_health(drifted, baseline_scores=baseline, baseline_brightness=baseline)
    assert verdict.action == "degraded"
    assert any("false-reject" in r for r in verdict.reasons)
    assert any("brightness" in r for r in verdict.reasons)
