"""dataset_version through Dagster on a line where every part looks alike: part ids from metadata.csv
keep a part's shots together, the choice is recorded, and ids that cannot group fail the run by name."""

from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from mfg_assets.annotations import annotations
from mfg_assets.datasets import dataset_version
from mfg_assets.ingest import raw_images
from resources.data.variants import VariantSpec, save_variant
from resources.lineage import LineageStore
from tests.mfg_assets.test_ingest_and_annotations import _materialize as materialize_assets

PARTS = {"good": 20, "bad": 10}


def _look_alike_batch(home: Path, name: str, serial: bool = True, conflict: bool = False) -> Path:
    """Two shots of every part, all of one smooth gradient with faint noise: they hash alike."""
    batch = home / "landing" / "line1" / "a" / name
    base = np.add.outer(np.arange(48), np.arange(48)).astype(np.float64) * 2.5
    rows = [f"path,camera,{'serial' if serial else 'part_id'}"]
    rng = np.random.default_rng(0)
    for label, parts in PARTS.items():
        (batch / label).mkdir(parents=True, exist_ok=True)
        for part in range(parts):
            for shot in range(2):
                pixels = np.clip(base + rng.normal(0, 1.0, base.shape) + (40 if label == "bad" else 0), 0, 255)
                path = f"{label}/p{part:02d}_{shot}.png"
                Image.fromarray(pixels.astype(np.uint8)).save(batch / path)
                part_id = "good-p00" if conflict and label == "bad" and part == 0 else f"{label}-p{part:02d}"
                rows.append(f"{path},cam1,{part_id}")
    (batch / "metadata.csv").write_text("\n".join(rows) + "\n")
    (batch / "_READY").write_text("")
    return batch


def _materialize(instance: dg.DagsterInstance, group_by: str = "auto") -> dg.ExecuteInProcessResult:
    return materialize_assets(
        instance, [raw_images, annotations, dataset_version], {"ops": {"dataset_version": {"config": {"group_by": group_by}}}}
    )


@pytest.fixture
def variant(mfg_home: Path) -> VariantSpec:
    spec = VariantSpec(line="line1", variant="a", classes=("good", "bad"), good_class="good")
    save_variant(spec, mfg_home)
    return spec


def test_part_ids_group_the_shots_of_each_part_and_the_choice_is_recorded(mfg_home: Path, variant: VariantSpec) -> None:
    _look_alike_batch(mfg_home, "b1")
    with dg.instance_for_test() as instance:
        result = _materialize(instance)
        assert result.success
        handle = result.output_for_node("dataset_version")
    grouping = handle.grouping
    assert grouping["requested"] == "auto" and grouping["group_by"] == "metadata" and grouping["fallback"] is None
    assert {name: row["groups"] for name, row in grouping["splits"].items()} == {"train": 18, "val": 6, "test": 6}
    assert handle.split_spec["group_by"] == "metadata"
    items = LineageStore().read_table("dataset_items", "dataset_id = ?", [handle.id])
    assert len(items) == 60 and (items.groupby("part_id")["split"].nunique() == 1).all()
    assert (items.groupby("part_id")["group_id"].nunique() == 1).all()
    lineage = LineageStore().producer(handle.id)
    assert '"group_by": "metadata"' in str(lineage["parameters"]) or "metadata" in str(lineage["parameters"])


def test_without_part_ids_the_look_alike_shots_are_split_apart_and_the_run_says_how(mfg_home: Path, variant: VariantSpec) -> None:
    batch = _look_alike_batch(mfg_home, "b1")
    (batch / "metadata.csv").unlink()
    with dg.instance_for_test() as instance:
        result = _materialize(instance)
        assert result.success
        grouping = result.output_for_node("dataset_version").grouping
    assert grouping["group_by"] == "phash"
    assert grouping["look_alike_images"] > 0  # pHash cannot tell these parts apart: the report says so
    assert sum(row["images"] for row in grouping["splits"].values()) == 60
    assert all(row["images"] >= 6 for row in grouping["splits"].values())


def test_a_part_with_two_labels_fails_the_run_and_registers_no_dataset(mfg_home: Path, variant: VariantSpec) -> None:
    _look_alike_batch(mfg_home, "b1", serial=False, conflict=True)
    with dg.instance_for_test() as instance:
        result = _materialize(instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    message = failure.step_failure_data.error.message
    assert "part_id 'good-p00'" in message and "bad/p00_0.png (bad)" in message and "one part has one verdict" in message
    assert LineageStore().read_table("dataset_items").empty
