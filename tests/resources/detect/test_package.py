"""The detect package is pure library code: no Dagster, and heavy libraries only when used."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_importing_every_module_loads_no_dagster_and_no_heavy_library() -> None:
    # engine_parts/ holds torch modules (an nn.Module subclass needs torch when its class is defined):
    # only the functions that build a graph import them, so they are left out here
    modules = sorted(
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for p in (REPO / "resources" / "detect").rglob("*.py")
        if "engine_parts" not in p.relative_to(REPO).parts or p.name == "__init__.py"
    )
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('dagster', 'mfg_assets', 'pyarrow', 'pandas', 'PIL', 'scipy', 'yaml', 'torch'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []


def test_every_module_declares_its_public_names() -> None:
    for path in (REPO / "resources" / "detect").rglob("*.py"):
        text = path.read_text()
        assert "__all__" in text, f"{path} has no __all__"
        assert len(text.splitlines()) <= 400, f"{path} is over 400 lines"
