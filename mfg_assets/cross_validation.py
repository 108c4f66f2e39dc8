"""``cross_validation``: the recipe refitted on K folds of train + val, for mean ± std figures.

Asked for with ``folds`` (``mfgv onboard --cv-folds K``); with 0 it records that it was not asked
and costs nothing. The variant's engine runs the folds (``TaskEngine.cross_validate``: stratified by
class and grouped by near-duplicate group), and the test split is never read, so the final model is
still scored on test exactly once, by ``validation_report``. A task without folds refuses them.
"""

import hashlib
import json
from typing import Any

import dagster as dg
from pydantic import Field

from mfg_assets.common import inspection_asset, record_lineage, run_seed
from mfg_assets.handles import CrossValidation, DatasetVersion, TrainingRecipe
from mfg_assets.saved_options import config_for_run
from mfg_assets.task_data import StoredTaskData, engine_failures
from resources.artifact_store import ArtifactStore
from resources.engines import Engines
from resources.lineage import LineageStore

__all__ = ["CrossValidationConfig", "cross_validation"]


class CrossValidationConfig(dg.Config):
    folds: int = Field(0, ge=0, le=20, description="folds of stratified, grouped k-fold over train + val (0: off)")
    seed: int | None = Field(None, ge=0, description="seed of the fold assignment (None: the dataset version's); recorded")


@inspection_asset("cross_validation", kinds={"scikitlearn"})
def cross_validation(
    context: dg.AssetExecutionContext,
    config: CrossValidationConfig,
    dataset_version: DatasetVersion,
    hyperparameter_search: TrainingRecipe,
    engines: Engines,
    artifact_store: ArtifactStore,
    lineage: LineageStore,
) -> dg.Output[CrossValidation]:
    """Per-fold accuracy, false-reject and escape rates of the recipe, and their mean and spread."""
    config = config_for_run(context, config, lineage.home_path())
    recipe = hyperparameter_search
    config = config.model_copy(update={"seed": run_seed(config.seed, dataset_version.split_spec)})
    if recipe.dataset_id != dataset_version.id:
        raise dg.Failure(
            f"recipe {recipe.id} was made for {recipe.dataset_id}, not {dataset_version.id}; materialize the graph in one run"
        )
    if config.folds == 0:
        handle = CrossValidation(
            id=f"cv:skipped:{recipe.id.split(':', 1)[1]}", dataset_id=dataset_version.id, recipe_id=recipe.id, folds=0, summary=None
        )
        record_lineage(context, lineage, output_id=handle.id, input_ids=[recipe.id], parameters=config.model_dump())
        return dg.Output(handle, metadata={"folds": 0, "note": "not asked for (--cv-folds)"})
    data = StoredTaskData(lineage, artifact_store, dataset_version)
    with engine_failures():
        engine = engines.engine(dataset_version.task)
        engine.refuse({"folds": True})
        summary: dict[str, Any] = engine.cross_validate(
            recipe, data, engines.machine(context.log), folds=config.folds, seed=int(config.seed)
        )
    digest = hashlib.sha256(json.dumps(summary, sort_keys=True, default=str).encode()).hexdigest()
    handle = CrossValidation(
        id=f"cv:{digest}", dataset_id=dataset_version.id, recipe_id=recipe.id, folds=config.folds, summary=summary
    )
    record_lineage(
        context, lineage, output_id=handle.id, input_ids=[recipe.id, dataset_version.id], parameters={**config.model_dump(), **summary}
    )
    nan = float("nan")
    return dg.Output(
        handle,
        metadata={
            "folds": config.folds,
            "accuracy_mean": summary["accuracy_mean"],
            "accuracy_std": summary["accuracy_std"],
            "false_reject_rate_mean": summary["false_reject_rate_mean"] if summary["false_reject_rate_mean"] is not None else nan,
            "per_fold": dg.MetadataValue.json(summary["per_fold"]),
            "cv_seconds": summary["seconds"],
        },
    )
