"""Onboarding refuses datasets it cannot train on, before any run, and says what to do."""

import shutil
from pathlib import Path

import pytest

from mfg_assets.cli import main
from mfg_assets.onboard import OnboardError, OnboardRequest, discover_classes, onboard


def _request(data_dir: Path, **overrides) -> OnboardRequest:
    return OnboardRequest(data_dir=data_dir, line="line1", variant="a", **overrides)


def test_one_class_dataset_is_refused(mfg_home: Path, tiny_line: Path, tmp_path: Path) -> None:
    data = tmp_path / "one"
    shutil.copytree(tiny_line / "good", data / "good")
    with pytest.raises(OnboardError, match="at least two classes"):
        onboard(_request(data))


def test_empty_class_folder_is_named(mfg_home: Path, tiny_line: Path, tmp_path: Path) -> None:
    data = tmp_path / "empty"
    shutil.copytree(tiny_line, data)
    (data / "crack").mkdir()
    with pytest.raises(OnboardError, match=r"crack/ hold no images"):
        onboard(_request(data))


def test_unknown_good_class_lists_the_classes(mfg_home: Path, tiny_line: Path) -> None:
    with pytest.raises(OnboardError, match="choose one of dent, good, missing_hole, scratch, stain"):
        onboard(_request(tiny_line, good_class="ok"))


def test_missing_folder_and_bad_names_exit_2_with_a_message(mfg_home: Path, tmp_path: Path, capsys) -> None:
    assert main(["onboard", str(tmp_path / "nope"), "--line", "l1", "--variant", "a"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["onboard", str(tmp_path), "--line", "line 1", "--variant", "a"]) == 2
    assert "line name 'line 1' is not valid" in capsys.readouterr().err


def test_classes_come_from_a_labels_csv(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("path,label\na.png,ok\nb.png,nok\n")
    assert discover_classes(tmp_path, "csv") == ("nok", "ok")
