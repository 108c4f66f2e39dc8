"""The optuna search: seeded, pruned on epoch values, time-limited, every trial recorded, plots offline."""

import numpy as np
import pytest

from resources.models.train_settings import EpochRecord, TrainResult, TrainSettings
from resources.classify.search import PRUNE_AFTER_EPOCHS, SearchSpace, classification_space, objective_value, run_search

CLASSES = ("good", "crack")
BASE = TrainSettings(backbone="none", arch="test_resnet", image_size=32, epochs=6)
SPACE = SearchSpace(image_sizes=(32,), backbones=("none",), epochs=(5, 6))


def _arrays(size: int):
    rng = np.random.default_rng(size)
    images = rng.integers(0, 256, (8, size, size, 3), dtype=np.uint8)
    return images, np.arange(8) % 2, images, np.arange(8) % 2


def _fake_train(calls: list[TrainSettings], frr_of=lambda s, epoch: abs(np.log10(s.learning_rate) + 3) / 3):
    """A trainer whose validation FRR and loss are best near lr = 1e-3 and improve with epochs."""

    def train(train_x, train_y, val_x, val_y, classes, settings, on_epoch=None, good_class=None):
        calls.append(settings)
        history = []
        for epoch in range(1, settings.epochs + 1):
            record = EpochRecord(
                epoch=epoch, train_loss=1.0, val_loss=(1.0 + frr_of(settings, epoch)) / epoch, val_accuracy=0.5 + 0.1 * epoch,
                val_balanced_accuracy=0.5, val_false_reject_rate=frr_of(settings, epoch) / epoch,
                learning_rate=settings.learning_rate, seconds=0.01,
            )
            history.append(record)
            if on_epoch is not None:
                on_epoch(record)
        return TrainResult(checkpoint=b"weights", history=history, best_epoch=len(history), train_seconds=0.1, init={})

    return train


def _search(calls, **overrides):
    kwargs = dict(
        arrays_for_size=_arrays, classes=CLASSES, good_class="good", base=BASE, space=SPACE, n_trials=8,
        minutes=None, seed=3, train=_fake_train(calls),
    )
    kwargs.update(overrides)
    return run_search(**kwargs)


def test_search_is_seeded_records_every_trial_and_picks_the_lowest_value() -> None:
    first_calls: list[TrainSettings] = []
    first = _search(first_calls)
    second = _search([])
    assert [t.params for t in first.trials] == [t.params for t in second.trials]  # same seed, same trials
    assert len(first.trials) == 8
    assert {t.state for t in first.trials} <= {"complete", "pruned"}
    completed = [t for t in first.trials if t.state == "complete"]
    assert first.best_value == min(t.value for t in completed)
    assert first.best_settings.learning_rate == first.best_params["learning_rate"]
    assert first.best_result is not None and first.best_result.checkpoint == b"weights"
    assert all(t.seconds >= 0 and t.epochs_run >= 1 for t in first.trials)
    assert first.plots and all(png.startswith(b"\x89PNG") for png in first.plots.values())
    assert "param_importances" in first.plots


def test_trials_that_fall_behind_are_pruned_at_an_epoch() -> None:
    # lr far from 1e-3 is much worse at every epoch: the median pruner stops such trials early
    outcome = _search([], n_trials=12)
    pruned = [t for t in outcome.trials if t.state == "pruned"]
    assert pruned, [t.intermediate for t in outcome.trials]
    assert all(t.epochs_run <= t.params["epochs"] and "pruned at epoch" in t.reason for t in pruned)
    assert any(t.epochs_run < t.params["epochs"] for t in pruned)  # stopped before its last epoch
    assert all(t.epochs_run > PRUNE_AFTER_EPOCHS for t in pruned)  # every trial gets past the warm-up


