"""Offline augmentation: determinism, shapes, class balancing, presets and their audit record."""

import json

import numpy as np
import pytest

from resources.data.augmentation import PRESETS, augment_images, build_pipeline, describe_pipeline


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Ten seeded 32 px RGB images with some texture (flat images would hide geometric transforms)."""
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, size=(10, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    """Eight images of class 0 and two of class 1: the imbalance a defect class usually has."""
    return np.array([0] * 8 + [1] * 2, dtype=np.int64)


def test_same_seed_gives_identical_copies(images: np.ndarray, labels: np.ndarray) -> None:
    first = augment_images(images, labels, preset="manufacturing", copies_per_image=2, balance_classes=True, seed=3)
    second = augment_images(images, labels, preset="manufacturing", copies_per_image=2, balance_classes=True, seed=3)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_different_seed_gives_different_copies(images: np.ndarray, labels: np.ndarray) -> None:
    common = {"preset": "manufacturing", "copies_per_image": 2, "balance_classes": False}
    first, _, _ = augment_images(images, labels, **common, seed=1)
    second, _, _ = augment_images(images, labels, **common, seed=2)
    assert not np.array_equal(first, second)


def test_shapes_dtypes_and_lineage(images: np.ndarray, labels: np.ndarray) -> None:
    aug, aug_labels, source = augment_images(
        images, labels, preset="manufacturing", copies_per_image=3, balance_classes=False, seed=0
    )
    assert aug.shape == (30, 32, 32, 3)
    assert aug.dtype == np.uint8
    assert aug_labels.dtype == np.int64 and source.dtype == np.int64
    np.testing.assert_array_equal(source, np.repeat(np.arange(10), 3))
    np.testing.assert_array_equal(aug_labels, labels[source])
    # The preset actually changes pixels (a no-op pipeline would pass every other check).
    assert not np.array_equal(aug, images[source])


def test_balancing_evens_out_class_counts(images: np.ndarray, labels: np.ndarray) -> None:
    _, aug_labels, source = augment_images(
        images, labels, preset="manufacturing", copies_per_image=1, balance_classes=True, seed=0
    )
    totals = np.bincount(labels, minlength=2) + np.bincount(aug_labels, minlength=2)
    # Majority class: 8 originals + 8 copies; the rare class is topped up to the same 16.
    np.testing.assert_array_equal(totals, [16, 16])
    per_source = np.bincount(source, minlength=len(images))
    assert per_source.min() >= 1
    assert per_source[labels == 1].min() == 7


def test_balancing_with_uneven_division_stays_close(labels: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(11, 16, 16, 3), dtype=np.uint8)
    uneven = np.array([0] * 8 + [1] * 3, dtype=np.int64)
    _, aug_labels, _ = augment_images(images, uneven, preset="none", copies_per_image=0, balance_classes=True, seed=0)
    totals = np.bincount(uneven, minlength=2) + np.bincount(aug_labels, minlength=2)
    np.testing.assert_array_equal(totals, [8, 8])


def test_none_preset_copies_pixels_unchanged(images: np.ndarray, labels: np.ndarray) -> None:
    aug, _, source = augment_images(images, labels, preset="none", copies_per_image=1, balance_classes=False, seed=0)
    np.testing.assert_array_equal(aug, images[source])


def test_zero_copies_without_balancing_is_empty(images: np.ndarray, labels: np.ndarray) -> None:
    aug, aug_labels, source = augment_images(
        images, labels, preset="manufacturing", copies_per_image=0, balance_classes=False, seed=0
    )
    assert aug.shape == (0, 32, 32, 3) and len(aug_labels) == 0 and len(source) == 0


def test_unknown_preset_lists_the_valid_ones(images: np.ndarray, labels: np.ndarray) -> None:
    with pytest.raises(ValueError, match="expected one of manufacturing, none"):
        build_pipeline("factory")
    with pytest.raises(ValueError, match="'factory'"):
        augment_images(images, labels, preset="factory", copies_per_image=1, balance_classes=False, seed=0)


@pytest.mark.parametrize(
    ("bad_images", "bad_labels", "message"),
    [
        (np.zeros((2, 8, 8), dtype=np.uint8), np.array([0, 1]), "N×H×W×3"),
        (np.zeros((2, 8, 8, 3), dtype=np.float32), np.array([0, 1]), "uint8"),
        (np.zeros((2, 8, 8, 3), dtype=np.uint8), np.array([0, 1, 1]), "labels must have shape"),
    ],
)
def test_bad_inputs_are_rejected(bad_images: np.ndarray, bad_labels: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        augment_images(bad_images, bad_labels, preset="none", copies_per_image=1, balance_classes=False, seed=0)


def test_describe_pipeline_is_json_and_names_the_transforms() -> None:
    spec = describe_pipeline("manufacturing")
    text = json.dumps(spec)
    expected = ("Affine", "RandomBrightnessContrast", "Illumination", "GaussNoise", "CoarseDropout", "ImageCompression")
    for name in expected:
        assert name in text
    assert set(PRESETS) == {"manufacturing", "none"}
    assert json.dumps(describe_pipeline("none"))
