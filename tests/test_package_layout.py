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


def test_edge_sync_loads_no_dagster_or_platform_module_in_a_fresh_interpreter() -> None:
    """What a device installs: importing every edge_sync module pulls in nothing of the platform."""
    import json
    import subprocess
    import sys

    modules = sorted(
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for p in (REPO / "edge_sync").rglob("*.py")
        if p.name != "__main__.py"
    )
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('dagster', 'resources', 'mfg_assets', 'sensors', 'torch', 'timm'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    assert "edge_sync.agent.core" in modules and "edge_sync.server_state.devices" in modules


MAX_LINES = 500  # a module a reader takes in one sitting; split by job, not by line count


def test_modules_stay_small() -> None:
    too_big = {}
    for package in ("mfg_assets", "resources", "sensors", "edge_sync"):
        for source in (REPO / package).rglob("*.py"):
            rel = source.relative_to(REPO).as_posix()
            lines = len(source.read_text().splitlines())
            if lines > MAX_LINES:
                too_big[rel] = lines
    assert too_big == {}, f"split these modules (limit {MAX_LINES} lines): {too_big}"
