"""Checks ``mfgv onboard`` makes before anything is landed or registered.

A bad option found an hour into a run, after the data was copied and a variant registered, costs
the user the hour and leaves debris; found here it costs seconds. Each failure is an
:class:`~mfg_assets.onboard.OnboardError`-style message naming the option and what to do. The
Dagster assets check the same things again (a run can be launched from the UI without this CLI).
"""

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["PreflightError", "check_cv_folds", "check_start_options", "class_counts"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
TRAIN_VAL_SHARE = 0.8  # train + val fractions of the default split


class PreflightError(ValueError):
    """An option cannot work with this dataset or this installation; the message says why."""


def class_counts(data_dir: Path, label_format: str) -> dict[str, int]:
    """Images per class as the dataset declares them (folders, labels.csv or COCO)."""
    if label_format == "folders":
        counts = {}
        for folder in sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            counts[folder.name] = sum(1 for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        return counts
    from resources.labels import labels_from_coco, labels_from_csv

    label_file = data_dir / ("labels.csv" if label_format == "csv" else "annotations.json")
    labels = labels_from_csv(label_file) if label_format == "csv" else labels_from_coco(label_file)
    distinct = labels.drop_duplicates("path")
    return {str(k): int(v) for k, v in distinct["label"].value_counts().sort_index().items()}


def check_cv_folds(folds: int | None, counts: Mapping[str, int]) -> None:
    """Each class must keep at least ``folds`` images in train + val (about 80 % of its images)."""
    if folds is None or folds == 0:
        return
    if folds < 2:
        raise PreflightError(f"--cv-folds {folds}: cross-validation needs at least 2 folds")
    short = {name: n for name, n in counts.items() if math.floor(n * TRAIN_VAL_SHARE) < folds}
    if short:
        listed = ", ".join(f"{name} ({n} images, about {math.floor(n * TRAIN_VAL_SHARE)} in train + val)" for name, n in short.items())
        fewest = max(2, min(math.floor(n * TRAIN_VAL_SHARE) for n in counts.values()))
        raise PreflightError(
            f"--cv-folds {folds}: too few images for {folds} folds in class(es) {listed}; "
            f"use --cv-folds {fewest} or fewer, or add images of those classes"
        )


def check_start_options(
    *,
    backbone: str | None,
    arch: str | None,
    pretrained_weights: str | None,
    init_from: str | None,
    num_classes: int,
) -> dict[str, Any]:
    """Refuse an unknown or missing backbone, an unusable weights file and a registered model that
    does not exist or does not fit, by building the starting model once; returns the recipe fields."""
    from resources.backbones import BackboneError, get_spec, weights_path
    from resources.classification_settings import SCRATCH, TrainSettings
    from resources.model_init import WeightsError, check_start, read_checkpoint_arch

    if pretrained_weights and init_from:
        raise PreflightError("--pretrained-weights and --init-from both given; start from one of them")
    if arch and backbone is None:
        backbone = SCRATCH  # --arch alone: that timm architecture, from scratch or from --pretrained-weights
    fields: dict[str, Any] = {"backbone": backbone, "arch": arch, "pretrained_weights": pretrained_weights}
    try:
        if backbone not in (None, SCRATCH) and not (pretrained_weights or init_from):
            weights_path(get_spec(backbone))
        if init_from:
            fields.update(_registered_start(init_from, read_checkpoint_arch))
        settings = TrainSettings.model_validate({k: v for k, v in fields.items() if v is not None})
        check_start(settings, num_classes)
    except (BackboneError, WeightsError) as exc:
        raise PreflightError(str(exc)) from exc
    except ValueError as exc:  # pydantic's ValidationError: a setting out of bounds
        raise PreflightError(f"training options are invalid: {exc}") from exc
    return {k: v for k, v in fields.items() if k in ("backbone", "arch", "pretrained_weights")}


def _registered_start(version_name: str, read_checkpoint_arch: Any) -> dict[str, Any]:
    from resources.artifact_store import ArtifactStore
    from resources.registry import ModelRegistry, UnknownModelVersion

    registry = ModelRegistry()
    try:
        version = registry.get(version_name)
    except UnknownModelVersion:
        known = ", ".join(v.version for v in registry.list_versions()) or "none registered yet"
        raise PreflightError(
            f"--init-from {version_name}: no such registered model version (registered: {known}); see `mfgv models`"
        ) from None
    if version.task != "classify":
        raise PreflightError(f"--init-from {version_name} is a {version.task} model; a classifier starts from a classify model")
    path = ArtifactStore().path(version.artifacts["checkpoint"])
    info = read_checkpoint_arch(path)
    if info["channels"] != 3:
        raise PreflightError(
            f"--init-from {version_name}: the model takes {info['channels']}-channel input, this platform's classifiers "
            "take 3 (RGB); start from a bundled --backbone instead"
        )
    return {"init_checkpoint": str(path), "arch": info["arch"]}
