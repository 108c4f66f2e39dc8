"""Small, frozen handles that assets pass to each other: ids (content hashes) and artifact URIs.

Bytes live in the artifact store and rows in the warehouse; a handle says which ones an asset
produced, so a downstream asset reads exactly its upstream's output, never "the newest file".
"""

from typing import Any

from pydantic import BaseModel, ConfigDict

from resources.artifact_store import Artifact

__all__ = [
    "AnnotationSet",
    "AugmentedSet",
    "CrossValidation",
    "DatasetVersion",
    "DeploymentRecord",
    "ExportedModel",
    "ImageSet",
    "RegisteredModel",
    "TrainedModel",
    "TrainingRecipe",
    "ValidationReport",
]


class _Handle(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ImageSet(_Handle):
    id: str  # "images:<sha256 of the sorted unique image hashes>"
    partition: str
    batches: tuple[str, ...]
    n_images: int  # unique image contents
    n_files: int  # files ingested, duplicates included
    n_quarantined: int


class AnnotationSet(_Handle):
    id: str  # "labels:<sha256 of the sorted label rows>"
    partition: str
    image_set_id: str
    n_labels: int
    reviewers: tuple[str, ...]
    classes_seen: tuple[str, ...]


class DatasetVersion(_Handle):
    id: str  # "dataset:<content hash>"
    partition: str
    classes: tuple[str, ...]
    good_class: str | None
    counts: dict[str, dict[str, int]]  # split -> class -> images
    task: str = "classify"  # the variant's task: which engine (resources.tasks) the downstream assets use
    split_spec: dict[str, Any]
    annotation_set_id: str | None = None  # the labels (and masks) the split was made from
    # how images were grouped into parts and what each split holds (resources.data.split_plan.SplitPlan.record);
    # empty for versions made before it was recorded
    grouping: dict[str, Any] = {}


class AugmentedSet(_Handle):
    id: str  # "augmented:<sha256 of the arrays file>"
    dataset_id: str
    artifact: Artifact
    image_size: int
    resize: str = "squash"  # letterbox | squash: how images were fitted to image_size
    preset: str
    seed: int
    n_original: int
    n_augmented: int


class TrainingRecipe(_Handle):
    """The settings the model is trained with: searched with optuna, or as configured."""

    id: str  # "recipe:<sha256 of the settings and the search record>"
    dataset_id: str
    augmented_set_id: str
    settings: dict[str, Any]  # a TrainSettings dump
    searched: bool
    search: dict[str, Any] | None  # trials, best_params, best_value, space, sampler, objective, seconds, note
    best_checkpoint: Artifact | None  # the best trial's weights: same settings, seed and data as trained_model
    best_history: tuple[dict[str, Any], ...] | None
    best_epoch: int | None  # the epoch the trainer kept in the best trial
    plots: dict[str, Artifact]  # optuna plot name -> PNG
    init_from: str | None  # registered model version the weights start from


class CrossValidation(_Handle):
    id: str  # "cv:<sha256 of the per-fold records>" or "cv:skipped:<recipe id>"
    dataset_id: str
    recipe_id: str
    folds: int  # 0 when not asked for
    summary: dict[str, Any] | None  # folds, accuracy_mean, accuracy_std, per_fold, ...


class TrainedModel(_Handle):
    id: str  # "model:<sha256 of the checkpoint>"
    dataset_id: str
    augmented_set_id: str
    checkpoint: Artifact
    arch: str
    classes: tuple[str, ...]
    image_size: int
    resize: str = "squash"
    recipe_id: str | None = None
    init: dict[str, Any] = {}  # where the weights started (backbone package + sha256, file, registered model)
    train_seconds: float
    best_epoch: int
    settings: dict[str, Any]
    history: tuple[dict[str, float | None], ...]  # one record per epoch; val_false_reject_rate is None without a good class


class ValidationReport(_Handle):
    id: str  # "report:<sha256 of the report JSON>"
    model_id: str
    dataset_id: str
    json_artifact: Artifact
    html_artifact: Artifact
    accuracy: float
    false_reject_rate: float | None
    escape_rate: float | None
    threshold: float | None
    release_passed: bool
    release_failures: tuple[str, ...]
    task_metrics: dict[str, Any] = {}  # the task's own headline figures (TaskEngine.headline_keys, threshold_rule)


class ExportedModel(_Handle):
    id: str  # "export:<sha256 over the exported files' hashes>"
    model_id: str
    package: Artifact  # a stored folder: model.onnx, model_int8.onnx, openvino/model.xml+.bin, manifest.json
    files: dict[str, str]  # format -> path inside the package
    file_sha256: dict[str, str]  # path inside the package -> sha256
    input_size: int
    resize: str = "squash"
    parity_passed: bool
    parity: dict[str, Any]
    latency_ms: dict[str, float]
    int8_test_accuracy: float | None
    int8: dict[str, Any] | None = None  # how much stayed in float and why (int8_precision.Int8Choice.summary)


class RegisteredModel(_Handle):
    version: str
    model_id: str
    export_id: str
    report_id: str
    dataset_id: str
    status: str


class DeploymentRecord(_Handle):
    """What was deployed where; also a row of the ``deployments`` table."""

    deployment_id: str
    line: str
    variant: str
    model_version: str
    ring: str  # canary | fleet
    model_format: str
    devices: tuple[str, ...]  # the canary ring's devices; empty for fleet
    deployed_at: str
