"""The classification engine: one class per image, a good class optional.

Its recipe is the configured training settings or an optuna search (``recipe.py``); it trains a
timm classifier from a bundled ImageNet backbone by default (``trainer.py``), reports per-class
figures and the decision rates at a threshold calibrated on validation (``evaluate.py``), and
exports ONNX, OpenVINO and INT8 with parity checks (``package.py``). The device reads class
probabilities and rejects when 1 - P(good) reaches the threshold.
"""

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edge_sync.contract import Task
from resources.engine_io import EngineMachine, Evaluation, ExportOutcome, FitOutcome, ModelRecord, RecipeOutcome, RecipeRecord, TaskData
from resources.tasks import TaskEngine
from resources.trainers import ClassificationTrainer, Trainer

__all__ = ["ClassifyEngine"]


class ClassifyEngine(TaskEngine):
    """Image classification: one class per image, a good class optional."""

    task = Task.CLASSIFY
    labels = "one class per image"
    augment_targets = ("image",)
    device_output = "class scores"
    int8_default: ClassVar[bool] = True

    def __init__(self, trainer: Trainer | None = None) -> None:
        self.trainer = trainer

    def _trainer(self, machine: EngineMachine) -> Trainer:
        return self.trainer if self.trainer is not None else ClassificationTrainer(num_threads=machine.num_threads, device=machine.device)

    def variant_problems(self, classes: Sequence[str], good_class: str | None) -> list[str]:
        if len(classes) < 2:
            return [f"{len(classes)} class(es) ({', '.join(classes) or 'none'}); a classifier needs at least two classes"]
        return []

    def metrics(
        self, y_true: np.ndarray, outputs: np.ndarray, classes: Sequence[str], good_class: str | None = None
    ) -> dict[str, Any]:
        from resources.reporting.metrics import classification_metrics

        return classification_metrics(y_true, outputs, classes)

    def preflight(self, options: Mapping[str, Any], n_classes: int) -> dict[str, Any]:
        from resources.classify.preflight import check_start_options

        return check_start_options(
            backbone=options.get("backbone"),
            arch=options.get("arch"),
            pretrained_weights=options.get("pretrained_weights"),
            init_from=options.get("init_from"),
            num_classes=n_classes,
            task_settings=options.get("task_settings"),
        )

    def recipe(self, options: Mapping[str, Any], data: TaskData, machine: EngineMachine) -> RecipeOutcome:
        from resources.classify.recipe import classification_recipe

        return classification_recipe(options, data, self._trainer(machine).train, machine.log)

    def fit(self, recipe: RecipeRecord, data: TaskData, machine: EngineMachine, *, reuse_search_weights: bool) -> FitOutcome:
        from resources.models.train_settings import EpochRecord, TrainSettings

        settings = TrainSettings.model_validate(recipe.settings)
        reused = reuse_search_weights and recipe.best_checkpoint is not None and recipe.best_history is not None
        outcome: FitOutcome
        if reused:
            checkpoint = recipe.best_checkpoint
            history = tuple(dict(r) for r in recipe.best_history or ())
            best_epoch = recipe.best_epoch or len(history)
            init = _checkpoint_init(data.store.path(checkpoint))
            machine.log.info(f"reusing the search's best trial ({checkpoint.sha256[:12]}): the recipe it was trained with")
            outcome = FitOutcome(
                arch=settings.timm_arch(), init=init, train_seconds=sum(float(r["seconds"]) for r in history),
                best_epoch=best_epoch, settings={}, history=history, lineage_parameters={}, checkpoint_artifact=checkpoint,
                device=machine.device,
            )
        else:
            train_images, train_labels, val_images, val_labels = data.training_arrays(settings.image_size)

            def log_epoch(record: EpochRecord) -> None:
                frr = "n/a" if record.val_false_reject_rate is None else f"{record.val_false_reject_rate:.4f}"
                machine.log.info(
                    f"epoch {record.epoch}/{settings.epochs}: train_loss={record.train_loss:.4f} "
                    f"val_loss={record.val_loss:.4f} val_accuracy={record.val_accuracy:.4f} "
                    f"val_frr_at_zero_escapes={frr} ({record.seconds:.1f}s)"
                )

            machine.log.info(
                f"training {settings.timm_arch()} from {settings.init_source()} ({settings.backbone}) at {settings.image_size} px "
                f"on {len(train_images)} images, {len(val_images)} validation images, {len(data.classes)} classes"
                f" ({machine.device})"
            )
            result = self._trainer(machine).train(
                train_images, train_labels, val_images, val_labels, data.classes, settings,
                on_epoch=log_epoch, good_class=data.good_class,
            )
            outcome = FitOutcome(
                arch=settings.timm_arch(), init=result.init, train_seconds=result.train_seconds, best_epoch=result.best_epoch,
                settings={}, history=tuple(asdict(r) for r in result.history), lineage_parameters={},
                checkpoint_bytes=result.checkpoint, device=machine.device,
            )
        init = outcome.init
        outcome.settings = settings.model_dump(mode="json")
        outcome.lineage_parameters = {**outcome.settings, "init": init, "reused_search_weights": reused}
        outcome.input_hashes = {recipe.id: recipe.id.split(":", 1)[1]}
        if init.get("sha256"):
            outcome.input_hashes[f"weights:{init.get('name') or init.get('file')}"] = init["sha256"]
        best = outcome.history[outcome.best_epoch - 1]
        outcome.metadata = {
            "best_epoch": outcome.best_epoch,
            "val_accuracy": float(best["val_accuracy"]),
            "val_false_reject_rate": float("nan") if best["val_false_reject_rate"] is None else float(best["val_false_reject_rate"]),
            "reused_search_weights": reused,
            "history": list(outcome.history),
        }
        return outcome

    def cross_validate(
        self, recipe: RecipeRecord, data: TaskData, machine: EngineMachine, *, folds: int, seed: int
    ) -> dict[str, Any]:
        from resources.classify.cross_validation import cross_validate_recipe

        return cross_validate_recipe(recipe.settings, data, folds=folds, seed=seed, trainer=self._trainer(machine), log=machine.log)

    def evaluate(self, model: ModelRecord, recipe: RecipeRecord, data: TaskData, config: Any, machine: EngineMachine) -> Evaluation:
        from resources.classify.evaluate import classification_sections
        from resources.classify.model import load_inference_model, predict_proba

        net = load_inference_model(data.store.path(model.checkpoint))
        val = data.split("val", model.image_size, model.resize)
        test = data.split("test", model.image_size, model.resize)
        sections, notes = classification_sections(
            classes=list(data.classes),
            good_class=data.good_class,
            val=(predict_proba(net, val.images), val.labels),
            test=(predict_proba(net, test.images), test.labels),
            max_escape_rate=config.max_escape_rate,
            gallery_size=config.gallery_size,
            groups={"val": val.groups, "test": test.groups},
        )
        if recipe.search is not None:
            sections["hpo"] = {**recipe.search, "best_settings": recipe.settings}
        return Evaluation(
            sections=sections,
            notes=notes,
            training={"settings": model.settings, "best_epoch": model.best_epoch, "history": list(model.history)},
            gallery=[test.images[e["index"]] for e in sections["worst_errors"]],
            threshold_images=[val.images[row["index"]] for row in sections["threshold_set_by"]],
            test_rows=test.rows,
            val_rows=val.rows,
        )

    def export(
        self,
        model: ModelRecord,
        threshold: float | None,
        data: TaskData,
        config: Any,
        out_dir: Path,
        package_manifest: dict[str, Any],
        machine: EngineMachine,
    ) -> ExportOutcome:
        from resources.classify.model import load_inference_model
        from resources.classify.package import build_package

        size, resize = model.image_size, model.resize
        net = load_inference_model(data.store.path(model.checkpoint))
        test = data.split("test", size, resize)
        calibration = holdout = None
        if config.int8:
            calibration = data.split("train", size, resize).images[: config.calibration_images]
            # INT8 must decide like FP32 on validation images (the threshold was calibrated there); test
            # stays for scoring, so choosing the INT8 precision cannot flatter the INT8 test accuracy.
            holdout = data.split("val", size, resize).images
        manifest = {**package_manifest, "output": {"name": "probabilities", "classes": list(model.classes)}}
        build = build_package(
            net, out_dir, image_size=size, test_images=test.images, test_labels=test.labels,
            calibration_images=calibration, holdout_images=holdout if holdout is not None and len(holdout) else None,
            int8_max_disagreement=config.int8_max_disagreement, parity_tolerance=config.parity_tolerance,
            latency_repeats=config.latency_repeats, manifest=manifest,
        )
        parity, summary = build.parity, build.parity_summary()
        return ExportOutcome(
            files=build.files,
            file_sha256=build.file_sha256,
            parity_passed=parity.passed,
            parity=summary,
            parity_description=parity.describe(),
            parity_metadata={"max_abs_diff": summary["max_abs_diff"], "n_images": parity.n_images},
            latency_ms=build.latency_ms,
            int8_test_accuracy=build.int8_test_accuracy,
            int8=build.int8,
            metadata={
                "parity_max_abs_diff": summary["max_abs_diff"],
                "int8_test_accuracy": build.int8_test_accuracy if build.int8_test_accuracy is not None else float("nan"),
                **({} if build.int8 is None else {"int8_precision": build.int8}),
            },
            lineage_parameters={},
        )


def _checkpoint_init(path: Path) -> dict[str, Any]:
    """Where a stored checkpoint's weights started (its ``init`` record)."""
    import torch

    payload = torch.load(path, map_location="cpu", weights_only=True)
    return dict(payload.get("init") or {})
