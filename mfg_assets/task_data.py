"""A dataset version as a task engine reads it (``resources.engine_io.TaskData``).

The engines never see the lineage store or the handles: the assets build one :class:`StoredTaskData`
per step and hand it over, so every task reads splits, training arrays and label files the same way.
Also the one helper that turns an engine's refusal into a Dagster failure.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from mfg_assets.handles import AugmentedSet, DatasetVersion
from resources.artifact_store import ArtifactStore
from resources.engine_io import SplitData
from resources.errors import MfgVisionError
from resources.lineage import LineageStore
from resources.registry import ModelRegistry

__all__ = ["StoredTaskData", "engine_failures"]


@contextmanager
def engine_failures() -> Iterator[None]:
    """An engine's refusal (any ``MfgVisionError``: bad settings, a model that did not learn, a
    start that does not fit) fails the step with its message; anything else is a bug and keeps its
    traceback."""
    try:
        yield
    except MfgVisionError as exc:
        raise dg.Failure(str(exc)) from exc


@dataclass
class StoredTaskData:
    """``TaskData`` over the lineage store and the artifact store."""

    lineage: LineageStore
    store: ArtifactStore
    dataset: DatasetVersion
    augmented: AugmentedSet | None = None
    model_registry: ModelRegistry | None = None
    """The asset's registry resource, where it has one (``--init-from`` resolves there)."""

    @property
    def dataset_id(self) -> str:
        return self.dataset.id

    @property
    def augmented_set_id(self) -> str:
        return self.augmented.id if self.augmented is not None else ""

    @property
    def partition(self) -> str:
        return self.dataset.partition

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.dataset.classes)

    @property
    def good_class(self) -> str | None:
        return self.dataset.good_class

    @property
    def augmented_size(self) -> int:
        return self._augmented().image_size

    @property
    def augmented_resize(self) -> str:
        return self._augmented().resize

    @property
    def registry(self) -> ModelRegistry:
        if self.model_registry is not None:
            return self.model_registry
        return ModelRegistry(home=str(self.lineage.home_path()))

    def _augmented(self) -> AugmentedSet:
        if self.augmented is None:
            raise LookupError(f"dataset {self.dataset.id}: this step was given no augmented set; materialize augmented_set")
        return self.augmented

    def split(self, name: str, size: int, resize: str) -> SplitData:
        from mfg_assets.datasets import load_split_images, split_groups

        images, labels, rows = load_split_images(self.lineage, self.store, self.dataset, name, size, resize)
        return SplitData(images=images, labels=labels, rows=rows, groups=split_groups(rows))

    def training_arrays(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        from mfg_assets.augment import training_arrays

        return training_arrays(self.lineage, self.store, self.dataset, self._augmented(), size)

    def augmented_arrays(self) -> dict[str, np.ndarray]:
        from mfg_assets.augment import load_augmented_arrays

        return load_augmented_arrays(self.store, self._augmented())

    def items(self) -> pd.DataFrame:
        from mfg_assets.datasets import load_dataset_items

        return load_dataset_items(self.lineage, self.dataset.id)

    def geometry(self, table: str) -> pd.DataFrame:
        set_id = self.dataset.annotation_set_id
        if not set_id:
            raise LookupError(f"dataset {self.dataset.id} records no annotation set; re-materialize dataset_version")
        return self.lineage.read_table(table, "annotation_set_id = ?", [set_id])

    def label_mask_files(self, rows: pd.DataFrame) -> list[tuple[Path | None, int, int]]:
        from mfg_assets.annotations import load_label_masks
        from mfg_assets.ingest import load_image_table

        set_id = self.dataset.annotation_set_id
        table = load_label_masks(self.lineage, set_id) if set_id else pd.DataFrame()
        by_image = {} if table.empty else table.drop_duplicates("image_sha256").set_index("image_sha256").to_dict("index")
        sizes = load_image_table(self.lineage, self.dataset.partition).drop_duplicates("sha256").set_index("sha256")[["width", "height"]]
        files: list[tuple[Path | None, int, int]] = []
        for sha in rows["sha256"]:
            width, height = (int(v) for v in sizes.loc[sha])
            mask = self.store.path(by_image[sha]["mask_artifact"]) if sha in by_image else None
            files.append((mask, width, height))
        return files
