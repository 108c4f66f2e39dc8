"""A run option the variant's task does not support is refused by the asset that reads it, with the
same reason `mfgv onboard` gives: a run started from the UI or a sensor no longer ignores it."""

from pathlib import Path

import dagster as dg
import pytest

from mfg_assets.cross_validation import CrossValidationConfig, cross_validation
from mfg_assets.export import ExportConfig, exported_model
from mfg_assets.handles import AugmentedSet, CrossValidation, DatasetVersion, TrainedModel, TrainingRecipe, ValidationReport
from mfg_assets.search import RecipeConfig, hyperparameter_search
from mfg_assets.validation import ValidationConfig, validation_report
from resources.artifact_store import Artifact, ArtifactStore
from resources.engines import Engines
from resources.lineage import LineageStore
from resources.registry import ModelRegistry
from resources.tasks import engine_for

PARTITION = "line1.tile"
ART = Artifact(sha256="0" * 64, relpath="none", n_bytes=1)
DATASET = DatasetVersion(
    id="dataset:d", partition=PARTITION, classes=("crack", "good"), good_class="good", counts={}, task="anomaly",
    split_spec={"seed": 0},
)
AUGMENTED = AugmentedSet(
    id="augmented:a", dataset_id="dataset:d", artifact=ART, image_size=224, preset="none", seed=0, n_original=1, n_augmented=0
)
RECIPE = TrainingRecipe(
    id="recipe:r", dataset_id="dataset:d", augmented_set_id="augmented:a", settings={}, searched=False, search=None,
    best_checkpoint=None, best_history=None, best_epoch=None, plots={}, init_from=None,
)
MODEL = TrainedModel(
    id="model:m", dataset_id="dataset:d", augmented_set_id="augmented:a", checkpoint=ART, arch="patchcore", classes=("crack", "good"),
    image_size=224, recipe_id="recipe:r", train_seconds=1.0, best_epoch=0, settings={}, history=(),
)
SKIPPED_CV = CrossValidation(id="cv:skipped:r", dataset_id="dataset:d", recipe_id="recipe:r", folds=0, summary=None)
REPORT = ValidationReport(
    id="report:v", model_id="model:m", dataset_id="dataset:d", json_artifact=ART, html_artifact=ART, accuracy=1.0,
    false_reject_rate=0.0, escape_rate=0.0, threshold=1.0, release_passed=True, release_failures=(),
)


@pytest.fixture
def context(mfg_home: Path):
    with dg.instance_for_test() as instance:
        yield dg.build_asset_context(partition_key=PARTITION, instance=instance)


def _stores() -> dict:
    return {"artifact_store": ArtifactStore(), "lineage": LineageStore()}


def _refused(call, field: str) -> str:
    with pytest.raises(dg.Failure) as caught:
        result = call()
        if hasattr(result, "__next__"):
            next(result)
    message = str(caught.value)
    assert message.startswith(f"{field}: not available for the anomaly task in this release ("), message
    return message


def test_the_search_refuses_epochs_and_a_search(context) -> None:
    def search(config: RecipeConfig):
        return lambda: hyperparameter_search(
            context, config=config, dataset_version=DATASET, augmented_set=AUGMENTED, engines=Engines(),
            registry=ModelRegistry(), **_stores(),
        )

    message = _refused(search(RecipeConfig(epochs=3)), "RecipeConfig.epochs")
    cli = engine_for("anomaly").refusals({"epochs": True}, cli=True)[0]
    assert cli.startswith("--epochs: not available with --task anomaly") and message.split("(", 1)[1] in cli + "; drop or reset it for this variant"
    _refused(search(RecipeConfig(hpo_trials=4)), "RecipeConfig.hpo_trials")


def test_folds_an_escape_budget_and_int8_are_refused_where_they_are_read(context) -> None:
    _refused(
        lambda: cross_validation(
            context, config=CrossValidationConfig(folds=3), dataset_version=DATASET, hyperparameter_search=RECIPE,
            engines=Engines(), **_stores(),
        ),
        "CrossValidationConfig.folds",
    )
    _refused(
        lambda: validation_report(
            context, config=ValidationConfig(max_escape_rate=0.02), trained_model=MODEL, dataset_version=DATASET,
            hyperparameter_search=RECIPE, cross_validation=SKIPPED_CV, engines=Engines(), **_stores(),
        ),
        "ValidationConfig.max_escape_rate",
    )
    _refused(
        lambda: exported_model(
            context, config=ExportConfig(int8=True), trained_model=MODEL, validation_report=REPORT, dataset_version=DATASET,
            engines=Engines(), **_stores(),
        ),
        "ExportConfig.int8",
    )


def test_a_task_that_supports_an_option_is_not_refused() -> None:
    asked = {option: True for option in ("hpo_trials", "hpo_minutes", "folds", "epochs", "escape_budget", "int8", "augment_copies")}
    assert engine_for("classify").refusals(asked) == []
    assert len(engine_for("anomaly").refusals(asked)) == len(asked)
