"""``trained_model``: a timm classifier trained (from scratch by default) on the augmented set.

Training is seeded and logs a line per epoch; the weights of the best validation epoch are kept and
stored in the artifact store under their hash. A pretrained weights file is an option the user
points to (a local path), never a download.
"""

from dataclasses import asdict

import dagster as dg
import numpy as np
from pydantic import Field

from mfg_assets.augment import load_augmented_arrays
from mfg_assets.common import classification_asset, record_lineage
from mfg_assets.datasets import load_split_images
from mfg_assets.handles import AugmentedSet, DatasetVersion, TrainedModel
from resources.artifact_store import ArtifactStore
from resources.lineage import LineageStore
from resources.classification_trainer import TrainSettings
from resources.trainers import ClassificationTrainer

__all__ = ["TrainConfig", "trained_model"]


def _default(name: str):
    """TrainConfig's defaults are the trainer's measured ones (see TrainSettings), never a second copy."""
    return TrainSettings.model_fields[name].default


class TrainConfig(dg.Config):
    arch: str = Field(_default("arch"), description="timm architecture, trained from scratch unless pretrained_weights is set")
    epochs: int = Field(_default("epochs"), ge=1, le=1000, description="training epochs")
    batch_size: int = Field(_default("batch_size"), ge=2, le=1024, description="images per optimisation step")
    learning_rate: float = Field(_default("learning_rate"), gt=0.0, le=1.0, description="peak learning rate (one-cycle)")
    weight_decay: float = Field(_default("weight_decay"), ge=0.0, le=1.0, description="AdamW weight decay")
    label_smoothing: float = Field(_default("label_smoothing"), ge=0.0, lt=1.0, description="cross-entropy label smoothing")
    online_augmentation: bool = Field(_default("online_augmentation"), description="random flips/shifts on the fly")
    seed: int = Field(_default("seed"), ge=0, description="seed of weight init and data order; recorded")
    pretrained_weights: str | None = Field(
        None, description="optional LOCAL file of pretrained weights; nothing is ever downloaded"
    )


@classification_asset("trained_model", kinds={"pytorch"})
def trained_model(
    context: dg.AssetExecutionContext,
    config: TrainConfig,
    dataset_version: DatasetVersion,
    augmented_set: AugmentedSet,
    trainer: ClassificationTrainer,
    artifact_store: ArtifactStore,
    lineage: LineageStore,
) -> dg.Output[TrainedModel]:
    """A classifier over the variant's taxonomy, checkpoint stored by hash."""
    from resources.classification_trainer import EpochRecord

    if augmented_set.dataset_id != dataset_version.id:
        raise dg.Failure(
            f"augmented set {augmented_set.id} was built from {augmented_set.dataset_id}, not from "
            f"{dataset_version.id}; materialize augmented_set and trained_model in one run"
        )
    arrays = load_augmented_arrays(artifact_store, augmented_set)
    train_images = np.concatenate([arrays["train_images"], arrays["aug_images"]])
    train_labels = np.concatenate([arrays["train_labels"], arrays["aug_labels"]])
    val_images, val_labels, _ = load_split_images(
        lineage, artifact_store, dataset_version, "val", augmented_set.image_size
    )
    settings = TrainSettings(image_size=augmented_set.image_size, **config.model_dump())

    def log_epoch(record: EpochRecord) -> None:
        context.log.info(
            f"epoch {record.epoch}/{config.epochs}: train_loss={record.train_loss:.4f} "
            f"val_loss={record.val_loss:.4f} val_accuracy={record.val_accuracy:.4f} ({record.seconds:.1f}s)"
        )

    context.log.info(
        f"training {config.arch} from {'local weights ' + config.pretrained_weights if config.pretrained_weights else 'scratch'} "
        f"on {len(train_images)} images ({augmented_set.n_original} + {augmented_set.n_augmented} augmented), "
        f"{len(val_images)} validation images, {len(dataset_version.classes)} classes"
    )
    try:
        result = trainer.train(
            train_images, train_labels, val_images, val_labels, dataset_version.classes, settings, on_epoch=log_epoch
        )
    except FileNotFoundError as exc:
        raise dg.Failure(str(exc)) from exc
    checkpoint = artifact_store.put_bytes(result.checkpoint, kind="checkpoints", suffix=".pt")
    model_id = f"model:{checkpoint.sha256}"
    record_lineage(
        context,
        lineage,
        output_id=model_id,
        input_ids=[augmented_set.id, dataset_version.id],
        parameters=settings.model_dump(),
        input_hashes={augmented_set.id: augmented_set.artifact.sha256},
    )
    best = next((r for r in result.history if r.epoch == result.best_epoch), None)
    handle = TrainedModel(
        id=model_id,
        dataset_id=dataset_version.id,
        augmented_set_id=augmented_set.id,
        checkpoint=checkpoint,
        arch=config.arch,
        classes=dataset_version.classes,
        image_size=augmented_set.image_size,
        train_seconds=result.train_seconds,
        best_epoch=result.best_epoch,
        settings=settings.model_dump(),
        history=tuple(asdict(r) for r in result.history),
    )
    return dg.Output(
        handle,
        metadata={
            "model_id": model_id,
            "train_seconds": round(result.train_seconds, 2),
            "best_epoch": result.best_epoch,
            "val_accuracy": float(best.val_accuracy) if best else float("nan"),
            "history": dg.MetadataValue.json([asdict(r) for r in result.history]),
            "checkpoint_bytes": checkpoint.n_bytes,
        },
    )
