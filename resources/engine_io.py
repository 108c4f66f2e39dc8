"""What the assets hand a task engine and what it hands back: plain data, no Dagster.

An engine (``resources/<task>/engine.py``) never sees a Dagster context, a handle class or the
lineage store: it reads a dataset version through :class:`TaskData` (which the assets implement in
``mfg_assets.task_data``), logs through ``logging``, and returns an outcome dataclass. The asset
turns the outcome into a handle, artifacts, lineage rows, metadata and checks, the same way for
every task. That keeps the engines testable without Dagster and keeps the import direction
``edge_sync`` ← ``resources`` ← ``mfg_assets``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # types only: importing this module loads neither Dagster nor pandas
    import numpy as np
    import pandas as pd

    from resources.artifact_store import Artifact, ArtifactStore
    from resources.registry import ModelRegistry

__all__ = [
    "BatchFiles",
    "BatchLabels",
    "EngineMachine",
    "Evaluation",
    "ExportOutcome",
    "FitOutcome",
    "ModelRecord",
    "RecipeOutcome",
    "RecipeRecord",
    "SplitData",
    "StepLog",
    "TaskData",
]


class StepLog(Protocol):
    """Where an engine's progress lines go: the asset's ``context.log`` (Dagster's event log, the UI
    and the CLI's progress line), or a ``logging.Logger`` outside Dagster."""

    def info(self, msg: str) -> Any: ...

    def warning(self, msg: str) -> Any: ...


@dataclass(frozen=True)
class EngineMachine:
    """Where an engine computes and reports: torch CPU threads, the torch device ('cpu' or 'cuda'),
    and the log its progress lines go to."""

    num_threads: int = 2
    device: str = "cpu"
    log: StepLog = field(default_factory=lambda: logging.getLogger("resources.engine"))


@dataclass(frozen=True)
class SplitData:
    """One split at one input size: images (uint8 N×S×S×3), class indices, rows, near-copy groups."""

    images: np.ndarray
    labels: np.ndarray
    rows: pd.DataFrame
    groups: np.ndarray | None


class TaskData(Protocol):
    """A dataset version and its augmented training set, as an engine may read them."""

    dataset_id: str
    augmented_set_id: str
    partition: str
    classes: tuple[str, ...]
    good_class: str | None
    augmented_size: int
    augmented_resize: str
    store: ArtifactStore
    registry: ModelRegistry

    def split(self, name: str, size: int, resize: str) -> SplitData: ...

    def training_arrays(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...

    def augmented_arrays(self) -> dict[str, np.ndarray]: ...

    def items(self) -> pd.DataFrame: ...

    def geometry(self, table: str) -> pd.DataFrame:
        """The dataset's rows of a task's geometry table (``BatchLabels.tables``), with ``image_sha256``."""
        ...

    def label_mask_files(self, rows: pd.DataFrame) -> list[tuple[Path | None, int, int]]:
        """Per row: its label mask file (None without one) and the image's width and height."""
        ...


@dataclass(frozen=True)
class BatchFiles:
    """One landed batch as a task's label reader sees it: its images and its label files, each by its
    path in the batch, pointing at the stored copy."""

    batch: str
    images: Mapping[str, Path]
    sidecars: Mapping[str, Path]
    sizes: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    """(width, height) of each image as the platform decodes it, where known (ingested batches)."""


@dataclass
class BatchLabels:
    """A task's labels of one batch: one image-level label per image (``rel_path``, ``label``,
    ``reviewer``, ``source``: what splits stratify on and the label checks read), the task's geometry
    tables by name (rows keyed by ``rel_path``; stored with the annotation set), and the images set
    aside with their reason (``rel_path``, ``reason``, ``detail``: quarantined, the rest goes on)."""

    labels: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    quarantined: list[dict[str, str]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    """What the task's label reader found worth showing (reviewer agreement, warnings), for the asset's metadata."""


class RecipeRecord(Protocol):
    """The recipe handle as an engine reads it."""

    id: str
    settings: dict[str, Any]
    search: dict[str, Any] | None
    best_checkpoint: Artifact | None
    best_history: tuple[dict[str, Any], ...] | None
    best_epoch: int | None


class ModelRecord(Protocol):
    """The trained-model handle as an engine reads it."""

    id: str
    checkpoint: Artifact
    arch: str
    classes: tuple[str, ...]
    image_size: int
    resize: str
    init: dict[str, Any]
    train_seconds: float
    best_epoch: int
    settings: dict[str, Any]
    history: tuple[dict[str, Any], ...]


@dataclass
class RecipeOutcome:
    """The recipe an engine chose. ``id_fields`` join the dataset and augmented set ids in the
    recipe's content id; ``lineage_parameters`` and ``input_hashes`` go to its lineage row."""

    settings: dict[str, Any]
    id_fields: dict[str, Any]
    lineage_parameters: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    extra_input_ids: list[str] = field(default_factory=list)
    input_hashes: dict[str, str] | None = None
    searched: bool = False
    search: dict[str, Any] | None = None
    best_checkpoint: bytes | None = None
    best_history: tuple[dict[str, Any], ...] | None = None
    best_epoch: int | None = None
    plots: dict[str, bytes] = field(default_factory=dict)
    init_from: str | None = None


@dataclass
class FitOutcome:
    """A fitted model: its checkpoint (new bytes, or an artifact already stored, e.g. the search's
    best trial) and what the handle, lineage and metadata say about it."""

    arch: str
    init: dict[str, Any]
    train_seconds: float
    best_epoch: int
    settings: dict[str, Any]
    history: tuple[dict[str, Any], ...]
    lineage_parameters: dict[str, Any]
    input_hashes: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    checkpoint_bytes: bytes | None = None
    checkpoint_artifact: Artifact | None = None
    device: str = "cpu"
    """The torch device the fit ran on (recorded in lineage)."""


@dataclass
class Evaluation:
    """The task's report sections (threshold, val, test, worst errors, ...), passed to the shared
    report frame, and the images the HTML report shows; ``*_rows`` name the files of the indices
    ``worst_errors`` and ``threshold_set_by`` point to."""

    sections: dict[str, Any]
    notes: list[str]
    training: dict[str, Any]
    gallery: list[np.ndarray]
    test_rows: pd.DataFrame
    val_rows: pd.DataFrame | None = None
    threshold_images: list[np.ndarray] = field(default_factory=list)
    suspicious_images: list[np.ndarray] = field(default_factory=list)


@dataclass
class ExportOutcome:
    """A package written by the engine and how its runtimes compare with the fitted model."""

    files: dict[str, str]
    file_sha256: dict[str, str]
    parity_passed: bool
    parity: dict[str, Any]
    parity_description: str
    parity_metadata: Mapping[str, float | int]
    latency_ms: dict[str, float]
    int8_test_accuracy: float | None = None
    int8: dict[str, Any] | None = None
    int8_note: str = "no INT8 model was built (ExportConfig.int8 is false)"
    metadata: dict[str, Any] = field(default_factory=dict)
    lineage_parameters: dict[str, Any] = field(default_factory=dict)
