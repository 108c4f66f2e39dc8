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
    assert load_handle(lineage, DatasetVersion, "dataset:one", "line1.a") == dataset("dataset:one")
    assert load_handle(lineage, DatasetVersion, "dataset:two", "line1.a").good_class == "dent"
    # another kind with the same id, an unknown id: not found, never another handle
    assert load_handle(lineage, ValidationReport, "dataset:one", "line1.a") is None
    assert load_handle(lineage, DatasetVersion, "dataset:three", "line1.a") is None


def test_storing_the_same_handle_again_keeps_one_row(mfg_home: Path) -> None:
    lineage = LineageStore()
    for _ in range(2):
        store_handle(lineage, dataset("dataset:one"), "line1.a")
    assert len(lineage.read_table("handles", "id = ?", ["dataset:one"])) == 1


def test_nothing_stored_yet_is_none(mfg_home: Path) -> None:
    assert load_handle(LineageStore(), DatasetVersion, "dataset:one", "line1.a") is None


def test_the_same_content_id_of_two_variants_loads_each_variants_own(mfg_home: Path) -> None:
    lineage = LineageStore()
    store_handle(lineage, dataset("dataset:same"), "line1.a")
    store_handle(lineage, dataset("dataset:same").model_copy(update={"partition": "line1.b"}), "line1.b")
    assert load_handle(lineage, DatasetVersion, "dataset:same", "line1.a").partition == "line1.a"
    assert load_handle(lineage, DatasetVersion, "dataset:same", "line1.b").partition == "line1.b"
    assert load_handle(lineage, DatasetVersion, "dataset:same", "line1.c") is None


def test_a_handle_this_code_cannot_read_is_none(mfg_home: Path) -> None:
    """A handle stored by a code version with other fields is not guessed at: the caller refuses."""
    lineage = LineageStore()
    lineage.append_table("handles", [{
        "id": "dataset:old", "kind": "DatasetVersion", "partition": "line1.a",
        "handle_json": '{"id": "dataset:old", "renamed_field": 1}', "stored_at": "2026-12-01T00:00:00+00:00",
    }], prefix="line1.a")
    assert load_handle(lineage, DatasetVersion, "dataset:old", "line1.a") is None
