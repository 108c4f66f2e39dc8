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

from mfg_assets.augment import training_arrays
from mfg_assets.common import inspection_asset, record_lineage, run_seed, variant_for
from mfg_assets.handles import AugmentedSet, DatasetVersion, TrainingRecipe
from mfg_assets.saved_options import config_for_run
from resources.artifact_store import ArtifactStore
from resources.classify.train_settings import TrainSettings
from resources.lineage import LineageStore
from resources.registry import ModelRegistry
from resources.trainers import Trainer

__all__ = ["RecipeConfig", "base_settings", "hyperparameter_search"]

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
    anomaly: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "anomaly task only: detector settings besides the backbone (resources.anomaly.detector.AnomalySettings, "
            "e.g. {\"feature_levels\": [2, 3]}); recorded with the recipe"
        ),
    )


def base_settings(
    config: RecipeConfig,
    augmented: AugmentedSet,
    registry: ModelRegistry,
    store: ArtifactStore,
) -> tuple[TrainSettings, str | None, str | None]:
    """The configured recipe as TrainSettings, with ``--init-from`` resolved to the registered
    model's checkpoint; returns (settings, init version, init checkpoint sha256)."""
    from resources.classify.model_init import WeightsError, registered_start

    fields = config.model_dump(exclude={"hpo_trials", "hpo_minutes", "init_from", "anomaly"})
    init_sha = None
    if config.init_from:
        try:
            start = registered_start(config.init_from, registry, store)
        except WeightsError as exc:
            raise dg.Failure(str(exc)) from exc
        fields.update(init_checkpoint=start["init_checkpoint"], arch=start["arch"])
        init_sha = start["checkpoint_sha256"]
    try:
        settings = TrainSettings(image_size=augmented.image_size, resize=augmented.resize, **fields)
    except ValueError as exc:
        raise dg.Failure(f"training settings are invalid: {exc}") from exc
    return settings, config.init_from, init_sha


