"""A run started without config (the Dagster UI's Materialize button) takes the variant's saved onboard
options asset by asset (``mfg_assets.saved_options``), on the real graph up to the recipe."""

from pathlib import Path

import dagster as dg

from mfg_assets.definitions import defs
from mfg_assets.onboard import OnboardRequest, _run_config
from mfg_assets.partitions import line_variant_partitions
from tests.mfg_assets.test_graph_with_fake_trainer import FakeTrainerEngines, land_tiny_variant


UPSTREAM = ("raw_images", "annotations", "dataset_version", "augmented_set", "hyperparameter_search")
"""The assets up to the recipe: enough to see which options a run took, with no training."""


def land_with_saved_options(mfg_home: Path, tiny_line: Path) -> str:
    """The tiny variant landed, with the options an onboard with resnet10t at 32 px, 1 epoch and seed 7
    saved for it (none of them a default); its partition key."""
    from mfg_assets.onboard import _chosen_options
    from resources.data.variants import save_run_config

    key = land_tiny_variant(mfg_home, tiny_line)
    request = OnboardRequest(
        data_dir=tiny_line, line="line1", variant="bracket-a", good_class="good", image_size=32, epochs=1,
        backbone="none", arch="resnet10t", augment_copies=0, seed=7,
    )
    save_run_config("line1", "bracket-a", _chosen_options(_run_config(request)), mfg_home)
    return key


def test_a_run_without_config_takes_the_variants_saved_options_asset_by_asset(mfg_home: Path, tiny_line: Path) -> None:
    """The Dagster UI's Materialize button starts a run with no config: each asset then takes the
    variant's saved onboard options, unless the run sets that asset's own (then those, defaults and all)."""
    key = land_with_saved_options(mfg_home, tiny_line)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(line_variant_partitions.name, [key])
        assets = [a for a in defs.assets if a.key.to_user_string() in UPSTREAM]
        resources = {**defs.resources, "engines": FakeTrainerEngines()}
        saved = dg.materialize(assets, resources=resources, instance=instance, partition_key=key)
        explicit = dg.materialize(
            assets, resources=resources, instance=instance, partition_key=key,
            run_config={"ops": {"hyperparameter_search": {"config": {}}}},
        )
    assert saved.success and explicit.success
    recipe = saved.output_for_node("hyperparameter_search").settings
    assert (recipe["arch"], recipe["epochs"], recipe["seed"], recipe["image_size"]) == ("resnet10t", 1, 7, 32)
    assert saved.output_for_node("dataset_version").split_spec["seed"] == 7
    # the run set hyperparameter_search's options (none): the defaults there; the other assets still take the saved ones
    recipe = explicit.output_for_node("hyperparameter_search").settings
    assert (recipe["backbone"], recipe["arch"], recipe["epochs"], recipe["seed"]) == ("mobilenetv2_100", None, 12, 7)
    assert explicit.output_for_node("augmented_set").image_size == 32


def test_saved_options_that_do_not_fit_fail_the_asset_with_the_file_and_the_fix(mfg_home: Path, tiny_line: Path) -> None:
    from resources.data.variants import save_run_config

    key = land_tiny_variant(mfg_home, tiny_line)
    save_run_config("line1", "bracket-a", {"ops": {"annotations": {"config": {"min_images_per_class": -1}}}}, mfg_home)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(line_variant_partitions.name, [key])
        assets = [a for a in defs.assets if a.key.to_user_string() in ("raw_images", "annotations")]
        result = dg.materialize(assets, resources=defs.resources, instance=instance, partition_key=key, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.step_failure_data.error)
    assert "run_configs/bracket-a.json: the saved options of line1/bracket-a do not fit this version" in message
    assert "annotations: min_images_per_class" in message and "rerun `mfgv onboard`" in message
