"""Handles kept by id: what lets a deployment pair a registered model with its own report."""

from pathlib import Path

from mfg_assets.handle_store import load_handle, store_handle
from mfg_assets.handles import DatasetVersion, ValidationReport
from resources.lineage import LineageStore


def dataset(dataset_id: str, good_class: str = "good") -> DatasetVersion:
    return DatasetVersion(
        id=dataset_id, partition="line1.a", classes=("dent", "good"), good_class=good_class,
        counts={"train": {"dent": 1, "good": 1}}, split_spec={"seed": 0},
    )


def test_a_stored_handle_loads_by_id_and_kind(mfg_home: Path) -> None:
    lineage = LineageStore()
    store_handle(lineage, dataset("dataset:one"), "line1.a")
    store_handle(lineage, dataset("dataset:two", good_class="dent"), "line1.a")
    assert load_handle(lineage, DatasetVersion, "dataset:one") == dataset("dataset:one")
    assert load_handle(lineage, DatasetVersion, "dataset:two").good_class == "dent"
    # another kind with the same id, an unknown id: not found, never another handle
    assert load_handle(lineage, ValidationReport, "dataset:one") is None
    assert load_handle(lineage, DatasetVersion, "dataset:three") is None


def test_storing_the_same_handle_again_keeps_one_row(mfg_home: Path) -> None:
    lineage = LineageStore()
    for _ in range(2):
        store_handle(lineage, dataset("dataset:one"), "line1.a")
    assert len(lineage.read_table("handles", "id = ?", ["dataset:one"])) == 1


def test_nothing_stored_yet_is_none(mfg_home: Path) -> None:
    assert load_handle(LineageStore(), DatasetVersion, "dataset:one") is None