@inspection_asset("hyperparameter_search", kinds={"optuna"})
def hyperparameter_search(
    context: dg.AssetExecutionContext,
    config: RecipeConfig,
    dataset_version: DatasetVersion,
    augmented_set: AugmentedSet,
    trainer: Trainer,
    registry: ModelRegistry,
    artifact_store: ArtifactStore,
    lineage: LineageStore,
) -> dg.Output[TrainingRecipe]:
    """The training recipe: the configured one, or the best of an optuna search on train/val."""
    config = config_for_run(context, config, lineage.home_path())
    from resources.classify.backbones import backbone_names, weights_path, get_spec, BackboneError
    from resources.classify.search import classification_space, run_search
    from resources.classify.model_init import WeightsError, check_start

    if augmented_set.dataset_id != dataset_version.id:
        raise dg.Failure(
            f"augmented set {augmented_set.id} was built from {augmented_set.dataset_id}, not {dataset_version.id}; "
            "materialize the graph in one run"
        )
    config = config.model_copy(update={"seed": run_seed(config.seed, dataset_version.split_spec)})
    if dataset_version.task == "anomaly":
        from mfg_assets.anomaly_steps import anomaly_recipe

        return anomaly_recipe(context, config, dataset_version, augmented_set, registry, artifact_store, lineage)
    if config.anomaly:
        raise dg.Failure(f"RecipeConfig.anomaly is for the anomaly task; this variant's task is {dataset_version.task}")
    base, init_version, init_sha = base_settings(config, augmented_set, registry, artifact_store)
    try:
        check_start(base, len(dataset_version.classes))
    except (WeightsError, BackboneError) as exc:
        raise dg.Failure(str(exc)) from exc
    good_class = variant_for(context, lineage).good_class
    searched = config.hpo_trials > 0 or config.hpo_minutes is not None
    search: dict[str, Any] | None = None
    settings, best_checkpoint, best_history, best_epoch, plots = base, None, None, None, {}
    if searched:
        installed = []
        for name in backbone_names():
            try:
                weights_path(get_spec(name))
                installed.append(name)
            except BackboneError:
                pass
        # Lite1/2 cost 1.5-2x Lite0 per step on 2 cores; the default space keeps to the two fastest.
        space = classification_space(base, [n for n in installed if n in ("mobilenetv2_100", "efficientnet_lite0")])
        cache: dict[int, tuple] = {}

        def arrays_for_size(size: int):
            if size not in cache:
                cache.clear()  # one size in memory at a time
                cache[size] = training_arrays(lineage, artifact_store, dataset_version, augmented_set, size)
            return cache[size]

        context.log.info(
            f"hyperparameter search: {config.hpo_trials or 'unlimited'} trials, "
            f"{config.hpo_minutes if config.hpo_minutes is not None else 'no'} minute limit, space {space.model_dump()}"
        )
        outcome = run_search(
            arrays_for_size=arrays_for_size,
            classes=dataset_version.classes,
            good_class=good_class,
            base=base,
            space=space,
            n_trials=config.hpo_trials or None,
            minutes=config.hpo_minutes,
            seed=config.seed,
            train=trainer.train,
            on_trial=lambda t: context.log.info(
                f"trial {t.number}: {t.state} value={t.value} params={t.params} ({t.seconds:.0f}s){' ' + t.reason if t.reason else ''}"
            ),
            on_epoch=lambda n, r: context.log.info(
                f"trial {n} epoch {r.epoch}: val_accuracy={r.val_accuracy:.4f} val_frr={r.val_false_reject_rate} ({r.seconds:.1f}s)"
            ),
        )
        settings = outcome.best_settings
        if outcome.best_result is not None:
            best_checkpoint = artifact_store.put_bytes(outcome.best_result.checkpoint, kind="checkpoints", suffix=".pt")
            best_history = tuple(_record_dict(r) for r in outcome.best_result.history)
            best_epoch = outcome.best_result.best_epoch
        plots = {name: artifact_store.put_bytes(png, kind="plots", suffix=".png") for name, png in outcome.plots.items()}
        search = {
            "trials": outcome.trials_json(),
            "best_params": outcome.best_params,
            "best_value": outcome.best_value,
            "best_trial": outcome.best_trial,
            "space": outcome.space.model_dump(),
            "sampler": outcome.sampler,
            "objective": outcome.objective,
            "seconds": outcome.seconds,
            "note": outcome.note,
            "n_trials_asked": config.hpo_trials,
            "minutes_asked": config.hpo_minutes,
        }
        if outcome.note:
            context.log.warning(outcome.note)
    body = json.dumps(
        {
            "dataset": dataset_version.id,
            "augmented_set": augmented_set.id,
            "settings": settings.model_dump(mode="json"),
            "search": search,
        },
        sort_keys=True,
        default=str,
    )
    recipe_id = f"recipe:{hashlib.sha256(body.encode()).hexdigest()}"
    record_lineage(
        context,
        lineage,
        output_id=recipe_id,
        input_ids=[augmented_set.id, dataset_version.id, *([init_version] if init_version else [])],
        parameters={"settings": settings.model_dump(mode="json"), "searched": searched, "search": search},
        input_hashes={init_version: init_sha} if init_version and init_sha else None,
    )
    handle = TrainingRecipe(
        id=recipe_id,
        dataset_id=dataset_version.id,
        augmented_set_id=augmented_set.id,
        settings=settings.model_dump(mode="json"),
        searched=searched,
        search=search,
        best_checkpoint=best_checkpoint,
        best_history=best_history,
        best_epoch=best_epoch,
        plots=plots,
        init_from=init_version,
    )
    metadata: dict[str, Any] = {"recipe_id": recipe_id, "searched": searched, "settings": dg.MetadataValue.json(handle.settings)}
    if search is not None:
        metadata.update(
            n_trials=len(search["trials"]),
            n_pruned=sum(1 for t in search["trials"] if t["state"] == "pruned"),
            best_value=search["best_value"] if search["best_value"] is not None else float("nan"),
            search_seconds=search["seconds"],
            best_params=dg.MetadataValue.json(search["best_params"]),
            trials=dg.MetadataValue.json(search["trials"]),
        )
    return dg.Output(handle, metadata=metadata)


def _record_dict(record: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(record)
