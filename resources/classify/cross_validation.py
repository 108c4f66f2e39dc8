"""Stratified k-fold cross-validation, grouped by near-duplicate hash, over train + val.

One train/val/test split gives one number; on a few hundred images that number moves by points
between seeds. Cross-validation retrains the recipe K times, each time holding out a different
fold of train + val, and reports the spread. Folds come from scikit-learn's
``StratifiedGroupKFold``: every class is spread over the folds as evenly as the groups allow, and a
near-duplicate group (the dataset version's ``group_id``) never straddles a fold, so no fold is
scored on near-copies of its training images. The test split is not used here; it stays untouched
until the final model is scored once.

Inside each fold the recipe runs as it does for the real model: an inner validation part (one
fold of an inner ``StratifiedGroupKFold`` over the fold's training part) selects the epoch and
calibrates the zero-escape threshold, and the held-out fold is then scored with that threshold.
"""

import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from resources.models.train_settings import TrainResult, TrainSettings
from resources.errors import MfgVisionError

__all__ = [
    "CrossValidationError",
    "CrossValidationOutcome",
    "check_folds_possible",
    "cross_validate_recipe",
    "fold_indices",
    "run_cross_validation",
]

logger = logging.getLogger(__name__)

TrainFn = Callable[..., TrainResult]
PredictFn = Callable[[bytes, np.ndarray], np.ndarray]
INNER_FOLDS = 5


class CrossValidationError(MfgVisionError, ValueError):
    """The data cannot be split into the folds asked for; the message says what to change."""


@dataclass(frozen=True)
class CrossValidationOutcome:
    folds: int
    per_fold: list[dict[str, Any]]
    accuracy_mean: float
    accuracy_std: float
    false_reject_rate_mean: float | None
    false_reject_rate_std: float | None
    escape_rate_mean: float | None
    seconds: float


def check_folds_possible(
    labels: Sequence[str], folds: int, groups: Sequence[Any] | None = None, option: str = "--cv-folds"
) -> None:
    """Every class needs at least ``folds`` near-duplicate groups (or images, without groups) in
    train + val: a group never splits, so a class with fewer groups than folds leaves a fold without it."""
    if folds < 2:
        raise CrossValidationError(f"{option} {folds}: cross-validation needs at least 2 folds")
    names = [str(label) for label in labels]
    members = range(len(names)) if groups is None else groups  # without groups every image is its own group
    per_class = Counter(name for name, _ in set(zip(names, members, strict=True)))
    unit = "images" if groups is None else "groups of near-duplicate images"
    short = [f"{n} ({c})" for n, c in sorted(per_class.items()) if c < folds]
    if short:
        raise CrossValidationError(
            f"{option} {folds}: class(es) {', '.join(short)} have fewer {unit} in train + val than folds; "
            f"use --cv-folds {max(2, min(per_class.values()))} or fewer, or add images of those classes"
        )