def test_pruning_compares_validation_loss_not_the_noisy_false_reject_rate() -> None:
    # FRR is awful (and random-looking) for every lr, but the loss is best near 1e-3: pruning follows the loss.
    rng = np.random.default_rng(0)
    outcome = _search([], n_trials=12, train=_fake_train([], frr_of=lambda s, epoch: float(rng.uniform(0.5, 1.0)) * epoch))
    for trial in outcome.trials:
        assert trial.intermediate == sorted(trial.intermediate, reverse=True)  # best-so-far loss never rises
    pruned = [t for t in outcome.trials if t.state == "pruned"]
    assert all("validation loss" in t.reason for t in pruned)


def test_time_limit_stops_the_trial_in_progress_and_the_search() -> None:
    ticks = iter(range(0, 100000, 20))  # every look at the clock moves it 20 s on
    outcome = _search([], n_trials=None, minutes=5.0, clock=lambda: next(ticks))
    assert outcome.trials[-1].state == "pruned" and outcome.trials[-1].reason == "time limit reached"
    assert outcome.trials[0].state == "complete" and len(outcome.trials) < 8
    assert outcome.best_value is not None


def test_a_trial_that_does_not_learn_is_recorded_as_failed_and_the_search_goes_on() -> None:
    from resources.classify.trainer import TrainingDidNotLearn

    good = _fake_train([])

    def sometimes_fails(*args, **kwargs):
        if args[5].learning_rate > 1.5e-3:
            raise TrainingDidNotLearn("training did not learn: at chance")
        return good(*args, **kwargs)

    outcome = _search([], train=sometimes_fails)
    failed = [t for t in outcome.trials if t.state == "failed"]
    assert failed and all("did not learn" in t.reason for t in failed)
    assert outcome.best_value is not None and outcome.best_value < 2.0


def test_no_completed_trial_keeps_the_configured_recipe_and_says_so() -> None:
    ticks = iter(range(0, 100000, 1000))
    outcome = _search([], n_trials=None, minutes=1.0, clock=lambda: next(ticks))
    assert outcome.best_result is None and outcome.best_settings == BASE
    assert "no trial completed" in outcome.note


def test_objective_is_frr_first_then_accuracy_without_good_class_accuracy() -> None:
    def record(frr, accuracy, loss=0.5):
        return EpochRecord(epoch=1, train_loss=1, val_loss=loss, val_accuracy=accuracy, val_balanced_accuracy=accuracy,
                           val_false_reject_rate=frr, learning_rate=1e-3, seconds=1)

    assert objective_value(record(0.01, 0.90)) < objective_value(record(0.02, 0.99))  # one FRR step beats any accuracy
    assert objective_value(record(0.01, 0.99)) < objective_value(record(0.01, 0.90))
    assert objective_value(record(None, 0.95)) < objective_value(record(None, 0.90))


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="number of trials, a time limit"):
        _search([], n_trials=None, minutes=None)
    with pytest.raises(ValueError, match="minutes must be > 0"):
        _search([], minutes=0.0)


def test_classification_space_is_built_around_the_recipe() -> None:
    space = classification_space(TrainSettings(image_size=224), ["mobilenetv2_100", "efficientnet_lite0"])
    assert space.image_sizes == (192, 224)
    assert space.backbones == ("mobilenetv2_100", "efficientnet_lite0")
    assert space.epochs == (6, 12)
    scratch = classification_space(TrainSettings(backbone="none", image_size=64), ["efficientnet_lite0"])
    assert scratch.backbones == ("none",) and scratch.image_sizes == (64,)


def test_the_first_trial_is_the_starting_recipe_so_a_short_search_never_ends_worse() -> None:
    calls: list[TrainSettings] = []
    base = BASE.model_copy(update={"learning_rate": 5e-4, "augment_strength": 0.3})
    outcome = _search(calls, base=base, n_trials=3)
    first = outcome.trials[0]
    assert first.number == 0
    assert first.params["learning_rate"] == 5e-4 and first.params["augment_strength"] == 0.3
    assert first.params["epochs"] == 6 and first.params["image_size"] == 32
    assert calls[0].learning_rate == 5e-4
    assert outcome.best_value <= first.value
