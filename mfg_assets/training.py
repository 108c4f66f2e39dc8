"""``trained_model``: the variant's model, fitted with the recipe of ``hyperparameter_search``.

The variant's engine fits it (``TaskEngine.fit``), by default from a bundled ImageNet backbone (no
download; a local weights file and a registered model are options of the recipe). Fitting is seeded and logs its progress; the checkpoint
is stored in the artifact store under its hash. When the search already trained exactly this recipe
(its best trial: same settings, seed and data), those weights are reused rather than trained twice.
"""

import dagster as dg
from pydantic import Field

from mfg_assets.common import inspection_asset, json_metadata, record_lineage
from mfg_assets.handles import AugmentedSet, DatasetVersion, TrainedModel, TrainingRecipe
from mfg_assets.task_data import StoredTaskData, engine_failures
from resources.artifact_store import ArtifactStore
from resources.engines import Engines
from resources.lineage import LineageStore

__all__ = ["TrainModelConfig", "trained_model"]


class TrainModelConfig(dg.Config):
    reuse_search_weights: bool = Field(
        True, description="reuse the search's best-trial weights (same settings, seed and data) instead of retraining"
    )


@inspection_asset("trained_model", kinds={"pytorch"})
def trained_model(
    context: dg.AssetExecutionContext,
    config: TrainModelConfig,
    dataset_version: DatasetVersion,
    augmented_set: AugmentedSet,
    hyperparameter_search: TrainingRecipe,
    engines: Engines,
    artifact_store: ArtifactStore,
    lineage: LineageStore,
) -> dg.Output[TrainedModel]:
    """The variant's model, fitted by its task's engine; the checkpoint stored by hash."""
    recipe = hyperparameter_search
    if recipe.augmented_set_id != augmented_set.id or augmented_set.dataset_id != dataset_version.id:
        raise dg.Failure(
            f"recipe {recipe.id} and augmented set {augmented_set.id} do not belong to dataset {dataset_version.id}; "
            "materialize the graph in one run"
        )
    data = StoredTaskData(lineage, artifact_store, dataset_version, augmented_set)
    with engine_failures():
        engine = engines.engine(dataset_version.task)
        fit = engine.fit(recipe, data, engines.machine(context.log), reuse_search_weights=config.reuse_search_weights)
    if fit.checkpoint_artifact is not None:
        checkpoint = fit.checkpoint_artifact
    elif fit.checkpoint_bytes is not None:
        checkpoint = artifact_store.put_bytes(fit.checkpoint_bytes, kind="checkpoints", suffix=".pt")
    else:
        raise dg.Failure(f"the {dataset_version.task} engine returned no checkpoint; this is a bug: report it")
    model_id = f"model:{checkpoint.sha256}"
    record_lineage(
        context,
        lineage,
        output_id=model_id,
        input_ids=[recipe.id, augmented_set.id, dataset_version.id],
        parameters={**fit.lineage_parameters, "device": fit.device},
        input_hashes={augmented_set.id: augmented_set.artifact.sha256, **fit.input_hashes},
    )
    handle = TrainedModel(
        id=model_id,
        dataset_id=dataset_version.id,
        augmented_set_id=augmented_set.id,
        checkpoint=checkpoint,
        arch=fit.arch,
        classes=dataset_version.classes,
        image_size=int(fit.settings.get("image_size", augmented_set.image_size)),
        resize=str(fit.settings.get("resize", augmented_set.resize)),
        recipe_id=recipe.id,
        init=fit.init,
        train_seconds=fit.train_seconds,
        best_epoch=fit.best_epoch,
        settings=fit.settings,
        history=fit.history,
    )
    return dg.Output(
        handle,
        metadata={
            "model_id": model_id,
            "train_seconds": round(fit.train_seconds, 2),
            "device": fit.device,
            **json_metadata(fit.metadata),
            "init": dg.MetadataValue.json(fit.init),
            "checkpoint_bytes": checkpoint.n_bytes,
        },
    )
