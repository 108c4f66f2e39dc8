"""Offline image augmentation for visual inspection, built on albumentations.

Why offline copies (written by the ``augmented_set`` asset) instead of only on-the-fly
augmentation: the copies are content-hashed and recorded in lineage, so a model can be traced back
to exactly the pixels it saw, and the expensive photometric transforms (JPEG re-encoding, defocus)
are paid once rather than every epoch on a 2-core line PC.

The ``manufacturing`` preset imitates what actually changes on a production line between the day
the training images were taken and the day the model runs: lamp ageing and exposure drift
(brightness/contrast, gamma, a directional illumination gradient), sensor noise, slight defocus,
small misplacements of the part (rotation within ±10°, shift, scale), dust or oil specks on the
part or lens, and JPEG artefacts from the camera's encoder. Every transform keeps the image size,
so the copies can be stacked with the originals.

albumentations is imported inside the functions (importing it costs about 3 s and it queries the
package index at import unless the offline switches are set first).
"""

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from resources.settings import apply_offline_switches

if TYPE_CHECKING:
    import albumentations

__all__ = ["PRESETS", "augment_images", "build_pipeline", "describe_pipeline"]

logger = logging.getLogger(__name__)

PRESETS: tuple[str, ...] = ("manufacturing", "none")


def _import_albumentations() -> Any:
    """Import albumentations only after the offline switches are set (it phones home otherwise)."""
    apply_offline_switches()
    import albumentations as A

    return A


def build_pipeline(preset: str, *, seed: int | None = None) -> "albumentations.Compose":
    """Build the albumentations pipeline of a named preset.

    ``seed`` seeds the Compose's own random generator, so that the same seed replays the same
    sequence of transforms; leave it ``None`` for an unseeded pipeline.

    Raises:
        ValueError: ``preset`` is not one of :data:`PRESETS`.
    """
    if preset not in PRESETS:
        raise ValueError(f"augmentation preset {preset!r} is unknown; expected one of {', '.join(PRESETS)}")
    A = _import_albumentations()
    import cv2

    if preset == "none":
        return A.Compose([], seed=seed)

    # Probabilities are moderate on purpose: most copies should get two or three effects, not all of
    # them at once, or the copies drift away from what the camera ever produces.
    transforms = [
        # Geometry: the part is placed within a few millimetres and degrees on the conveyor. Reflecting
        # the border keeps surface texture at the edges instead of black wedges a model could key on.
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.Affine(
            rotate=(-10.0, 10.0),
            translate_percent=(-0.05, 0.05),
            scale=(0.92, 1.08),
            border_mode=cv2.BORDER_REFLECT_101,
            p=0.7,
        ),
        # Lighting: exposure drift, lamp ageing and a lamp that lights one side more than the other.
        A.RandomBrightnessContrast(brightness_limit=(-0.2, 0.2), contrast_limit=(-0.2, 0.2), p=0.7),
        A.RandomGamma(gamma_limit=(80.0, 120.0), p=0.3),
        A.Illumination(mode="linear", intensity_range=(0.05, 0.2), effect_type="both", p=0.3),
        # Sensor: read noise, and a lens slightly out of focus.
        A.GaussNoise(std_range=(0.01, 0.05), p=0.3),
        A.OneOf(
            [
                A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.3, 1.2), p=1.0),
                A.Defocus(radius=(1, 3), alias_blur=(0.1, 0.3), p=1.0),
            ],
            p=0.2,
        ),
        # Dust (bright) and oil (dark) specks of a few pixels on the part or the lens.
        A.CoarseDropout(num_holes_range=(1, 6), hole_height_range=(1, 3), hole_width_range=(1, 3), fill=25.0, p=0.2),
        A.CoarseDropout(num_holes_range=(1, 6), hole_height_range=(1, 3), hole_width_range=(1, 3), fill=230.0, p=0.2),
        # The camera's JPEG encoder.
        A.ImageCompression(compression_type="jpeg", quality_range=(60, 95), p=0.3),
    ]
    return A.Compose(transforms, seed=seed)


