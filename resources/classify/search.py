"""Hyperparameter search with optuna: seeded TPE, pruning on the epoch-level validation metric.

The objective is what the line pays for. With a good class it is the validation **false-reject
rate at zero validation escapes**, with accuracy as the tie-breaker (``frr + 0.001 × (1 −
accuracy)``: one good image more or less rejected always outweighs any accuracy difference);
without one, ``1 − accuracy`` with the validation loss as tie-breaker. Lower is better.

**Pruning is on the validation loss**, not on the objective: after every epoch a trial reports the
lowest validation cross-entropy so far (the epoch the trainer would keep), and optuna's median pruner
stops a trial whose loss is behind the median of earlier trials at the same epoch, from epoch
:data:`PRUNE_AFTER_EPOCHS` + 1 on. The false-reject rate at zero escapes hinges on the single hardest
defective validation image and jumped between 25 % and 96 % from one epoch to the next early in
training on magnetic tile; pruning on it after 2 epochs cut 14 of 17 trials of a 20-minute search on
noise (``BENCHMARKS.md``). The loss moves smoothly and uses every image.

The search space is per task (:func:`classification_space` for classification): learning rate and
weight decay (log-uniform), input size (the data-chosen size and one step below), backbone (the
installed bundled ones), augmentation strength and epochs. Trial 0 is always the starting recipe
itself (:func:`base_params`), so the search cannot end worse on validation than the defaults. A time limit stops the trial in progress
at its next epoch (recorded as pruned, reason ``time limit``) and ends the search.

Every trial is returned as a :class:`TrialRecord` (parameters, value, seconds, state, reason) for
lineage and the report; :func:`render_search_plots` draws optuna's own matplotlib plots to PNG,
offline. The test split is never seen here: trials train on train and are judged on val.
"""

import io
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from resources.models.train_settings import EpochRecord, TrainResult, TrainSettings
from resources.classify.trainer import TrainingDidNotLearn, selection_key

__all__ = [
    "PRUNE_AFTER_EPOCHS",
    "SearchOutcome",
    "base_params",
    "SearchSpace",
    "TrialRecord",
    "classification_space",
    "objective_value",
    "render_search_plots",
    "run_search",
]

logger = logging.getLogger(__name__)

PRUNE_AFTER_EPOCHS = 3
"""Epochs every trial runs before it can be pruned (the one-cycle warm-up is over by then)."""

ArraysForSize = Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
TrainFn = Callable[..., TrainResult]


