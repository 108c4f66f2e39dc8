"""The classifier's recipe: the configured settings, or the best of a seeded optuna search.

Without ``hpo_trials`` / ``hpo_minutes`` the recipe is the configured one, recorded as is. With
them, a TPE search over the task's space, pruned on the epoch-level validation metric, picks the
settings; the best trial's weights are kept (same settings, seed and data as the final training
would use), so fitting reuses them instead of training the same model twice.
"""

from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

import numpy as np

from resources.models.train_settings import TrainSettings
from resources.engine_io import RecipeOutcome, StepLog, TaskData
from resources.errors import MfgVisionError

__all__ = ["RecipeError", "base_settings", "classification_recipe"]

# The recipe fields RecipeConfig carries that are not TrainSettings fields.
_NOT_SETTINGS = ("hpo_trials", "hpo_minutes", "init_from", "task_settings")


class RecipeError(MfgVisionError, ValueError):
    """The configured recipe cannot be built (an invalid setting, a registered start that does not fit)."""


def base_settings(options: Mapping[str, Any], data: TaskData) -> tuple[TrainSettings, str | None, str | None]:
    """The configured recipe as TrainSettings, with ``init_from`` resolved to the registered model's
    checkpoint; returns (settings, init version, init checkpoint sha256)."""
    from resources.models.model_init import registered_start

    fields = {key: value for key, value in options.items() if key not in _NOT_SETTINGS}
    init_sha = None
    init_from = options.get("init_from")
    if init_from:
        start = registered_start(init_from, data.registry, data.store)
        fields.update(init_checkpoint=start["init_checkpoint"], arch=start["arch"])
        init_sha = start["checkpoint_sha256"]
    try:
        settings = TrainSettings(image_size=data.augmented_size, resize=data.augmented_resize, **fields)
    except ValueError as exc:
        raise RecipeError(f"training settings are invalid: {exc}") from exc
    return settings, init_from, init_sha


def classification_recipe(
    options: Mapping[str, Any],
    data: TaskData,
    train: Callable[..., Any],
    log: StepLog,
) -> RecipeOutcome:
    """The recipe: the configured one, or (hpo_trials / hpo_minutes) the best of the search."""
    from resources.models.model_init import check_start

    if options.get("task_settings"):
        raise RecipeError(
            "RecipeConfig.task_settings is for tasks whose model has settings of its own; a classifier is set with "
            "RecipeConfig's training fields"
        )
    base, init_version, init_sha = base_settings(options, data)
    check_start(base, len(data.classes))
    hpo_trials, hpo_minutes = int(options.get("hpo_trials") or 0), options.get("hpo_minutes")
    searched = hpo_trials > 0 or hpo_minutes is not None
    outcome = RecipeOutcome(
        settings=base.model_dump(mode="json"),
        id_fields={},
        lineage_parameters={},
        searched=searched,
        init_from=init_version,
        extra_input_ids=[init_version] if init_version else [],
        input_hashes={init_version: init_sha} if init_version and init_sha else None,
    )
    if searched:
        _search(outcome, base, data, train, hpo_trials, hpo_minutes, int(options["seed"]), log)
    outcome.id_fields = {"settings": outcome.settings, "search": outcome.search}
    outcome.lineage_parameters = {"settings": outcome.settings, "searched": searched, "search": outcome.search}
    if outcome.search is not None:
        search = outcome.search
        outcome.metadata = {
            "n_trials": len(search["trials"]),
            "n_pruned": sum(1 for t in search["trials"] if t["state"] == "pruned"),
            "best_value": search["best_value"] if search["best_value"] is not None else float("nan"),
            "search_seconds": search["seconds"],
            "best_params": search["best_params"],
            "trials": search["trials"],
        }
    return outcome


def _search(
    outcome: RecipeOutcome,
    base: TrainSettings,
    data: TaskData,
    train: Callable[..., Any],
    hpo_trials: int,
    hpo_minutes: float | None,
    seed: int,
    log: StepLog,
) -> None:
    """Run the optuna search and put its best settings, weights, plots and record on ``outcome``."""
    from resources.models.backbones import BackboneError, backbone_names, get_spec, weights_path
    from resources.classify.search import classification_space, run_search

    installed = []
    for name in backbone_names():
        try:
            weights_path(get_spec(name))
            installed.append(name)
        except BackboneError:
            pass
    # Lite1/2 cost 1.5-2x Lite0 per step on 2 cores; the default space keeps to the two fastest.
    space = classification_space(base, [n for n in installed if n in ("mobilenetv2_100", "efficientnet_lite0")])
    cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}

    def arrays_for_size(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if size not in cache:
            cache.clear()  # one size in memory at a time
            cache[size] = data.training_arrays(size)
        return cache[size]

    log.info(
        f"hyperparameter search: {hpo_trials or 'unlimited'} trials, "
        f"{hpo_minutes if hpo_minutes is not None else 'no'} minute limit, space {space.model_dump()}"
    )
    result = run_search(
        arrays_for_size=arrays_for_size,
        classes=data.classes,
        good_class=data.good_class,
        base=base,
        space=space,
        n_trials=hpo_trials or None,
        minutes=hpo_minutes,
        seed=seed,
        train=train,
        on_trial=lambda t: log.info(
            f"trial {t.number}: {t.state} value={t.value} params={t.params} ({t.seconds:.0f}s){' ' + t.reason if t.reason else ''}"
        ),
        on_epoch=lambda n, r: log.info(
            f"trial {n} epoch {r.epoch}: val_accuracy={r.val_accuracy:.4f} val_frr={r.val_false_reject_rate} ({r.seconds:.1f}s)"
        ),
    )
    outcome.settings = result.best_settings.model_dump(mode="json")
    if result.best_result is not None:
        outcome.best_checkpoint = result.best_result.checkpoint
        outcome.best_history = tuple(asdict(r) for r in result.best_result.history)
        outcome.best_epoch = result.best_result.best_epoch
    outcome.plots = dict(result.plots)
    outcome.search = {
        "trials": result.trials_json(),
        "best_params": result.best_params,
        "best_value": result.best_value,
        "best_trial": result.best_trial,
        "space": result.space.model_dump(),
        "sampler": result.sampler,
        "objective": result.objective,
        "seconds": result.seconds,
        "note": result.note,
        "n_trials_asked": hpo_trials,
        "minutes_asked": hpo_minutes,
    }
    if result.note:
        log.warning(result.note)
