"""``augmented_set``: the training images at the model's input size, plus optional seeded copies.

The input size is chosen here from the data (unless configured) and the images are fitted to it
(letterbox by default), so every later asset reads the same pixels. Offline manufacturing
augmentation (albumentations) is off by default: the trainer's online flips, shifts and
brightness/contrast changes with class-balanced sampling were measured to be enough and cost
nothing in storage. When copies are asked for they are materialized, so the exact training inputs
are an auditable artifact with a hash; the pipeline spec and the seed are recorded with it.
Class imbalance is the trainer's sampler's job; ``balance_classes`` (off by default) would
balance a second time.
"""

import io

import dagster as dg
import numpy as np
from pydantic import Field

from mfg_assets.common import inspection_asset, record_lineage, run_seed
from mfg_assets.datasets import load_dataset_items, load_split_images
from mfg_assets.handles import AugmentedSet, DatasetVersion
from mfg_assets.ingest import load_image_table
from mfg_assets.saved_options import config_for_run
from resources.artifact_store import ArtifactStore
from resources.lineage import LineageStore

__all__ = ["AugmentConfig", "augmented_set", "load_augmented_arrays", "training_arrays"]


class AugmentConfig(dg.Config):
    image_size: int | None = Field(
        None,
        ge=16,
        le=1024,
        description=(
            "side in pixels the model is trained and run at; None chooses it from the data: the median longer "
            "side of the training images, rounded to 32 and kept within 64..224 (the CPU budget)"
        ),
    )
    resize: str = Field("letterbox", description="letterbox (keep the aspect ratio, pad) or squash")
    preset: str = Field("manufacturing", description="augmentation preset: manufacturing or none")
    copies_per_image: int = Field(
        0,
        ge=0,
        le=20,
        description=(
            "offline augmented copies of each training image (0: the trainer's online augmentation and "
            "class-balanced sampling only, the measured default)"
        ),
    )
    balance_classes: bool = Field(
        False, description="give rarer classes more copies (the trainer already samples classes balanced)"
    )
    seed: int | None = Field(None, ge=0, description="seed of the augmentation (None: the dataset version's); recorded")


def load_augmented_arrays(store: ArtifactStore, augmented: AugmentedSet) -> dict[str, np.ndarray]:
    with np.load(store.path(augmented.artifact)) as arrays:
        return {name: arrays[name] for name in arrays.files}


def training_arrays(
    lineage: LineageStore,
    store: ArtifactStore,
    dataset: DatasetVersion,
    augmented: AugmentedSet,
    size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train images + labels (the augmented set's, with its copies, at its size; the original train
    images at another size) and val images + labels, all at ``size``."""
    if size == augmented.image_size:
        arrays = load_augmented_arrays(store, augmented)
        train_images = np.concatenate([arrays["train_images"], arrays["aug_images"]])
        train_labels = np.concatenate([arrays["train_labels"], arrays["aug_labels"]])
    else:
        train_images, train_labels, _ = load_split_images(lineage, store, dataset, "train", size, augmented.resize)
    val_images, val_labels, _ = load_split_images(lineage, store, dataset, "val", size, augmented.resize)
    return train_images, train_labels, val_images, val_labels


@inspection_asset("augmented_set", kinds={"albumentations"})
def augmented_set(
    context: dg.AssetExecutionContext,
    config: AugmentConfig,
    dataset_version: DatasetVersion,
    artifact_store: ArtifactStore,
    lineage: LineageStore,
) -> dg.Output[AugmentedSet]:
    """Training split at training size, plus augmented copies; stored as one .npz artifact."""
    config = config_for_run(context, config, lineage.home_path())
    from edge_sync.contract.imaging import ResizeMode
    from resources.data.augmentation import PRESETS, augment_images, describe_pipeline
    from resources.data.images import choose_input_size
    from resources.tasks import OptionRefused, engine_for

    if config.preset not in PRESETS:
        raise dg.Failure(f"augmentation preset {config.preset!r} is unknown; choose one of {', '.join(PRESETS)}")
    if config.resize not in {m.value for m in ResizeMode}:
        raise dg.Failure(f"resize {config.resize!r} is unknown; choose one of {', '.join(m.value for m in ResizeMode)}")
    engine = engine_for(dataset_version.task)
    try:
        engine.refuse({"augment_copies": config.copies_per_image > 0})
    except OptionRefused as exc:
        raise dg.Failure(str(exc)) from exc
    image_size = config.image_size if config.image_size is not None else engine.default_input_size
    if image_size is not None and config.image_size is None:
        context.log.info(f"input size {image_size} px: the {engine.task} task's default")
    if image_size is None:
        items = load_dataset_items(lineage, dataset_version.id)
        sides = _longer_sides(lineage, items[items["split"] == "train"])
        image_size = choose_input_size(sides)
        context.log.info(
            f"input size {image_size} px chosen from the data: median longer side {float(np.median(sides)):.0f} px "
            f"of {len(sides)} training images, rounded to 32 within 64..224"
        )
    seed = run_seed(config.seed, dataset_version.split_spec)
    images, labels, _ = load_split_images(
        lineage, artifact_store, dataset_version, "train", image_size, config.resize
    )
    copies = config.copies_per_image if config.preset != "none" else 0
    if copies:
        aug_images, aug_labels, source = augment_images(
            images,
            labels,
            preset=config.preset,
            copies_per_image=copies,
            balance_classes=config.balance_classes,
            seed=seed,
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
        parameters={**config.model_dump(), "seed": seed, "image_size": image_size, "pipeline": spec},
    )
    context.log.info(
        f"{len(images)} training images + {len(aug_images)} augmented copies at {image_size}px ({config.resize})"
    )
    handle = AugmentedSet(
        id=augmented_id,
        dataset_id=dataset_version.id,
        artifact=artifact,
        image_size=image_size,
        resize=config.resize,
        preset=config.preset,
        seed=seed,
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
            "image_size": image_size,
            "resize": config.resize,
        },
    )


def _longer_sides(lineage: LineageStore, items) -> np.ndarray:
    """The longer side in pixels of each image in ``items`` (from the ingest table's width and height)."""
    images = load_image_table(lineage, items["partition"].iloc[0])
    sizes = images.drop_duplicates("sha256").set_index("sha256")[["width", "height"]]
    chosen = sizes.loc[items["sha256"]]
    return np.maximum(chosen["width"].to_numpy(), chosen["height"].to_numpy())