class SearchSpace(BaseModel):
    """The ranges a classification search draws from; recorded with the search."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    learning_rate: tuple[float, float] = Field((2e-4, 3e-3), description="log-uniform range")
    weight_decay: tuple[float, float] = Field((1e-4, 0.1), description="log-uniform range")
    image_sizes: tuple[int, ...] = Field(description="input sizes to choose from")
    backbones: tuple[str, ...] = Field(description="bundled backbones to choose from")
    augment_strength: tuple[float, float] = (0.0, 1.0)
    epochs: tuple[int, int] = Field(description="integer range, inclusive")


@dataclass(frozen=True)
class TrialRecord:
    number: int
    params: dict[str, Any]
    value: float | None
    state: str  # complete | pruned | failed
    seconds: float
    epochs_run: int
    reason: str | None = None
    intermediate: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class SearchOutcome:
    trials: list[TrialRecord]
    best_params: dict[str, Any]
    best_value: float | None
    best_trial: int | None
    best_result: TrainResult | None
    best_settings: TrainSettings
    seconds: float
    sampler: dict[str, Any]
    space: SearchSpace
    objective: str
    note: str | None
    plots: dict[str, bytes]

    def trials_json(self) -> list[dict[str, Any]]:
        return [asdict(t) for t in self.trials]


def objective_value(record: EpochRecord) -> float:
    """Lower is better; see the module docstring."""
    if record.val_false_reject_rate is not None:
        return record.val_false_reject_rate + 1e-3 * (1.0 - record.val_accuracy)
    return (1.0 - record.val_accuracy) + 1e-3 * min(record.val_loss, 10.0) / 10.0


def objective_description(has_good_class: bool) -> str:
    if has_good_class:
        return "validation false-reject rate at zero validation escapes + 0.001 x (1 - validation accuracy); lower is better"
    return "1 - validation accuracy + 0.0001 x validation loss (capped at 10); lower is better"


def classification_space(base: TrainSettings, installed_backbones: Sequence[str]) -> SearchSpace:
    """The classification space around ``base``: its input size and one step (32 px) below, the
    installed bundled backbones (or only ``base``'s start when it is not a bundled backbone)."""
    epochs = base.epochs or 12
    # one step (32 px) below the recipe's size, unless that would go under 64 px
    sizes = (base.image_size - 32, base.image_size) if base.image_size - 32 >= 64 else (base.image_size,)
    if base.init_source() == "backbone":
        backbones = tuple(dict.fromkeys([base.backbone, *installed_backbones]))
    else:
        backbones = (base.backbone,)
    return SearchSpace(
        image_sizes=sizes,
        backbones=backbones,
        epochs=(max(2, epochs // 2), max(epochs, 3)),
    )


def base_params(base: TrainSettings, space: SearchSpace) -> dict[str, Any]:
    """``base``'s values for the searched parameters, leaving out any outside ``space`` (the sampler
    then draws those)."""
    low_lr, high_lr = space.learning_rate
    low_wd, high_wd = space.weight_decay
    low_aug, high_aug = space.augment_strength
    candidates = {
        "learning_rate": (base.learning_rate, low_lr <= (base.learning_rate or 0) <= high_lr),
        "weight_decay": (base.weight_decay, low_wd <= (base.weight_decay or 0) <= high_wd),
        "image_size": (base.image_size, base.image_size in space.image_sizes),
        "augment_strength": (base.augment_strength, low_aug <= base.augment_strength <= high_aug),
        "epochs": (base.epochs, space.epochs[0] <= (base.epochs or 0) <= space.epochs[1]),
    }
    if len(space.backbones) > 1:
        candidates["backbone"] = (base.backbone, base.backbone in space.backbones)
    return {name: value for name, (value, inside) in candidates.items() if inside}


def _suggest(trial: Any, space: SearchSpace) -> dict[str, Any]:
    params = {
        "learning_rate": trial.suggest_float("learning_rate", *space.learning_rate, log=True),
        "weight_decay": trial.suggest_float("weight_decay", *space.weight_decay, log=True),
        "image_size": trial.suggest_categorical("image_size", list(space.image_sizes)),
        "augment_strength": trial.suggest_float("augment_strength", *space.augment_strength),
        "epochs": trial.suggest_int("epochs", *space.epochs),
    }
    if len(space.backbones) > 1:
        params["backbone"] = trial.suggest_categorical("backbone", list(space.backbones))
    return params


class _TimeUp(Exception):
    pass


FAILED_VALUE = 2.0  # worse than any real objective (an FRR is at most 1)


def run_search(
    *,
    arrays_for_size: ArraysForSize,
    classes: Sequence[str],
    good_class: str | None,
    base: TrainSettings,
    space: SearchSpace,
    n_trials: int | None,
    minutes: float | None,
    seed: int,
    train: TrainFn,
    on_trial: Callable[[TrialRecord], None] | None = None,
    on_epoch: Callable[[int, EpochRecord], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SearchOutcome:
    """Run the study; ``train(train_x, train_y, val_x, val_y, classes, settings, on_epoch=, good_class=)``
    is the trainer (a resource method in the platform, a fake in unit tests)."""
    import optuna

    if n_trials is None and minutes is None:
        raise ValueError("a search needs a number of trials, a time limit or both")
    if n_trials is not None and n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if minutes is not None and not minutes > 0:
        raise ValueError(f"minutes must be > 0, got {minutes}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(4, n_trials or 4))
    # Steps are 1-based epochs and optuna prunes from step n_warmup_steps on: + 1 keeps the warm-up epochs whole.
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=PRUNE_AFTER_EPOCHS + 1)
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)
    # Trial 0 is the recipe the search starts from, so however short the budget, the search never
    # hands back something worse on validation than the defaults (seen: 10 minutes on magnetic tile
    # ran two random EfficientNet-Lite0 trials, both far worse than the default MobileNetV2 recipe).
    study.enqueue_trial(base_params(base, space))
    started = clock()
    deadline = started + minutes * 60 if minutes is not None else math.inf
    records: list[TrialRecord] = []
    best: dict[str, Any] = {}  # only the best completed trial's result is kept (checkpoints are MBs each)

    def objective(trial: Any) -> float:
        params = _suggest(trial, space)
        settings = TrainSettings.model_validate({**base.model_dump(), **params})
        trial_started = clock()
        intermediate: list[float] = []
        seen: list[EpochRecord] = []

        def report(record: EpochRecord) -> None:
            # The validation loss of the epoch the trainer would keep so far (its lowest), so the
            # pruner compares what a trial would deliver on a smooth figure, not a lucky epoch.
            seen.append(record)
            kept = max(seen, key=lambda r: (selection_key(r), -r.epoch))
            value = float(kept.val_loss)
            intermediate.append(value)
            trial.report(value, record.epoch)
            if on_epoch is not None:
                on_epoch(trial.number, record)
            if clock() > deadline:
                raise _TimeUp
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {record.epoch} (validation loss {value:.4f})")

        def finish(state: str, value: float | None, reason: str | None) -> None:
            record = TrialRecord(
                number=trial.number,
                params=params,
                value=value,
                state=state,
                seconds=round(clock() - trial_started, 2),
                epochs_run=len(intermediate),
                reason=reason,
                intermediate=[round(v, 6) for v in intermediate],
            )
            records.append(record)
            if on_trial is not None:
                on_trial(record)

        train_x, train_y, val_x, val_y = arrays_for_size(settings.image_size)
        try:
            result = train(train_x, train_y, val_x, val_y, classes, settings, on_epoch=report, good_class=good_class)
        except _TimeUp:
            finish("pruned", None, "time limit reached")
            study.stop()
            raise optuna.TrialPruned("time limit reached") from None
        except optuna.TrialPruned as exc:
            finish("pruned", None, str(exc))
            raise
        except TrainingDidNotLearn as exc:  # a poor configuration, not a broken run: the search goes on
            finish("failed", None, str(exc))
            trial.set_user_attr("failure", str(exc))
            return FAILED_VALUE
        value = objective_value(result.history[result.best_epoch - 1])
        if not best or value < best["value"]:
            best.update(value=value, result=result, settings=settings, number=trial.number)
        finish("complete", float(value), None)
        if clock() > deadline:
            study.stop()
        return value

    study.optimize(
        objective,
        n_trials=n_trials,
        timeout=None if minutes is None else minutes * 60,
        gc_after_trial=True,
    )
    note = None
    if best:
        best_result, best_settings, best_number = best["result"], best["settings"], best["number"]
        best_params, best_value = dict(records[_index(records, best_number)].params), float(best["value"])
    else:
        best_result, best_settings, best_params, best_value, best_number = None, base, {}, None, None
        failures = [r.reason for r in records if r.state == "failed"]
        note = (
            f"no trial completed within the limits ({len(records)} trials started"
            + (f", {len(failures)} did not learn, first: {failures[0]}" if failures else "")
            + "); the configured recipe is used. Give the search more --hpo-minutes or --hpo-trials"
        )
    return SearchOutcome(
        trials=records,
        best_params=best_params,
        best_value=best_value,
        best_trial=best_number,
        best_result=best_result,
        best_settings=best_settings,
        seconds=round(clock() - started, 2),
        sampler={"name": "TPESampler", "seed": seed, "pruner": f"MedianPruner(n_startup_trials=2, n_warmup_steps={PRUNE_AFTER_EPOCHS + 1}) on validation loss"},
        space=space,
        objective=objective_description(good_class is not None),
        note=note,
        plots=render_search_plots(study, seed),
    )


def _index(records: Sequence[TrialRecord], number: int) -> int:
    return next(i for i, r in enumerate(records) if r.number == number)


def render_search_plots(study: Any, seed: int = 0) -> dict[str, bytes]:
    """optuna's matplotlib plots as PNG bytes: optimisation history, intermediate values (pruning)
    and, with at least two completed trials, parameter importances. Nothing is fetched."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as optuna_plots

    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    makers: dict[str, Callable[[], Any]] = {}
    if study.trials:
        makers["optimization_history"] = lambda: optuna_plots.plot_optimization_history(study)
        makers["intermediate_values"] = lambda: optuna_plots.plot_intermediate_values(study)
    if len(completed) >= 2 and len({tuple(sorted(t.params.items())) for t in completed}) >= 2:
        # fANOVA fits a random forest: seeded, so the same study gives the same plot.
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        makers["param_importances"] = lambda: optuna_plots.plot_param_importances(study, evaluator=evaluator)
    plots: dict[str, bytes] = {}
    import warnings

    for name, make in makers.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
            axes = make()
        figure = axes.figure if hasattr(axes, "figure") else plt.gcf()
        figure.set_size_inches(6.4, 3.6)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
        plt.close(figure)
        plots[name] = buffer.getvalue()
    return plots


def best_settings_from(base: TrainSettings, params: Mapping[str, Any]) -> TrainSettings:
    return TrainSettings.model_validate({**base.model_dump(), **dict(params)})