def fold_indices(labels: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, held-out) index pairs of a seeded ``StratifiedGroupKFold``."""
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    try:
        return [(train, held) for train, held in splitter.split(np.zeros(len(labels)), labels, groups)]
    except ValueError as exc:  # e.g. fewer groups than folds
        raise CrossValidationError(f"--cv-folds {folds}: the images cannot be split into {folds} folds ({exc})") from exc


def _rates(scores: np.ndarray, defect: np.ndarray, threshold: float) -> tuple[float | None, float | None]:
    rejected = scores >= threshold
    frr = float(rejected[~defect].mean()) if (~defect).any() else None
    escape = float((~rejected[defect]).mean()) if defect.any() else None
    return frr, escape


def _mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return None, None
    return float(np.mean(present)), float(np.std(present, ddof=1)) if len(present) > 1 else 0.0


def run_cross_validation(
    *,
    images: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    classes: Sequence[str],
    good_class: str | None,
    settings: TrainSettings,
    folds: int,
    seed: int,
    train: TrainFn,
    predict: PredictFn,
    on_fold: Callable[[dict[str, Any]], None] | None = None,
) -> CrossValidationOutcome:
    """Train and score the recipe on each fold; ``predict(checkpoint, images)`` gives probabilities."""
    import time

    from resources.reporting.metrics import calibrate_threshold

    classes = list(classes)
    check_folds_possible([classes[i] for i in labels], folds, groups=list(groups))
    started = time.monotonic()
    per_fold: list[dict[str, Any]] = []
    good_index = None if good_class is None else classes.index(good_class)
    for fold, (train_index, held_index) in enumerate(fold_indices(labels, groups, folds, seed), start=1):
        inner_splits = min(INNER_FOLDS, int(np.bincount(labels[train_index], minlength=len(classes)).min()))
        if inner_splits < 2:
            raise CrossValidationError(
                f"--cv-folds {folds}: fold {fold}'s training part has a class with fewer than 2 images; use fewer folds"
            )
        fit_part, select_part = fold_indices(labels[train_index], groups[train_index], inner_splits, seed)[0]
        fit, select = train_index[fit_part], train_index[select_part]
        fold_started = time.monotonic()
        # A fold that stays at chance is a result about the recipe, scored like any other, not an error.
        result = train(
            images[fit], labels[fit], images[select], labels[select], classes, settings,
            good_class=good_class, require_learning=False,
        )
        held_probs = predict(result.checkpoint, images[held_index])
        held_labels = labels[held_index]
        record: dict[str, Any] = {
            "fold": fold,
            "n_train": int(len(fit)),
            "n_select": int(len(select)),
            "n_held_out": int(len(held_index)),
            "accuracy": float((held_probs.argmax(1) == held_labels).mean()),
            "best_epoch": result.best_epoch,
            "learned": result.learned,
            "seconds": round(time.monotonic() - fold_started, 2),
        }
        if good_index is not None:
            select_probs = predict(result.checkpoint, images[select])
            select_scores = 1.0 - select_probs[:, good_index]
            select_defect = labels[select] != good_index
            if select_defect.any() and (~select_defect).any():
                threshold = calibrate_threshold(select_scores, select_defect).threshold
                frr, escape = _rates(1.0 - held_probs[:, good_index], held_labels != good_index, threshold)
                record.update(threshold=threshold, false_reject_rate=frr, escape_rate=escape)
            else:
                record.update(threshold=None, false_reject_rate=None, escape_rate=None,
                              note="the fold's selection part lacks good or defective images; no threshold")
        per_fold.append(record)
        logger.info("cross-validation fold %d/%d: %s", fold, folds, record)
        if on_fold is not None:
            on_fold(record)
    accuracy_mean, accuracy_std = _mean_std([r["accuracy"] for r in per_fold])
    frr_mean, frr_std = _mean_std([r.get("false_reject_rate") for r in per_fold])
    escape_mean, _ = _mean_std([r.get("escape_rate") for r in per_fold])
    return CrossValidationOutcome(
        folds=folds,
        per_fold=per_fold,
        accuracy_mean=float(accuracy_mean if accuracy_mean is not None else math.nan),
        accuracy_std=float(accuracy_std if accuracy_std is not None else math.nan),
        false_reject_rate_mean=frr_mean,
        false_reject_rate_std=frr_std,
        escape_rate_mean=escape_mean,
        seconds=round(time.monotonic() - started, 2),
    )


def cross_validate_recipe(
    settings: dict[str, Any], data: Any, *, folds: int, seed: int, trainer: Any, log: Any
) -> dict[str, Any]:
    """The recipe's ``settings`` retrained on ``folds`` folds of a dataset version's train + val
    (``data``: a ``resources.engine_io.TaskData``); the summary the report's cross-validation shows."""
    from resources.data.images import load_rgb_batch

    if folds == 1:
        raise CrossValidationError("--cv-folds 1: cross-validation needs at least 2 folds (or 0 for none)")
    train_settings = TrainSettings.model_validate(settings)
    items = data.items()
    pool = items[items["split"].isin(["train", "val"])].reset_index(drop=True)
    check_folds_possible(list(pool["label"]), folds, groups=list(pool["group_id"]))
    index = {name: i for i, name in enumerate(data.classes)}
    labels = np.array([index[label] for label in pool["label"]], dtype=np.int64)
    images = load_rgb_batch([data.store.path(p) for p in pool["artifact"]], train_settings.image_size, train_settings.resize)
    log.info(
        f"cross-validation: {folds} folds over {len(pool)} train + val images "
        f"({pool['group_id'].nunique()} near-duplicate groups)"
    )
    outcome = run_cross_validation(
        images=images,
        labels=labels,
        groups=pool["group_id"].to_numpy(),
        classes=data.classes,
        good_class=data.good_class,
        settings=train_settings,
        folds=folds,
        seed=seed,
        train=trainer.train,
        predict=trainer.predict,
        on_fold=lambda r: log.info(f"fold {r['fold']}/{folds}: {r}"),
    )
    return {
        "folds": outcome.folds,
        "accuracy_mean": outcome.accuracy_mean,
        "accuracy_std": outcome.accuracy_std,
        "false_reject_rate_mean": outcome.false_reject_rate_mean,
        "false_reject_rate_std": outcome.false_reject_rate_std,
        "escape_rate_mean": outcome.escape_rate_mean,
        "per_fold": outcome.per_fold,
        "seconds": outcome.seconds,
        "seed": seed,
        "method": "StratifiedGroupKFold over train + val, groups = near-duplicate groups; test split untouched",
    }
