"""The task seam: one graph for every inspection task, one engine per task behind it.

The assets (``raw_images → annotations → dataset_version → augmented_set → hyperparameter_search →
trained_model → validation_report → exported_model → registered_model → deployment``) are written
once and only orchestrate: they load handles, ask the variant's engine (:func:`engine_for`) for the
work that differs by task, store artifacts, record lineage and yield checks. An engine lives in its
task's package (``resources/<task>/engine.py``) and answers:

=========  ======================================  =========================  ==========================
task       labels                                  headline keys              device output
=========  ======================================  =========================  ==========================
classify   class per image                         accuracy, per_class        class scores
anomaly    good-only training; masks for test      image_auroc, pixel_auroc   score + anomaly map
detect     boxes                                   map50, map50_95            boxes, scores, classes
segment    masks / polygons                        mask_iou, dice             masks per class / instance
ocr        text fields + rules                     field_accuracy, cer        text, fields, verdict
=========  ======================================  =========================  ==========================

Every task also reports the image-level false-reject and escape rates at a calibrated threshold
(``resources.reporting.metrics``), the report frame, handles, lineage and checks: that part is the
assets' and is written once. What an engine owns: which run options it supports (one refusal for
all, :meth:`TaskEngine.refusals`), its label rules and split key, its recipe and fit, inference and
its report sections on validation and test, its release rules, its export with parity, and the
decision fields its device decoder needs (``edge_sync.contract.decoders``).

Adding a task: its package with an ``engine.py``, one line in :data:`_ENGINE_CLASSES`, one decoder
line on the device side, and its label format.
"""

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from edge_sync.contract import Task
from resources.engine_io import (
    BatchFiles,
    BatchLabels,
    EngineMachine,
    Evaluation,
    ExportOutcome,
    FitOutcome,
    ModelRecord,
    RecipeOutcome,
    RecipeRecord,
    TaskData,
)
from resources.errors import MfgVisionError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "OPTIONS",
    "DeviceFieldsRefused",
    "OptionRefused",
    "TaskEngine",
    "UnsupportedTask",
    "engine_for",
    "supported_tasks",
]

AugmentTarget = Literal["image", "boxes", "masks", "text"]

# The run options a task may not support, with the flag `mfgv onboard` takes and the config field a
# run from the UI or a sensor sets: one refusal names both, wherever the run was started.
OPTIONS: dict[str, tuple[str, str]] = {
    "hpo_trials": ("--hpo-trials", "RecipeConfig.hpo_trials"),
    "hpo_minutes": ("--hpo-minutes", "RecipeConfig.hpo_minutes"),
    "folds": ("--cv-folds", "CrossValidationConfig.folds"),
    "epochs": ("--epochs", "RecipeConfig.epochs"),
    "escape_budget": ("--escape-budget", "ValidationConfig.max_escape_rate"),
    "int8": ("--int8", "ExportConfig.int8"),
    "augment_copies": ("--augment-copies", "AugmentConfig.copies_per_image"),
}


class UnsupportedTask(MfgVisionError, ValueError):
    """The task is unknown, or known but without an engine in this release."""


class OptionRefused(MfgVisionError, ValueError):
    """A run option the variant's task does not support in this release."""


class DeviceFieldsRefused(MfgVisionError, ValueError):
    """The model's calibrated decision cannot be written for its device (e.g. no positive threshold)."""


