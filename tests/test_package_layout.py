"""The generic top-level names ``resources`` and ``sensors`` must be this repository's packages."""

from pathlib import Path

import resources
import sensors

REPO = Path(__file__).resolve().parent.parent


def test_generic_package_names_resolve_to_this_repo() -> None:
    assert Path(resources.__file__).resolve().parent == REPO / "resources"
    assert Path(sensors.__file__).resolve().parent == REPO / "sensors"


def test_edge_sync_imports_nothing_from_dagster_or_the_platform() -> None:
    for source in (REPO / "edge_sync").rglob("*.py"):
        text = source.read_text()
        for forbidden in ("import dagster", "from dagster", "from resources", "from mfg_assets", "from sensors"):
            assert forbidden not in text, f"{source} must not use {forbidden!r}"
