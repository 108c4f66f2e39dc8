"""``trained_model``: the classifier trained with the recipe of ``hyperparameter_search``.

By default that fine-tunes a bundled ImageNet backbone (no download); from scratch, a local weights
file and a registered model are options of the recipe. Training is seeded and logs a line per
epoch; the weights of the best validation epoch are kept and stored in the artifact store under
their hash. When the search already trained exactly this recipe (its best trial: same settings,
seed and data), those weights are reused rather than trained a second time.
"""

from dataclasses import asdict

import dagster as dg
from pydantic import Field

from mfg_assets.augment import training_arrays
from mfg_assets.common import inspection_asset, record_lineage, variant_for
from mfg_assets.handles import AugmentedSet, DatasetVersion, TrainedModel, TrainingRecipe
from resources.artifact_store import ArtifactStore
from resources.classify.train_settings import TrainSettings
from resources.lineage import LineageStore
from resources.trainers import AnomalyTrainer, Trainer

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
    trainer: Trainer,
    anomaly_trainer: AnomalyTrainer,
    artifact_store: ArtifactStore,
    lineage: LineageStore,
) -> dg.Output[TrainedModel]:
    """The variant's model, checkpoint stored by hash: a classifier over its taxonomy, or (anomaly
    task) a detector fitted on its good training images."""
    from resources.classify.backbones import BackboneError
    from resources.classify.train_settings import EpochRecord
    from resources.classify.trainer import TrainingDidNotLearn
    from resources.classify.model_init import WeightsError

    recipe = hyperparameter_search
    if recipe.augmented_set_id != augmented_set.id or augmented_set.dataset_id != dataset_version.id:
        raise dg.Failure(
            f"recipe {recipe.id} and augmented set {augmented_set.id} do not belong to dataset {dataset_version.id}; "
            "materialize the graph in one run"
        )
    if dataset_version.task == "anomaly":
        from mfg_assets.anomaly_steps import fit_anomaly_model

        return fit_anomaly_model(context, dataset_version, augmented_set, recipe, anomaly_trainer, artifact_store, lineage)
    settings = TrainSettings.model_validate(recipe.settings)
    good_class = variant_for(context, lineage).good_class
    reused = False
    if config.reuse_search_weights and recipe.best_checkpoint is not None and recipe.best_history is not None:
        reused = True
        checkpoint = recipe.best_checkpoint
        history = [dict(r) for r in recipe.best_history]
        best_epoch = recipe.best_epoch or len(history)
        train_seconds = sum(float(r["seconds"]) for r in history)
        init = _checkpoint_init(artifact_store, checkpoint)
        context.log.info(f"reusing the search's best trial ({checkpoint.sha256[:12]}): the recipe it was trained with")
    else:
        train_images, train_labels, val_images, val_labels = training_arrays(
            lineage, artifact_store, dataset_version, augmented_set, settings.image_size
        )

        def log_epoch(record: EpochRecord) -> None:
            frr = "n/a" if record.val_false_reject_rate is None else f"{record.val_false_reject_rate:.4f}"
            context.log.info(
                f"epoch {record.epoch}/{settings.epochs}: train_loss={record.train_loss:.4f} "
                f"val_loss={record.val_loss:.4f} val_accuracy={record.val_accuracy:.4f} "
                f"val_frr_at_zero_escapes={frr} ({record.seconds:.1f}s)"
            )

        context.log.info(
            f"training {settings.timm_arch()} from {settings.init_source()} ({settings.backbone}) at {settings.image_size} px "
            f"on {len(train_images)} images, {len(val_images)} validation images, {len(dataset_version.classes)} classes"
        )
        try:
            result = trainer.train(
                train_images,
                train_labels,
                val_images,
                val_labels,
                dataset_version.classes,
                settings,
                on_epoch=log_epoch,
                good_class=good_class,
            )
        except (TrainingDidNotLearn, WeightsError, BackboneError) as exc:
            raise dg.Failure(str(exc)) from exc
        checkpoint = artifact_store.put_bytes(result.checkpoint, kind="checkpoints", suffix=".pt")
        history = [asdict(r) for r in result.history]
        best_epoch, train_seconds, init = result.best_epoch, result.train_seconds, result.init
    model_id = f"model:{checkpoint.sha256}"
    hashes = {recipe.id: recipe.id.split(":", 1)[1]}
    if init.get("sha256"):
        hashes[f"weights:{init.get('name') or init.get('file')}"] = init["sha256"]
    record_lineage(
        context,
        lineage,
        output_id=model_id,
        input_ids=[recipe.id, augmented_set.id, dataset_version.id],
        parameters={**settings.model_dump(mode="json"), "init": init, "reused_search_weights": reused},
        input_hashes={augmented_set.id: augmented_set.artifact.sha256, **hashes},
    )
    best = history[best_epoch - 1]
    handle = TrainedModel(
        id=model_id,
        dataset_id=dataset_version.id,
        augmented_set_id=augmented_set.id,
        checkpoint=checkpoint,
        arch=settings.timm_arch(),
        classes=dataset_version.classes,
        image_size=settings.image_size,
        resize=settings.resize,
        recipe_id=recipe.id,
        init=init,
        train_seconds=train_seconds,
        best_epoch=best_epoch,
        settings=settings.model_dump(mode="json"),
        history=tuple(history),
    )
    return dg.Output(
        handle,
        metadata={
            "model_id": model_id,
            "train_seconds": round(train_seconds, 2),
            "best_epoch": best_epoch,
            "val_accuracy": float(best["val_accuracy"]),
            "val_false_reject_rate": float("nan") if best["val_false_reject_rate"] is None else float(best["val_false_reject_rate"]),
            "init": dg.MetadataValue.json(init),
            "reused_search_weights": reused,
            "history": dg.MetadataValue.json(history),
            "checkpoint_bytes": checkpoint.n_bytes,
        },
    )


def _checkpoint_init(store: ArtifactStore, checkpoint) -> dict:
    import torch

    payload = torch.load(store.path(checkpoint), map_location="cpu", weights_only=True)
    return dict(payload.get("init") or {})
