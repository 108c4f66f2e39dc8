"""The anomaly engine: a detector fitted on good parts only, a score and a map per image.

Defect types are labels of validation and test images only (they calibrate the threshold and
measure escapes); masks, where the layout has them, give the pixel metrics. The detector is fitted
(a PatchCore memory bank over backbone features), not trained, so epochs, a search, folds, an
escape budget, INT8 and offline augmented copies are refused by name (``TaskEngine.refusals``).
The report, package and device fields are built in ``steps.py``.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edge_sync.contract import Task
from resources.engine_io import EngineMachine, Evaluation, ExportOutcome, FitOutcome, ModelRecord, RecipeOutcome, RecipeRecord, TaskData
from resources.tasks import TaskEngine

__all__ = ["AnomalyEngine"]

_FITTED = "the detector is fitted on backbone features of good images, not trained"


class AnomalyEngine(TaskEngine):
    """Anomaly detection from good parts only."""

    task = Task.ANOMALY
    labels = "good, or the defect type (validation and test only), with an optional defect mask"
    headline_keys = ("image_auroc", "pixel_auroc", "pro")
    augment_targets = ("image", "masks")
    device_output = "anomaly score + anomaly map"
    default_input_size = 224  # the bundled backbones' stage-3/4 features need it; measured in BENCHMARKS.md
    labels_carry_more_than_class = True
    int8_default: ClassVar[bool] = False
    unsupported: ClassVar[Mapping[str, str]] = {
        "hpo_trials": f"{_FITTED}; set detector settings with --anomaly-settings / RecipeConfig.task_settings",
        "hpo_minutes": f"{_FITTED}; set detector settings with --anomaly-settings / RecipeConfig.task_settings",
        "folds": "its validation report measures it on held-out good and defective images: drop --cv-folds",
        "epochs": _FITTED,
        "escape_budget": "its threshold aims at ValidationConfig.target_false_reject_rate when validation holds no defect",
        "int8": "the detector's package is FP32 ONNX and OpenVINO in this release",
        "augment_copies": "it learns from its good training images as they are: use --augment-copies 0",
    }

    def variant_problems(self, classes: Sequence[str], good_class: str | None) -> list[str]:
        if good_class is None:
            return ["an anomaly detector learns from good parts: name their class (--good-class, 'good' for --format mvtec)"]
        return []

    def train_labels(self, good_class: str | None) -> frozenset[str] | None:
        return frozenset({good_class}) if good_class is not None else frozenset()

    def metrics(
        self, y_true: np.ndarray, outputs: np.ndarray, classes: Sequence[str], good_class: str | None = None
    ) -> dict[str, Any]:
        """Image-level figures from the image scores (``outputs`` is 1-D here); the pixel metrics
        need the maps and masks and are added by ``resources.anomaly.evaluation``."""
        from resources.anomaly.evaluation import image_level_metrics

        return image_level_metrics(np.asarray(y_true), np.asarray(outputs), classes, good_class)

    def preflight(self, options: Mapping[str, Any], n_classes: int) -> dict[str, Any]:
        from resources.anomaly.preflight import check_detector_start

        check_detector_start(
            backbone=options.get("backbone"),
            arch=options.get("arch"),
            pretrained_weights=options.get("pretrained_weights"),
            init_from=options.get("init_from"),
            task_settings=dict(options.get("task_settings") or {}),
        )
        return {}

    def recipe(self, options: Mapping[str, Any], data: TaskData, machine: EngineMachine) -> RecipeOutcome:
        from resources.anomaly.steps import detector_recipe

        return detector_recipe(options, data)

    def fit(self, recipe: RecipeRecord, data: TaskData, machine: EngineMachine, *, reuse_search_weights: bool) -> FitOutcome:
        from resources.anomaly.steps import fit_on_good_parts

        return fit_on_good_parts(recipe, data, machine)

    def evaluate(self, model: ModelRecord, recipe: RecipeRecord, data: TaskData, config: Any, machine: EngineMachine) -> Evaluation:
        from resources.anomaly.steps import detector_evaluation

        return detector_evaluation(model, data, config, machine)

    def release_problems(self, report: Mapping[str, Any], config: Any) -> list[str]:
        if not report["test"].get("n_defect") and not config.release_without_defects:
            return [
                "the test split holds no defective image, so escapes are not measured; add defect images (a few of "
                "each type), or release it knowingly with --release-without-defects"
            ]
        return []

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
        from resources.anomaly.steps import detector_package

        return detector_package(model, threshold, data, out_dir, package_manifest, machine)