class TaskEngine(ABC):
    """What differs by task. One instance per task; the machine it runs on is passed per call."""

    task: ClassVar[Task]
    labels: ClassVar[str]
    """What one label is, in words (for messages and the report)."""
    headline_keys: ClassVar[tuple[str, ...]] = ()
    """The task's own figures of a split section that the report handle, the asset's metadata and
    the summary carry, besides the shared accuracy and decision rates."""
    augment_targets: ClassVar[tuple[AugmentTarget, ...]]
    """What augmentation must transform together with the image."""
    device_output: ClassVar[str]
    """What the deployed model returns to the device, in words."""
    default_input_size: ClassVar[int | None] = None
    """The model's input side when the user sets none (None: chosen from the data)."""
    labels_carry_more_than_class: ClassVar[bool] = False
    """Whether a label is more than its class (masks, boxes, text): the dataset id then includes the
    annotation set's id, since the same classes can come with other geometry."""
    int8_default: ClassVar[bool] = False
    """Whether the package gets an INT8 model when ExportConfig.int8 is unset (None)."""
    label_file_suffixes: ClassVar[frozenset[str]] = frozenset()
    """Label files of this task's formats that land beside the images (``resources.data.ingest``)."""
    unsupported: ClassVar[Mapping[str, str]] = {}
    """Run options (keys of :data:`OPTIONS`) this task does not support, each with why."""

    # ---- data side ----------------------------------------------------------------------------

    def train_labels(self, good_class: str | None) -> frozenset[str] | None:
        """The labels the training split may hold (None: every label). A split moves the rest out."""
        return None

    @abstractmethod
    def variant_problems(self, classes: Sequence[str], good_class: str | None) -> list[str]:
        """Why a variant's taxonomy cannot be trained for this task (empty when it can)."""

    def batch_labels(self, files: BatchFiles, label_format: str, good_class: str | None) -> BatchLabels | None:
        """This task's labels of one batch when its label format is its own (boxes, text); None
        for the platform's class-label formats (folders, labels.csv, COCO categories, MVTec)."""
        return None

    def class_image_counts(
        self, labels: "pd.DataFrame", tables: Mapping[str, "pd.DataFrame"], good_class: str | None
    ) -> "tuple[dict[str, int], frozenset[str]] | None":
        """Images per class as this task counts them for the minimum-images check, and the classes
        that may be empty; None: one class per image, as the labels say."""
        return None

    def dataset_labels(self, data_dir: Path, label_format: str, good_class: str | None) -> "pd.DataFrame | None":
        """Each image's label (``rel_path``, ``label``) of a dataset folder in this task's own label
        format, for the checks `mfgv onboard` makes before landing it; None for the platform's
        class-label formats."""
        return None

    def stratify_key(self, label: str) -> str:
        """The key a split and the folds stratify on, from one item's consensus label."""
        return label

    # ---- options ------------------------------------------------------------------------------

    def refusals(self, asked: Mapping[str, bool], *, cli: bool = False) -> list[str]:
        """One message per run option that was asked for (``asked[option]`` true) and that this
        task does not support; the same words for `mfgv onboard` (``cli``) and for a run started from
        the UI or a sensor."""
        messages = []
        for option, why in self.unsupported.items():
            if asked.get(option):
                flag, field = OPTIONS[option]
                where = f"with --task {self.task.value}" if cli else f"for the {self.task.value} task"
                messages.append(f"{flag if cli else field}: not available {where} in this release ({why})")
        return messages

    def refuse(self, asked: Mapping[str, bool], *, cli: bool = False) -> None:
        """Raise :class:`OptionRefused` naming every refused option, or return."""
        if messages := self.refusals(asked, cli=cli):
            raise OptionRefused("; ".join(messages) + "; drop or reset it for this variant")

    # ---- preflight (before anything lands) ------------------------------------------------------

    def preflight(self, options: Mapping[str, Any], n_classes: int) -> dict[str, Any]:
        """Refuse a start that cannot work (unknown backbone, a weights file that does not fit)
        before data lands (raises ``resources.preflight.PreflightError``); returns the recipe fields
        it settled (e.g. the backbone chosen). ``options`` holds RecipeConfig's fields."""
        return {}

    # ---- the steps ----------------------------------------------------------------------------

    @abstractmethod
    def recipe(self, options: Mapping[str, Any], data: TaskData, machine: EngineMachine) -> RecipeOutcome:
        """The settings the model is fitted with: ``options`` are RecipeConfig's fields (seed resolved)."""

    @abstractmethod
    def fit(self, recipe: RecipeRecord, data: TaskData, machine: EngineMachine, *, reuse_search_weights: bool) -> FitOutcome:
        """The model, fitted with the recipe on the training split (checkpoint as bytes or a stored artifact)."""

    def cross_validate(
        self, recipe: RecipeRecord, data: TaskData, machine: EngineMachine, *, folds: int, seed: int
    ) -> dict[str, Any]:
        """The recipe refitted on ``folds`` folds of train + val: the summary the report shows."""
        raise OptionRefused(f"cross-validation is not available for the {self.task.value} task")

    @abstractmethod
    def evaluate(self, model: ModelRecord, recipe: RecipeRecord, data: TaskData, config: Any, machine: EngineMachine) -> Evaluation:
        """The threshold from validation and the figures on test, as report sections, with the
        images the HTML report shows."""

    def release_problems(self, report: Mapping[str, Any], config: Any) -> list[str]:
        """The task's own release rules, besides the shared accuracy and escape-rate limits."""
        return []

    @abstractmethod
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
        """Write the deployable package into ``out_dir`` (``package_manifest`` holds the fields every
        task's package manifest carries) and check the runtimes against the fitted model."""

    def device_fields(self, threshold: float | None) -> dict[str, Any]:
        """The deployment manifest's decision fields (schema, the ``decoder`` block) from the
        calibrated threshold, as this task's device decoder defines them (``edge_sync.contract.decoders``)."""
        from edge_sync.contract.decoders import decoder_for

        try:
            return decoder_for(self.task).manifest_fields(threshold)
        except ValueError as exc:
            raise DeviceFieldsRefused(str(exc)) from exc

    def device_scores(self, report: Mapping[str, Any]) -> list[float]:
        """The report's test defect scores in the device's units (for the baseline histogram)."""
        from edge_sync.contract.decoders import decoder_for

        raw = report["test"].get("defect_scores") or []
        threshold = (report.get("threshold") or {}).get("threshold")
        return decoder_for(self.task).device_scores(raw, self.device_fields(threshold)) if raw else []

    def metrics(
        self, y_true: np.ndarray, outputs: np.ndarray, classes: Sequence[str], good_class: str | None = None
    ) -> dict[str, Any]:
        """The task's figures on one split from the model's per-image outputs."""
        raise NotImplementedError(f"the {self.task.value} engine computes its figures in evaluate()")


