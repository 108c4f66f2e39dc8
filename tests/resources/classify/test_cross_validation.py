"""Stratified, grouped k-fold: groups never straddle folds, classes spread, too-small classes refused."""

import numpy as np
import pytest

from resources.models.train_settings import EpochRecord, TrainResult, TrainSettings
from resources.classify.cross_validation import CrossValidationError, check_folds_possible, fold_indices, run_cross_validation


def _data(n_groups: int = 30, per_group: int = 3):
    labels = np.repeat(np.arange(n_groups) % 3, per_group)  # class = group % 3
    groups = np.repeat(np.arange(n_groups), per_group)
    return labels, groups


def test_folds_keep_near_duplicate_groups_together_and_every_class_in_every_fold() -> None:
    labels, groups = _data()
    folds = fold_indices(labels, groups, 5, seed=0)
    assert len(folds) == 5
    held = np.concatenate([h for _, h in folds])
    assert sorted(held.tolist()) == list(range(len(labels)))  # each image held out exactly once
    for train, held_out in folds:
        assert not set(groups[train]) & set(groups[held_out])
        assert set(labels[held_out]) == {0, 1, 2}
    assert [h.tolist() for _, h in fold_indices(labels, groups, 5, seed=0)] == [h.tolist() for _, h in folds]


def test_a_class_with_fewer_images_than_folds_is_refused_with_the_fix() -> None:
    with pytest.raises(CrossValidationError, match=r"--cv-folds 5: class\(es\) crack \(3\).*use --cv-folds 3 or fewer"):
        check_folds_possible(["good"] * 20 + ["crack"] * 3, 5)
    with pytest.raises(CrossValidationError, match="at least 2 folds"):
        check_folds_possible(["good"] * 20, 1)


def test_cross_validation_scores_each_held_out_fold_with_its_own_threshold() -> None:
    labels, groups = _data()
    images = np.zeros((len(labels), 8, 8, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = labels  # the "model" reads the class from a pixel
    trained: list[int] = []

    def train(train_x, train_y, val_x, val_y, classes, settings, on_epoch=None, good_class=None, require_learning=True):
        assert require_learning is False  # a fold at chance is scored, not an error
        trained.append(len(train_x))
        record = EpochRecord(epoch=1, train_loss=0.1, val_loss=0.1, val_accuracy=1.0, val_balanced_accuracy=1.0,
                             val_false_reject_rate=0.0, learning_rate=1e-3, seconds=0.1)
        return TrainResult(checkpoint=b"x", history=[record], best_epoch=1, train_seconds=0.1, init={})

    def predict(checkpoint, x):
        probabilities = np.full((len(x), 3), 0.05)
        probabilities[np.arange(len(x)), x[:, 0, 0, 0]] = 0.9
        return probabilities

    outcome = run_cross_validation(
        images=images, labels=labels, groups=groups, classes=["good", "dent", "crack"], good_class="good",
        settings=TrainSettings(backbone="none", arch="test_resnet", image_size=16), folds=3, seed=0,
        train=train, predict=predict,
    )
    assert outcome.folds == 3 and len(outcome.per_fold) == 3 and len(trained) == 3
    assert outcome.accuracy_mean == 1.0 and outcome.accuracy_std == 0.0
    assert all(f["false_reject_rate"] == 0.0 and f["escape_rate"] == 0.0 for f in outcome.per_fold)
    assert sum(f["n_held_out"] for f in outcome.per_fold) == len(labels)
    assert all(f["n_train"] + f["n_select"] + f["n_held_out"] == len(labels) for f in outcome.per_fold)
