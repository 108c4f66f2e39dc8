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


def _live(ring: str, version: str = "l1-a-v2"):
    from sensors.policy import LiveDeployment

    return LiveDeployment(
        deployment_id=f"{version}-{ring}", partition="l1.a", line="l1", model_version=version, ring=ring,
        deployed_at="2026-11-27T10:00:00+00:00", baseline_scores=(40, 30, 20, 10), baseline_brightness=(10, 20, 30, 40),
    )


def _edge_window(version: str, received_at: str, **counts) -> dict:
    return {"line": "l1", "model_version": version, "received_at": received_at,
            **_window(score_histogram=[40, 30, 20, 10], input_brightness_histogram=[10, 20, 30, 40], **counts)}


def test_edge_actions_promote_a_healthy_canary_and_retrain_a_degraded_fleet() -> None:
    from sensors.policy import plan_edge_actions

    healthy = _edge_window("l1-a-v2", "2026-11-27T10:05:00+00:00", inspected=150, rejected=5, confirmed_defects=5)
    before = _edge_window("l1-a-v1", "2026-11-27T09:00:00+00:00", inspected=500, false_rejects=200)
    drifted = _edge_window("l1-a-v1", "2026-11-27T10:05:00+00:00", inspected=150, rejected=60, false_rejects=60)
    actions, verdicts = plan_edge_actions([_live("canary"), _live("fleet", "l1-a-v1")], [healthy, before, drifted])
    assert [(a.kind, a.model_version, a.run_key) for a in actions] == [
        ("promote", "l1-a-v2", "promote:l1-a-v2-canary"),
        ("retrain", "l1-a-v1", "retrain:l1-a-v1-fleet"),
    ]
    assert verdicts["l1-a-v1-fleet"].metrics["inspected"] == 150  # windows before the deployment do not count


def test_a_degraded_canary_is_rolled_back_and_a_quiet_one_waits() -> None:
    from sensors.policy import plan_edge_actions

    bad = _edge_window("l1-a-v2", "2026-11-27T10:05:00+00:00", inspected=150, rejected=30, confirmed_defects=10,
                       escapes_found=3)
    actions, _ = plan_edge_actions([_live("canary")], [bad])
    assert [a.kind for a in actions] == ["rollback"]
    assert any("escape" in r for r in actions[0].reasons)
    quiet, verdicts = plan_edge_actions([_live("canary")], [])
    assert quiet == [] and verdicts["l1-a-v2-canary"].action == "wait"
