"""A damaged MFG_HOME: one clear message each with what to do, exit 2, no traceback; a corrupt
mfg.duckdb is rebuilt from the Parquet tables (it holds only views), saying so."""

import logging
from pathlib import Path

import pandas as pd
import pytest

from mfg_assets.cli import main
from resources.storage.warehouse import Warehouse


def test_an_unwritable_mfg_home_is_named_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MFG_HOME", str(blocker / "home"))
    assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert f"MFG_HOME={blocker / 'home'} cannot be written" in err and "set MFG_HOME to a folder" in err
    assert "Traceback" not in err


def test_a_corrupt_dagster_yaml_is_named_with_the_fix(mfg_home: Path, tmp_path: Path, capsys) -> None:
    config = mfg_home / "dagster" / "dagster.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("telemetry: [\n  enabled: false\n")
    assert main(["onboard", str(tmp_path / "nope"), "--line", "l1", "--variant", "v1"]) == 2  # refused first: no folder
    (tmp_path / "data" / "scratch").mkdir(parents=True)
    (tmp_path / "data" / "good").mkdir(parents=True)
    from PIL import Image

    for name in ("good", "scratch"):
        for i in range(3):
            Image.new("L", (16, 16), 40 * i).save(tmp_path / "data" / name / f"{i}.png")
    capsys.readouterr()
    assert main(["onboard", str(tmp_path / "data"), "--line", "l1", "--variant", "v1", "--good-class", "good"]) == 2
    err = capsys.readouterr().err
    assert f"{config} is not a valid Dagster instance config" in err and "mfgv init" in err and "Traceback" not in err


def test_a_corrupt_duckdb_file_is_rebuilt_from_the_tables_and_says_so(tmp_path: Path, caplog) -> None:
    warehouse = Warehouse(tmp_path)
    warehouse.append("things", pd.DataFrame({"a": [1, 2, 3]}))
    warehouse.duckdb_path.write_bytes(b"\0garbage" * 600)
    with caplog.at_level(logging.WARNING):
        assert warehouse.read("things")["a"].tolist() == [1, 2, 3]
    assert "rebuilt from them and nothing is lost" in caplog.text
    assert list(tmp_path.glob("mfg.duckdb.corrupt-*"))


def test_a_truncated_table_file_is_named_with_what_to_do(tmp_path: Path, mfg_home: Path, capsys) -> None:
    from resources.storage.warehouse import WarehouseDamaged

    warehouse = Warehouse(tmp_path)
    path = warehouse.append("things", pd.DataFrame({"a": [1, 2, 3]}))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(WarehouseDamaged, match=r"things/.*\.parquet: this table file cannot be read .*Restore it from a backup"):
        warehouse.read("things")
    registry = Warehouse(mfg_home).append("model_registry", pd.DataFrame({"version": ["x"]}))
    registry.write_bytes(b"PAR1")
    assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert "model_registry" in err and "cannot be read" in err and "Traceback" not in err
