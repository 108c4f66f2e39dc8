"""``hyperparameter_search``: the recipe ``trained_model`` trains with, searched with optuna when asked.

Without ``hpo_trials`` / ``hpo_minutes`` it is the configured recipe, recorded as is (so lineage
always says which settings a model was trained with and why). With them, a seeded TPE search over
the task's space, pruned on the epoch-level validation metric, picks the settings; every trial
(parameters, value, seconds, pruned or not) goes into lineage, the asset's metadata and the
validation report, with optuna's plots. The best trial's weights are kept: they were trained with
exactly the settings, seed and data ``trained_model`` would use, so it reuses them instead of
training the same model twice.
"""

import hashlib
import json
from typing import Any

import dagster as dg
from pydantic import Field

from mfg_assets.common import inspection_asset, json_metadata, record_lineage, run_seed
from mfg_assets.handles import AugmentedSet, DatasetVersion, TrainingRecipe
from mfg_assets.saved_options import config_for_run
from resources.artifact_store import ArtifactStore
from mfg_assets.task_data import StoredTaskData, engine_failures
from resources.models.train_settings import TrainSettings
from resources.engines import Engines
from resources.lineage import LineageStore
from resources.registry import ModelRegistry

__all__ = ["RecipeConfig", "hyperparameter_search"]

# The recipe's defaults are TrainSettings' own: a default changed there is the product's default, with
# no second copy here to fall out of step (a changed TrainSettings default once had no effect).
_TRAIN_DEFAULT = {name: field.default for name, field in TrainSettings.model_fields.items()}


class RecipeConfig(dg.Config):
    backbone: str = Field(
        _TRAIN_DEFAULT["backbone"],
        description="bundled ImageNet backbone (mobilenetv2_100, efficientnet_lite0/1/2) or 'none' for --arch",
    )
    arch: str | None = Field(None, description="timm architecture when backbone is 'none' (default resnet10t)")
    pretrained_weights: str | None = Field(None, description="LOCAL weights file for arch; nothing is downloaded")
    init_from: str | None = Field(None, description="registered model version whose weights to start from")
    epochs: int | None = Field(None, ge=1, le=1000, description="epochs (default 12 fine-tuning, 30 from scratch)")
    batch_size: int = Field(_TRAIN_DEFAULT["batch_size"], ge=2, le=1024, description="images per optimisation step")
    learning_rate: float | None = Field(None, gt=0.0, le=1.0, description="peak learning rate (default by start)")
    weight_decay: float | None = Field(None, ge=0.0, le=1.0, description="AdamW weight decay (default by start)")
    frozen_stages: int | None = Field(None, ge=0, le=16, description="stages kept fixed when fine-tuning (default 2)")
    balance: str = Field(_TRAIN_DEFAULT["balance"], description="class-balanced sampling: sqrt, inverse or none")
    label_smoothing: float = Field(_TRAIN_DEFAULT["label_smoothing"], ge=0.0, lt=1.0, description="cross-entropy label smoothing")
    online_augmentation: bool = Field(_TRAIN_DEFAULT["online_augmentation"], description="random flips/shifts/brightness on the fly")
    augment_strength: float = Field(_TRAIN_DEFAULT["augment_strength"], ge=0.0, le=1.0, description="scale of the online augmentation")
    test_time_flips: bool = Field(_TRAIN_DEFAULT["test_time_flips"], description="deployed model averages over the image and its flips")
    ema_decay: float | None = Field(
        _TRAIN_DEFAULT["ema_decay"], ge=0.0, lt=1.0,
        description="per-step decay of the weights' moving average (0: off; default 0.98 fine-tuning, 0 from scratch)",
    )
    seed: int | None = Field(
        None, ge=0, description="seed of weight init, sampling and the search (None: the dataset version's); recorded"
    )
    hpo_trials: int = Field(0, ge=0, le=1000, description="search trials (0: no search unless hpo_minutes is set)")
    hpo_minutes: float | None = Field(
        None, gt=0.0, le=7 * 24 * 60, description="time limit of the search in minutes (None: no limit)"
    )
    task_settings: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "settings of the task's own model besides the backbone, validated by its engine's settings model "
            "(e.g. {\"feature_levels\": [2, 3]} for a model fitted on good parts); recorded with the recipe"
        ),
    )


@inspection_asset("hyperparameter_search", kinds={"optuna"})
def hyperparameter_search(
    context: dg.AssetExecutionContext,
    config: RecipeConfig,
    dataset_version: DatasetVersion,
    augmented_set: AugmentedSet,
    engines: Engines,
    registry: ModelRegistry,
    artifact_store: ArtifactStore,
    lineage: LineageStore,
) -> dg.Output[TrainingRecipe]:
    """The recipe the model is fitted with: the configured one, or the best of a search on train/val."""
    config = config_for_run(context, config, lineage.home_path())
    if augmented_set.dataset_id != dataset_version.id:
        raise dg.Failure(
            f"augmented set {augmented_set.id} was built from {augmented_set.dataset_id}, not {dataset_version.id}; "
            "materialize the graph in one run"
        )
    config = config.model_copy(update={"seed": run_seed(config.seed, dataset_version.split_spec)})
    data = StoredTaskData(lineage, artifact_store, dataset_version, augmented_set, model_registry=registry)
    with engine_failures():
        engine = engines.engine(dataset_version.task)
        engine.refuse(
            {"hpo_trials": config.hpo_trials > 0, "hpo_minutes": config.hpo_minutes is not None, "epochs": config.epochs is not None}
        )
        outcome = engine.recipe(config.model_dump(), data, engines.machine(context.log))
    body = json.dumps(
        {"dataset": dataset_version.id, "augmented_set": augmented_set.id, **outcome.id_fields},
        sort_keys=True,
        default=str,
    )
    recipe_id = f"recipe:{hashlib.sha256(body.encode()).hexdigest()}"
    record_lineage(
        context,
        lineage,
        output_id=recipe_id,
        input_ids=[augmented_set.id, dataset_version.id, *outcome.extra_input_ids],
        parameters=outcome.lineage_parameters,
        input_hashes=outcome.input_hashes,
    )
    best_checkpoint = (
        artifact_store.put_bytes(outcome.best_checkpoint, kind="checkpoints", suffix=".pt")
        if outcome.best_checkpoint is not None
        else None
    )
    handle = TrainingRecipe(
        id=recipe_id,
        dataset_id=dataset_version.id,
        augmented_set_id=augmented_set.id,
        settings=outcome.settings,
        searched=outcome.searched,
        search=outcome.search,
        best_checkpoint=best_checkpoint,
        best_history=outcome.best_history,
        best_epoch=outcome.best_epoch,
        plots={name: artifact_store.put_bytes(png, kind="plots", suffix=".png") for name, png in outcome.plots.items()},
        init_from=outcome.init_from,
    )
    metadata: dict[str, Any] = {
        "recipe_id": recipe_id,
        "searched": outcome.searched,
        "settings": dg.MetadataValue.json(handle.settings),
        **json_metadata(outcome.metadata),
    }
    return dg.Output(handle, metadata=metadata)
