"""In-progress names: a crashed writer's leftovers are swept, a live writer's never."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from resources.storage.processes import process_identity
from resources.storage.scratch import (
    PREFIX,
    process_is_gone,
    process_tag,
    scratch_dir,
    scratch_name,
    sweep_abandoned,
    writer_is_gone,
)
from resources.storage.warehouse import Warehouse


def _dead_tag() -> str:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return f"{child.pid}.{process_tag().split('.')[1]}"


def test_a_process_is_gone_only_when_it_is_of_this_host_and_not_running() -> None:
    host = process_tag().split(".")[1]
    assert process_is_gone(_dead_tag())
    assert not process_is_gone(process_tag())  # this process
    assert not process_is_gone(f"{os.getppid()}.{host}")  # a live one
    assert not process_is_gone(f"{_dead_tag().split('.')[0]}.00000000")  # another host: cannot judge
    assert not process_is_gone("not-a-tag")


def test_the_sweep_removes_what_dead_writers_left_and_keeps_the_rest(tmp_path: Path) -> None:
    dead = _dead_tag()
    left_file = tmp_path / "tables" / "images" / f"{PREFIX}{dead}.images-abc"
    left_dir = tmp_path / "artifacts" / f"{PREFIX}{dead}.export-def"
    (left_dir / "openvino").mkdir(parents=True)
    (left_dir / "model.onnx").write_bytes(b"half")
    left_file.parent.mkdir(parents=True)
    left_file.write_bytes(b"half")
    own = tmp_path / "artifacts" / scratch_name("live")
    own.write_bytes(b"in progress")
    foreign = tmp_path / "artifacts" / f"{PREFIX}{dead.split('.')[0]}.00000000.other-host"
    foreign.write_bytes(b"another host's")
    finished = tmp_path / "tables" / "images" / "b1-k123.parquet"
    finished.write_bytes(b"done")

    removed = sweep_abandoned(tmp_path / "artifacts", tmp_path / "tables", tmp_path / "absent")

    assert sorted(removed) == sorted([left_file, left_dir])
    assert not left_file.exists() and not left_dir.exists()
    assert own.exists() and foreign.exists() and finished.exists()
    assert writer_is_gone(left_file.name) and not writer_is_gone(own.name) and not writer_is_gone("model.onnx")


def test_a_scratch_folder_goes_away_with_its_block(tmp_path: Path) -> None:
    with scratch_dir(tmp_path, "export") as work:
        (work / "model.onnx").write_bytes(b"x")
        assert work.name.startswith(PREFIX) and "export" in work.name
    assert list(tmp_path.iterdir()) == []


def test_rows_written_again_under_the_same_key_replace_the_first_write(tmp_path: Path) -> None:
    """What ingest relies on when a run that wrote a batch's rows died before committing it."""
    warehouse = Warehouse(tmp_path)
    first = warehouse.append("images", [{"batch": "b1", "n": 1}], prefix="b1", key="line1.a/b1")
    again = warehouse.append("images", [{"batch": "b1", "n": 2}], prefix="b1", key="line1.a/b1")
    other = warehouse.append("images", [{"batch": "b1", "n": 3}], prefix="b1", key="line1.b/b1")
    plain = [warehouse.append("images", [{"batch": "b2", "n": 4}], prefix="b2") for _ in range(2)]
    assert first == again and other != first and plain[0] != plain[1]
    rows = warehouse.read("images").sort_values("n")
    pd.testing.assert_series_equal(rows["n"].reset_index(drop=True), pd.Series([2, 3, 4, 4]), check_names=False)
    assert not [p for p in (tmp_path / "tables" / "images").iterdir() if p.name.startswith(PREFIX)]
    # a rerun with nothing to write under the key takes the dead run's rows away too
    assert warehouse.replace_keyed("images", [], prefix="b1", key="line1.a/b1") is None
    assert sorted(warehouse.read("images")["n"]) == [3, 4, 4]
    assert warehouse.replace_keyed("images", [{"batch": "b1", "n": 5}], prefix="b1", key="line1.a/b1") == first


def test_the_sweep_does_not_walk_below_where_work_in_progress_can_be(tmp_path: Path) -> None:
    deep = tmp_path / "packages" / "ab" / "abc123" / "openvino" / f"{PREFIX}{_dead_tag()}.x"
    deep.parent.mkdir(parents=True)
    deep.write_bytes(b"part of a finished package")
    assert sweep_abandoned(tmp_path) == [] and deep.exists()


def test_the_sweep_removes_leftovers_whose_pid_a_younger_process_holds_now(tmp_path: Path) -> None:
    """A writer is recorded with its start ticks: the same pid with other ticks is a later process."""
    host = process_tag().split(".")[1]
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as holder:
        try:
            ticks = int(process_identity(holder.pid).split("-")[1])
            its_own = tmp_path / "artifacts" / f"{PREFIX}{holder.pid}-{ticks}.{host}.export-abc"
            reused = tmp_path / "artifacts" / f"{PREFIX}{holder.pid}-{ticks - 1}.{host}.export-def"
            older_name = tmp_path / "artifacts" / f"{PREFIX}{holder.pid}.{host}.export-ghi"  # no ticks: pid alone
            its_own.parent.mkdir(parents=True)
            for path in (its_own, reused, older_name):
                path.write_bytes(b"half")
            assert sweep_abandoned(tmp_path / "artifacts") == [reused]
            assert its_own.exists() and older_name.exists()
        finally:
            holder.kill()
