"""``cross_validation``: the recipe retrained on K folds of train + val, for mean ± std figures.

Asked for with ``folds`` (``mfgv onboard --cv-folds K``); with 0 it records that it was not asked
and costs nothing. Folds are stratified by class and grouped by near-duplicate group
(scikit-learn's ``StratifiedGroupKFold``), and the test split is never read, so the final model is
still scored on test exactly once, by ``validation_report``.
"""

import hashlib
import json
from typing import Any

import dagster as dg
import numpy as np
from pydantic import Field

from mfg_assets.common import inspection_asset, record_lineage, run_seed, variant_for
from mfg_assets.datasets import load_dataset_items
from mfg_assets.handles import CrossValidation, DatasetVersion, TrainingRecipe
from mfg_assets.saved_options import config_for_run
from resources.artifact_store import ArtifactStore
from resources.classify.train_settings import TrainSettings
from resources.lineage import LineageStore
from resources.trainers import Trainer

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
    trainer: Trainer,
    artifact_store: ArtifactStore,
    lineage: LineageStore,
) -> dg.Output[CrossValidation]:
    """Per-fold accuracy, false-reject and escape rates of the recipe, and their mean and spread."""
    config = config_for_run(context, config, lineage.home_path())
    from resources.classify.cross_validation import CrossValidationError, check_folds_possible, run_cross_validation
    from resources.data.images import load_rgb_batch

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
    if dataset_version.task == "anomaly":
        raise dg.Failure(
            f"--cv-folds {config.folds}: cross-validation of the anomaly detector is not in this release; its "
            "validation report measures it on held-out good and defective images: use --cv-folds 0"
        )
    if config.folds == 1:
        raise dg.Failure("--cv-folds 1: cross-validation needs at least 2 folds (or 0 for none)")
    settings = TrainSettings.model_validate(recipe.settings)
    items = load_dataset_items(lineage, dataset_version.id)
    pool = items[items["split"].isin(["train", "val"])].reset_index(drop=True)
    try:
        check_folds_possible(list(pool["label"]), config.folds, groups=list(pool["group_id"]))
    except CrossValidationError as exc:
        raise dg.Failure(str(exc)) from exc
    index = {name: i for i, name in enumerate(dataset_version.classes)}
    labels = np.array([index[label] for label in pool["label"]], dtype=np.int64)
    groups = pool["group_id"].to_numpy()
    images = load_rgb_batch([artifact_store.path(p) for p in pool["artifact"]], settings.image_size, settings.resize)
    context.log.info(
        f"cross-validation: {config.folds} folds over {len(pool)} train + val images "
        f"({pool['group_id'].nunique()} near-duplicate groups), recipe {recipe.id}"
    )
    try:
        outcome = run_cross_validation(
            images=images,
            labels=labels,
            groups=groups,
            classes=dataset_version.classes,
            good_class=variant_for(context, lineage).good_class,
            settings=settings,
            folds=config.folds,
            seed=config.seed,
            train=trainer.train,
            predict=trainer.predict,
            on_fold=lambda r: context.log.info(f"fold {r['fold']}/{config.folds}: {r}"),
        )
    except CrossValidationError as exc:
        raise dg.Failure(str(exc)) from exc
    summary: dict[str, Any] = {
        "folds": outcome.folds,
        "accuracy_mean": outcome.accuracy_mean,
        "accuracy_std": outcome.accuracy_std,
        "false_reject_rate_mean": outcome.false_reject_rate_mean,
        "false_reject_rate_std": outcome.false_reject_rate_std,
        "escape_rate_mean": outcome.escape_rate_mean,
        "per_fold": outcome.per_fold,
        "seconds": outcome.seconds,
        "seed": config.seed,
        "method": "StratifiedGroupKFold over train + val, groups = near-duplicate groups; test split untouched",
    }
    digest = hashlib.sha256(json.dumps(summary, sort_keys=True, default=str).encode()).hexdigest()
    handle = CrossValidation(
        id=f"cv:{digest}", dataset_id=dataset_version.id, recipe_id=recipe.id, folds=config.folds, summary=summary
    )
    record_lineage(
        context, lineage, output_id=handle.id, input_ids=[recipe.id, dataset_version.id], parameters={**config.model_dump(), **summary}
    )
    return dg.Output(
        handle,
        metadata={
            "folds": config.folds,
            "accuracy_mean": outcome.accuracy_mean,
            "accuracy_std": outcome.accuracy_std,
            "false_reject_rate_mean": outcome.false_reject_rate_mean if outcome.false_reject_rate_mean is not None else float("nan"),
            "per_fold": dg.MetadataValue.json(outcome.per_fold),
            "cv_seconds": outcome.seconds,
        },
    )
