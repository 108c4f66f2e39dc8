import subprocess
import sys

import dagster as dg

from mfg_assets.definitions import defs

EXPECTED_ASSETS = {
    "raw_images",
    "annotations",
    "dataset_version",
    "augmented_set",
    "hyperparameter_search",
    "cross_validation",
    "trained_model",
    "validation_report",
    "exported_model",
    "registered_model",
    "deployment",
    "edge_metrics",
    "edge_feedback",
}
EXPECTED_BLOCKING_CHECKS = {
    ("annotations", "every_image_labelled"),
    ("annotations", "labels_in_taxonomy"),
    ("annotations", "no_conflicting_duplicates"),
    ("annotations", "min_images_per_class"),
    ("annotations", "reviewer_agreement"),
    ("dataset_version", "no_leakage_across_splits"),
    ("validation_report", "meets_release_criteria"),
    ("exported_model", "exports_match_trained_model"),
    ("exported_model", "int8_keeps_accuracy"),
}


def test_definitions_load_with_the_expected_assets_and_checks() -> None:
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} == EXPECTED_ASSETS
    checks = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    assert checks == EXPECTED_BLOCKING_CHECKS
    for key in graph.asset_check_keys:
        assert graph.get_check_spec(key).blocking, key
    jobs = {job.name for job in defs.resolve_all_job_defs()}
    assert {"classify_job", "deploy_job", "retrain_job", "edge_metrics_job", "rollback_job"} <= jobs
    assert {sensor.name for sensor in defs.sensors} == {"landing_zone_sensor", "edge_loop_sensor"}
    assert [schedule.name for schedule in defs.schedules] == ["edge_housekeeping_schedule"]


def test_loading_definitions_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys; import mfg_assets.definitions; "
        "heavy = [m for m in ('torch', 'timm', 'albumentations', 'great_expectations', 'openvino', 'onnxruntime') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


PIPELINE = (
    "raw_images", "annotations", "dataset_version", "augmented_set", "hyperparameter_search", "trained_model",
    "validation_report", "exported_model", "registered_model", "deployment",
)


def test_one_graph_for_every_task() -> None:
    """The stages form one chain in one group; a task is an engine behind it, never a second graph."""
    graph = defs.resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert {groups[name] for name in PIPELINE} | {groups["cross_validation"]} == {"inspection"}
    assert {name for name, group in groups.items() if group == "inspection"} == set(PIPELINE) | {"cross_validation"}
    for upstream, downstream in zip(PIPELINE, PIPELINE[1:], strict=False):
        parents = {key.to_user_string() for key in graph.get(dg.AssetKey(downstream)).parent_keys}
        assert upstream in parents, (upstream, downstream, parents)
    assert all(graph.get(dg.AssetKey(name)).partitions_def is not None for name in PIPELINE)


def test_importing_the_definitions_writes_nothing_to_the_home(tmp_path) -> None:
    import os

    home = tmp_path / "home"
    env = {**os.environ, "MFG_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    subprocess.run([sys.executable, "-c", "import mfg_assets.definitions"], env=env, capture_output=True, check=True)
    assert not home.exists()


def test_a_step_without_its_own_seed_uses_the_dataset_versions() -> None:
    from mfg_assets.augment import AugmentConfig
    from mfg_assets.common import run_seed
    from mfg_assets.cross_validation import CrossValidationConfig
    from mfg_assets.search import RecipeConfig

    assert AugmentConfig().seed is None and RecipeConfig().seed is None and CrossValidationConfig().seed is None
    assert run_seed(None, {"seed": 7}) == 7 and run_seed(3, {"seed": 7}) == 3
