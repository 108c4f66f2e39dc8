from sensors.policy import BatchRef, plan_landing_runs


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
