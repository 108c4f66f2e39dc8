"""The code version is the hash of the platform's source that ran: never of nothing, and it moves
when a source file changes (every lineage row once read e3b0c44298fc, the sha256 of no bytes)."""

import shutil
from pathlib import Path

import pytest

from resources.storage.code_version import EMPTY_HASH, PACKAGES, code_version, source_hash

REPO = Path(__file__).resolve().parents[3]


def test_the_running_code_version_hashes_the_platforms_source() -> None:
    version = code_version()
    assert len(version) == 12 and version != EMPTY_HASH
    assert version == source_hash(REPO)


def test_it_changes_when_a_source_file_changes(tmp_path: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    before = source_hash(tmp_path)
    assert before == source_hash(REPO)
    target = tmp_path / "resources" / "data" / "splitting.py"
    target.write_text(target.read_text() + "\n# a change\n")
    assert source_hash(tmp_path) != before
    template = next((tmp_path / "resources").rglob("*.j2"))
    target.write_text(target.read_text().removesuffix("\n# a change\n"))
    assert source_hash(tmp_path) == before
    template.write_text(template.read_text() + " ")
    assert source_hash(tmp_path) != before  # the report template is code too


def test_no_source_is_an_error_not_the_hash_of_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no source file"):
        source_hash(tmp_path)
