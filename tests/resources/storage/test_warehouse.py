"""The warehouse is the single writer path: prove it under several processes at once."""

import multiprocessing
from pathlib import Path

import pandas as pd
import pytest

from resources.lineage import LineageNotFound, LineageStore
from resources.storage.warehouse import Warehouse


def _write_rows(home: str, worker: int, n: int) -> None:
    store = LineageStore(home=home)
    for i in range(n):
        store.record(
            asset="raw_images",
            partition="line1.a",
            run_id=f"run-{worker}",
            output_id=f"out-{worker}-{i}",
            input_ids=[f"in-{worker}-{i}"],
            parameters={"i": i},
        )
        with store.warehouse().connect() as connection:  # readers and writers interleave
            connection.execute("SELECT count(*) FROM lineage").fetchone()


def test_lineage_writes_from_many_processes_are_all_kept(tmp_path: Path) -> None:
    home = tmp_path / "home"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_rows, args=(str(home), w, 15)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
        assert process.exitcode == 0
    rows = LineageStore(home=str(home)).query("SELECT output_id FROM lineage")
    assert len(rows) == 60
    assert rows["output_id"].nunique() == 60
    assert (home / "mfg.duckdb").exists()


def test_trace_walks_inputs_back_to_the_roots(tmp_path: Path) -> None:
    store = LineageStore(home=str(tmp_path))
    store.record(asset="raw_images", partition="p", run_id="r", output_id="images:1", input_ids=["batch:p/b1"], parameters={})
    store.record(asset="annotations", partition="p", run_id="r", output_id="labels:1", input_ids=["images:1"], parameters={})
    store.record(
        asset="dataset_version", partition="p", run_id="r", output_id="dataset:1", input_ids=["labels:1", "images:1"], parameters={}
    )
    tree = store.trace("dataset:1")
    assert tree.asset == "dataset_version"
    assert [child.output_id for child in tree.inputs] == ["labels:1", "images:1"]
    assert tree.inputs[0].inputs[0].output_id == "images:1"
    with pytest.raises(LineageNotFound, match="model-x"):
        store.trace("model-x")


def test_append_refuses_empty_frames_and_bad_table_names(tmp_path: Path) -> None:
    warehouse = Warehouse(tmp_path)
    with pytest.raises(ValueError, match="empty"):
        warehouse.append("images", pd.DataFrame())
    with pytest.raises(ValueError, match="must match"):
        warehouse.append("Images; DROP", [{"a": 1}])
    assert warehouse.read("images").empty