def describe_pipeline(preset: str) -> dict[str, Any]:
    """The preset's full specification as a JSON-serialisable dict (albumentations' ``to_dict``).

    Recorded in lineage next to the augmented set, so an audit can see every transform and
    probability that produced the training copies, even after the preset's code changes.
    """
    A = _import_albumentations()
    return dict(A.to_dict(build_pipeline(preset)))


def _copies_per_source(
    labels: np.ndarray, copies_per_image: int, balance_classes: bool, rng: np.random.Generator
) -> np.ndarray:
    """How many augmented copies each input image gets.

    With balancing, every class is topped up to the count the most frequent class reaches with
    ``copies_per_image`` copies of each of its images; the copies of a class are spread evenly over
    its images, and the few left over go to randomly chosen images of that class.
    """
    counts = np.zeros(len(labels), dtype=np.int64)
    if not balance_classes:
        counts[:] = copies_per_image
        return counts
    classes, class_sizes = np.unique(labels, return_counts=True)
    target = int(class_sizes.max()) * (1 + copies_per_image)
    for cls, size in zip(classes, class_sizes, strict=True):
        members = np.flatnonzero(labels == cls)
        needed = target - int(size)
        base, extra = divmod(needed, int(size))
        counts[members] = base
        if extra:
            counts[rng.choice(members, size=extra, replace=False)] += 1
    return counts


def augment_images(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    preset: str,
    copies_per_image: int,
    balance_classes: bool,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Make augmented copies of labelled images.

    Only the copies are returned (not the originals): the caller stores them beside the originals
    and ``source_index`` keeps the lineage from each copy to the image it came from.

    Args:
        images: uint8 array N×H×W×3, already at training size (augmenting after resizing keeps
            the specks and noise at the scale the model sees).
        labels: integer class indices, shape (N,).
        preset: one of :data:`PRESETS`.
        copies_per_image: copies of every image (of the most frequent class, when balancing).
        balance_classes: give rarer classes proportionally more copies, so that every class ends
            with about the same count of originals plus copies; each image still gets at least
            ``copies_per_image`` copies. Defect classes are usually rare on a line, and a model
            trained on raw frequencies learns to call everything "good".
        seed: seeds both the choice of copies and albumentations' Compose, so the same inputs and
            seed give byte-identical copies.

    Returns:
        ``(aug_images, aug_labels, source_index)``: uint8 M×H×W×3, int64 (M,), int64 (M,) indices
        into ``images``, ordered by source image.

    Raises:
        ValueError: an unknown preset, a negative copy count, or images/labels of the wrong shape,
            dtype or length.
    """
    if preset not in PRESETS:
        raise ValueError(f"augmentation preset {preset!r} is unknown; expected one of {', '.join(PRESETS)}")
    if copies_per_image < 0:
        raise ValueError(f"copies_per_image must be >= 0, got {copies_per_image}; pass 0 for no copies")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"images must be an N×H×W×3 array, got shape {images.shape}; convert grey images to 3 channels first"
        )
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (0..255), got {images.dtype}; convert before augmenting")
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(
            f"labels must have shape ({len(images)},) to match the images, got {labels.shape}; "
            "pass one class index per image"
        )
    if len(labels) and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}; map class names first")

    height, width = images.shape[1:3]
    rng = np.random.default_rng(seed)
    per_source = _copies_per_source(labels, copies_per_image, balance_classes, rng)
    source_index = np.repeat(np.arange(len(images), dtype=np.int64), per_source)
    aug_images = np.empty((len(source_index), height, width, 3), dtype=np.uint8)

    pipeline = build_pipeline(preset, seed=seed)
    for out_pos, src in enumerate(source_index):
        # albumentations may return a non-contiguous view or a same-dtype copy; both assign cleanly.
        result = pipeline(image=images[src])["image"]
        if result.shape != (height, width, 3):
            raise RuntimeError(
                f"augmentation preset {preset!r} changed image {src} from {(height, width, 3)} to {result.shape}; "
                "every transform must keep the size, fix the preset"
            )
        aug_images[out_pos] = result

    logger.info(
        "augmented %d images into %d copies (preset=%s, copies_per_image=%d, balanced=%s, seed=%d)",
        len(images),
        len(source_index),
        preset,
        copies_per_image,
        balance_classes,
        seed,
    )
    return aug_images, labels[source_index].astype(np.int64), source_index
