"""The shared assets only orchestrate: no asset module names a task, its package or its model.

What differs by task lives in the task's engine (``resources/<task>/engine.py``); an asset asks the
variant's engine. A task's name in a shared module is how a five-way branch starts, so this test
reads every module that defines assets (and the modules they share: common helpers, the engines'
data view, the jobs) and fails on any task word, in code, strings or comments alike.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TASK_WORDS = re.compile(
    r"\b(anomal(y|ies)|classify|classification|classifiers?|detect|detection|detectors?|segment|segmentation|ocr|"
    r"patchcore)\b",
    re.IGNORECASE,
)
SHARED_HELPERS = ("common.py", "task_data.py", "jobs.py", "handle_store.py")


def _defines_assets(path: Path) -> bool:
    """Whether the module decorates a function as an asset (``inspection_asset`` or ``dg.asset``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
                if name in ("inspection_asset", "asset", "multi_asset"):
                    return True
    return False


def shared_modules() -> list[Path]:
    modules = [p for p in sorted((ROOT / "mfg_assets").glob("*.py")) if _defines_assets(p)]
    return modules + [ROOT / "mfg_assets" / name for name in SHARED_HELPERS]


def test_the_asset_modules_are_found() -> None:
    names = {p.name for p in shared_modules()}
    assert {"training.py", "validation.py", "export.py", "search.py", "cross_validation.py", "deployment.py"} <= names
    assert {"augment.py", "datasets.py", "annotations.py", "ingest.py", "registry.py"} <= names


@pytest.mark.parametrize("path", shared_modules(), ids=lambda p: p.name)
def test_a_shared_asset_module_names_no_task(path: Path) -> None:
    hits = [
        f"{path.name}:{number}: {line.strip()}"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if TASK_WORDS.search(line)
    ]
    assert not hits, "a shared module names a task; ask the variant's engine (resources.tasks) instead:\n" + "\n".join(hits)


def test_the_rule_catches_a_task_branch(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text('if dataset_version.task == "anomaly":\n    pass\n', encoding="utf-8")
    assert any(TASK_WORDS.search(line) for line in planted.read_text().splitlines())
