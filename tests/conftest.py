"""Shared fixtures: an isolated MFG_HOME per test and seeded, generated sample lines."""

import os
from pathlib import Path

import pytest

from resources.settings import apply_offline_switches

apply_offline_switches()


@pytest.fixture
def mfg_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh MFG_HOME (and Dagster home) under tmp_path, for this test only."""
    home = tmp_path / "mfg-home"
    home.mkdir()
    monkeypatch.setenv("MFG_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    return home


@pytest.fixture(scope="session")
def tiny_line(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated sample line (5 classes x 12 images, 64 px), made once per session."""
    from resources.data.sample_line import generate_sample_line

    out = tmp_path_factory.mktemp("tiny-line") / "line"
    generate_sample_line(out, seed=3, images_per_class=12, image_size=64)
    return out


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("MPLBACKEND", "Agg")
