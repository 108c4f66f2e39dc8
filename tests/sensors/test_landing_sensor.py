"""The landing sensor, tick by tick: first tick, nothing new, new data."""

import json
from pathlib import Path

import dagster as dg
import pytest

from resources.landing import LandingZone
from resources.lineage import LineageStore
from resources.data.variants import VariantSpec, VariantRefused, load_run_config, save_run_config, save_variant
from mfg_assets.run_configs import SavedRunConfigError, variant_run_config
from sensors.landing import landing_zone_sensor


def _land(home: Path, batch: str) -> None:
    folder = home / "landing" / "line1" / "a" / batch / "good"
    folder.mkdir(parents=True)
    (folder / "x.png").write_bytes(b"not read by the sensor")
    (folder.parent / "_READY").write_text("")


def _tick(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"landing": LandingZone(), "lineage": LineageStore()},
    )
    return landing_zone_sensor(context)


def test_sensor_walks_first_tick_nothing_new_and_new_data(mfg_home: Path) -> None:
    save_variant(VariantSpec(line="line1", variant="a", classes=("good", "bad"), good_class="good"), mfg_home)
    with dg.instance_for_test() as instance:
        empty = _tick(instance, None)
        assert empty.run_requests == []

        _land(mfg_home, "b1")
        (mfg_home / "landing" / "line1" / "a" / "half-copied").mkdir()  # no marker yet: ignored
        first = _tick(instance, empty.cursor)
        assert [r.partition_key for r in first.run_requests] == ["line1.a"]
        assert first.dynamic_partitions_requests[0].partition_keys == ["line1.a"]
        assert "line1/a/b1" in json.loads(first.cursor)

        again = _tick(instance, first.cursor)
        assert again.run_requests == []

        _land(mfg_home, "b2")
        second = _tick(instance, again.cursor)
        assert len(second.run_requests) == 1
        assert second.run_requests[0].run_key.startswith("line1.a:b2@")
        assert second.run_requests[0].tags["batches"] == "b2"


def test_a_new_batch_runs_with_the_options_the_variant_was_onboarded_with(mfg_home: Path) -> None:
    """A batch landed after onboarding trains the variant the plant's way (its backbone, input size,
    release limits), not with the defaults; a variant onboarded before run configs were kept gets {}."""
    save_variant(VariantSpec(line="line1", variant="a", classes=("good", "bad"), good_class="good"), mfg_home)
    assert load_run_config("line1", "a", mfg_home) == {}
    chosen = {"ops": {"augmented_set": {"config": {"image_size": 96}}, "hyperparameter_search": {"config": {"backbone": "efficientnet_lite0"}}}}
    save_run_config("line1", "a", chosen, mfg_home)
    assert [p.name for p in (mfg_home / "variants").glob("*/*.json")] == ["a.json"]  # still one variant
    _land(mfg_home, "b1")
    with dg.instance_for_test() as instance:
        [request] = _tick(instance, None).run_requests
    assert request.run_config == chosen and request.job_name == "classify_job"
    assert request.tags["run_config"] == str(mfg_home / "variants" / "line1" / "run_configs" / "a.json")
    (mfg_home / "variants" / "line1" / "run_configs" / "a.json").write_text("{broken")
    with pytest.raises(VariantRefused, match="run_configs/a.json: the variant's saved run config is not JSON"):
        load_run_config("line1", "a", mfg_home)


def test_a_variant_whose_saved_options_do_not_fit_waits_and_the_others_run(mfg_home: Path) -> None:
    """Options saved by an older version (a field gone, a value now out of bounds) stop that variant's
    runs with the file and the fix in the log; another variant's batch still runs, and the waiting batch
    stays out of the cursor so it runs once the file is fixed."""
    for variant in ("a", "b"):
        save_variant(VariantSpec(line="line1", variant=variant, classes=("good", "bad"), good_class="good"), mfg_home)
    save_run_config("line1", "a", {"ops": {"hyperparameter_search": {"config": {"epochs": 0, "gone_field": 1}}}}, mfg_home)
    _land(mfg_home, "b1")
    folder = mfg_home / "landing" / "line1" / "b" / "b1" / "good"
    folder.mkdir(parents=True)
    (folder / "x.png").write_bytes(b"x")
    (folder.parent / "_READY").write_text("")
    with pytest.raises(SavedRunConfigError, match="hyperparameter_search: no field\\(s\\) gone_field in this version.*rerun `mfgv onboard`"):
        variant_run_config("line1", "a", mfg_home)
    with dg.instance_for_test() as instance:
        result = _tick(instance, None)
        assert [r.partition_key for r in result.run_requests] == ["line1.b"]
        assert "line1/a/b1" not in json.loads(result.cursor) and "line1/b/b1" in json.loads(result.cursor)
        save_run_config("line1", "a", {"ops": {"hyperparameter_search": {"config": {"epochs": 3}}}}, mfg_home)
        fixed = _tick(instance, result.cursor)
        assert [(r.partition_key, r.run_config) for r in fixed.run_requests] == [
            ("line1.a", {"ops": {"hyperparameter_search": {"config": {"epochs": 3}}}})
        ]
