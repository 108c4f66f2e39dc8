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
    "DatasetVersion",
    "DeploymentRecord",
    "ExportedModel",
    "ImageSet",
    "RegisteredModel",
    "TrainedModel",
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
    split_spec: dict[str, Any]


class AugmentedSet(_Handle):
    id: str  # "augmented:<sha256 of the arrays file>"
    dataset_id: str
    artifact: Artifact
    image_size: int
    preset: str
    seed: int
    n_original: int
    n_augmented: int


class TrainedModel(_Handle):
    id: str  # "model:<sha256 of the checkpoint>"
    dataset_id: str
    augmented_set_id: str
    checkpoint: Artifact
    arch: str
    classes: tuple[str, ...]
    image_size: int
    train_seconds: float
    best_epoch: int
    settings: dict[str, Any]
    history: tuple[dict[str, float], ...]  # one record per epoch


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


class ExportedModel(_Handle):
    id: str  # "export:<sha256 over the exported files' hashes>"
    model_id: str
    package: Artifact  # a stored folder: model.onnx, model_int8.onnx, openvino/model.xml+.bin, manifest.json
    files: dict[str, str]  # format -> path inside the package
    file_sha256: dict[str, str]  # path inside the package -> sha256
    input_size: int
    parity_passed: bool
    parity: dict[str, Any]
    latency_ms: dict[str, float]
    int8_test_accuracy: float | None


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