# One line per task: (module, class). Imported when first asked for, so loading the definitions
# imports no task's heavy libraries.
_ENGINE_CLASSES: dict[Task, tuple[str, str]] = {
    Task.CLASSIFY: ("resources.classify.engine", "ClassifyEngine"),
    Task.ANOMALY: ("resources.anomaly.engine", "AnomalyEngine"),
    Task.DETECT: ("resources.detect.engine", "DetectEngine"),
}
_ENGINES: dict[Task, TaskEngine] = {}


def supported_tasks() -> tuple[str, ...]:
    """The tasks this platform can train, deploy and report on now."""
    return tuple(task.value for task in _ENGINE_CLASSES)


def engine_for(task: str | Task) -> TaskEngine:
    """The engine of ``task``, or :class:`UnsupportedTask` saying which tasks exist and which run."""
    try:
        known = Task(task)
    except ValueError:
        raise UnsupportedTask(
            f"task {task!r} is unknown; the platform's tasks are {', '.join(t.value for t in Task)}"
        ) from None
    if known not in _ENGINE_CLASSES:
        raise UnsupportedTask(
            f"task {known.value!r} has no engine in this release (it is planned); supported now: "
            f"{', '.join(supported_tasks())}"
        )
    if known not in _ENGINES:
        module, name = _ENGINE_CLASSES[known]
        _ENGINES[known] = getattr(import_module(module), name)()
    return _ENGINES[known]
