"""The task seam: one graph for every inspection task, a task engine behind it for what differs.

The assets (``raw_images → annotations → dataset_version → augmented_set → trained_model →
validation_report → exported_model → registered_model → deployment``) are written once. Each asked
the engine of its variant's task (:func:`engine_for`) for what differs by task:

=========  ======================================  =========================  ==========================
task       labels                                  metric keys                device output
=========  ======================================  =========================  ==========================
classify   class per image                         accuracy, per_class        class scores
anomaly    good-only training; masks for test      image_auroc, pixel_auroc   score + anomaly map
detect     boxes                                   map50, map50_95            boxes, scores, classes
segment    masks / polygons                        mask_iou, dice             masks per class / instance
ocr        text fields + rules                     field_accuracy, cer        text, fields, verdict
=========  ======================================  =========================  ==========================

Every task also reports the image-level false-reject and escape rates at a calibrated threshold
(``resources.reporting.metrics``): that part is shared. What an engine owns: its label schema and
the variant checks that follow from it, the split's stratification key, what augmentation must
transform with the image, training (the ``trainer`` resource of its kind), the metrics and report
sections, the export graph and its parity rule, and the device's post-processing and decision
(``edge_sync.agent.AGENT_TASKS`` says which tasks a device runs; a manifest for another is refused).

Classification and anomaly detection have engines in this release; asking for another task fails
with a message that says so, before anything is trained or registered. Where a step's work differs
wholly by task (training vs fitting, the report's sections, the export graph), the asset asks the
engine's ``task`` and calls that task's package (``resources.classify`` / ``resources.anomaly``);
the asset, its inputs, lineage and handles stay one.
"""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np

from edge_sync.contract import Task
from resources.errors import MfgVisionError

__all__ = ["AnomalyEngine", "ClassifyEngine", "TaskEngine", "UnsupportedTask", "engine_for", "supported_tasks"]

AugmentTarget = Literal["image", "boxes", "masks", "text"]


class UnsupportedTask(MfgVisionError, ValueError):
    """The task is unknown, or known but without an engine in this release."""


class TaskEngine(ABC):
    """What differs by task. One instance per task, stateless; the assets call it."""

    task: ClassVar[Task]
    labels: ClassVar[str]
    """What one label is, in words (for messages and the report)."""
    metric_keys: ClassVar[tuple[str, ...]]
    """The task's headline figures in the validation report, besides the shared decision rates."""
    augment_targets: ClassVar[tuple[AugmentTarget, ...]]
    """What augmentation must transform together with the image."""
    device_output: ClassVar[str]
    """What the deployed model returns to the device, in words."""
    default_input_size: ClassVar[int | None] = None
    """The model's input side when the user sets none (None: chosen from the data)."""

    def train_labels(self, good_class: str | None) -> frozenset[str] | None:
        """The labels the training split may hold (None: every label). A split moves the rest out."""
        return None

    @abstractmethod
    def variant_problems(self, classes: Sequence[str], good_class: str | None) -> list[str]:
        """Why a variant's taxonomy cannot be trained for this task (empty when it can)."""

    @abstractmethod
    def stratify_key(self, label: str) -> str:
        """The key a split and the folds stratify on, from one item's consensus label."""

    @abstractmethod
    def metrics(
        self, y_true: np.ndarray, probabilities: np.ndarray, classes: Sequence[str], good_class: str | None = None
    ) -> dict[str, Any]:
        """The task's figures on one split from the model's per-image outputs."""


class ClassifyEngine(TaskEngine):
    """Image classification: one class per image, a good class optional."""

    task = Task.CLASSIFY
    labels = "one class per image"
    metric_keys = ("accuracy", "per_class")
    augment_targets = ("image",)
    device_output = "class scores"

    def variant_problems(self, classes: Sequence[str], good_class: str | None) -> list[str]:
        problems = []
        if len(classes) < 2:
            problems.append(
                f"{len(classes)} class(es) ({', '.join(classes) or 'none'}); a classifier needs at least two classes"
            )
        return problems

    def stratify_key(self, label: str) -> str:
        return label

    def metrics(
        self, y_true: np.ndarray, probabilities: np.ndarray, classes: Sequence[str], good_class: str | None = None
    ) -> dict[str, Any]:
        from resources.reporting.metrics import classification_metrics

        return classification_metrics(y_true, probabilities, classes)


class AnomalyEngine(TaskEngine):
    """Anomaly detection from good parts only: fitted on good images, a score and a map per image.

    Defect types are labels of validation and test images only (they calibrate the threshold and
    measure escapes); masks, where the layout has them, give the pixel metrics."""

    task = Task.ANOMALY
    labels = "good, or the defect type (validation and test only), with an optional defect mask"
    metric_keys = ("image_auroc", "pixel_auroc", "pro")
    augment_targets = ("image", "masks")
    device_output = "anomaly score + anomaly map"
    default_input_size = 224  # the bundled backbones' stage-3/4 features need it; measured in BENCHMARKS.md

    def variant_problems(self, classes: Sequence[str], good_class: str | None) -> list[str]:
        if good_class is None:
            return ["an anomaly detector learns from good parts: name their class (--good-class, 'good' for --format mvtec)"]
        return []

    def stratify_key(self, label: str) -> str:
        return label

    def train_labels(self, good_class: str | None) -> frozenset[str] | None:
        return frozenset({good_class}) if good_class is not None else frozenset()

    def metrics(
        self, y_true: np.ndarray, probabilities: np.ndarray, classes: Sequence[str], good_class: str | None = None
    ) -> dict[str, Any]:
        """Image-level figures from the image scores (``probabilities`` is 1-D here); the pixel
        metrics need the maps and masks and are added by ``resources.anomaly.evaluation``."""
        from resources.anomaly.evaluation import image_level_metrics

        return image_level_metrics(np.asarray(y_true), np.asarray(probabilities), classes, good_class)


_ENGINES: dict[Task, TaskEngine] = {Task.CLASSIFY: ClassifyEngine(), Task.ANOMALY: AnomalyEngine()}


def supported_tasks() -> tuple[str, ...]:
    """The tasks this platform can train, deploy and report on now."""
    return tuple(task.value for task in _ENGINES)


def engine_for(task: str | Task) -> TaskEngine:
    """The engine of ``task``, or :class:`UnsupportedTask` saying which tasks exist and which run."""
    try:
        known = Task(task)
    except ValueError:
        raise UnsupportedTask(
            f"task {task!r} is unknown; the platform's tasks are {', '.join(t.value for t in Task)}"
        ) from None
    engine = _ENGINES.get(known)
    if engine is None:
        raise UnsupportedTask(
            f"task {known.value!r} has no engine in this release (it is planned); supported now: "
            f"{', '.join(supported_tasks())}"
        )
    return engine
