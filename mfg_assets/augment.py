"""``augmented_set``: the training images at training size plus seeded manufacturing augmentations.

Augmentation is materialized (not applied on the fly) so the exact training inputs are an
auditable artifact with a hash; the pipeline spec and the seed are recorded with it. Rarer classes
get more copies, which, with the class-weighted loss, handles class imbalance.
"""

import io

import dagster as dg
import numpy as np
from pydantic import Field

from mfg_assets.common import classification_asset, record_lineage
from mfg_assets.datasets import load_split_images
from mfg_assets.handles import AugmentedSet, DatasetVersion
from resources.artifact_store import ArtifactStore
from resources.lineage import LineageStore

__all__ = ["AugmentConfig", "augmented_set", "load_augmented_arrays"]


class AugmentConfig(dg.Config):
    image_size: int = Field(128, ge=16, le=1024, description="side in pixels the model is trained and run at")
    preset: str = Field("manufacturing", description="augmentation preset: manufacturing or none")
    copies_per_image: int = Field(2, ge=0, le=20, description="augmented copies made of each training image")
    balance_classes: bool = Field(True, description="give rarer classes more copies so classes end up even")
    seed: int = Field(0, ge=0, description="seed of the augmentation; recorded")


def load_augmented_arrays(store: ArtifactStore, augmented: AugmentedSet) -> dict[str, np.ndarray]:
    with np.load(store.path(augmented.artifact)) as arrays:
        return {name: arrays[name] for name in arrays.files}


@classification_asset("augmented_set", kinds={"albumentations"})
def augmented_set(
    context: dg.AssetExecutionContext,
    config: AugmentConfig,
    dataset_version: DatasetVersion,
    artifact_store: ArtifactStore,
    lineage: LineageStore,
) -> dg.Output[AugmentedSet]:
    """Training split at training size, plus augmented copies; stored as one .npz artifact."""
    from resources.augmentation import PRESETS, augment_images, describe_pipeline

    if config.preset not in PRESETS:
        raise dg.Failure(f"augmentation preset {config.preset!r} is unknown; choose one of {', '.join(PRESETS)}")
    images, labels, _ = load_split_images(lineage, artifact_store, dataset_version, "train", config.image_size)
    copies = config.copies_per_image if config.preset != "none" else 0
    if copies:
        aug_images, aug_labels, source = augment_images(
            images,
            labels,
            preset=config.preset,
            copies_per_image=copies,
            balance_classes=config.balance_classes,
            seed=config.seed,
        )
    else:
        aug_images = np.zeros((0, *images.shape[1:]), dtype=np.uint8)
        aug_labels = np.zeros(0, dtype=np.int64)
        source = np.zeros(0, dtype=np.int64)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        train_images=images,
        train_labels=labels,
        aug_images=aug_images,
        aug_labels=aug_labels,
        aug_source=source,
    )
    artifact = artifact_store.put_bytes(buffer.getvalue(), kind="augmented", suffix=".npz")
    augmented_id = f"augmented:{artifact.sha256}"
    spec = describe_pipeline(config.preset) if config.preset != "none" else {}
    record_lineage(
        context,
        lineage,
        output_id=augmented_id,
        input_ids=[dataset_version.id],
        parameters={**config.model_dump(), "pipeline": spec},
    )
    context.log.info(f"{len(images)} training images + {len(aug_images)} augmented copies at {config.image_size}px")
    handle = AugmentedSet(
        id=augmented_id,
        dataset_id=dataset_version.id,
        artifact=artifact,
        image_size=config.image_size,
        preset=config.preset,
        seed=config.seed,
        n_original=len(images),
        n_augmented=len(aug_images),
    )
    per_class = {
        cls: int((labels == i).sum() + (aug_labels == i).sum()) for i, cls in enumerate(dataset_version.classes)
    }
    return dg.Output(
        handle,
        metadata={
            "augmented_set_id": augmented_id,
            "n_original": len(images),
            "n_augmented": len(aug_images),
            "images_per_class_after_augmentation": dg.MetadataValue.json(per_class),
            "pipeline": dg.MetadataValue.json(spec),
            "size_bytes": artifact.n_bytes,
        },
    )
