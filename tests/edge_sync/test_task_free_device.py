"""The device side is task-free: only ``edge_sync/contract/decoders/`` knows the tasks.

Every identifier, import path and string of the agent, the server, the runtime and the rest of the
contract is searched for a task's name (docstrings and comments are prose and may explain what a
decoder does). ``_`` counts as a word boundary, so ``decide_<task>`` or ``<TASK>_VERSION`` are caught
too. The exceptions are explicit and minimal: the ``Task`` enum that lists the tasks, and two names
of one decoder the contract re-exports while the platform still imports them from there.
"""

import ast
import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EDGE = REPO / "edge_sync"
TASK_WORD = re.compile(
    r"(?<![a-z])(anomaly|classify|classification|detect|detection|segment|ocr)(?![a-z])", re.IGNORECASE
)
TASK_ENUM = ("edge_sync/contract/manifest.py", "Task")
"""The one class whose body may list the task values."""
ALLOWED_NAMES: dict[str, frozenset[str]] = {}
"""Names a module may use despite the rule, by module (none now)."""


def device_modules() -> list[Path]:
    """The agent, the server (and its state), the runtime, and the contract outside ``decoders/``."""
    found = [*EDGE.joinpath("agent").rglob("*.py"), *EDGE.joinpath("contract").rglob("*.py"), EDGE / "inference.py"]
    found += EDGE.glob("server*.py")
    found += [p for d in EDGE.glob("server*") if d.is_dir() for p in d.rglob("*.py")]
    return sorted(p for p in found if "decoders" not in p.relative_to(EDGE).parts)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that stand alone as statements (docstrings, attribute docs)."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    }


def _skipped(tree: ast.AST, rel: str) -> set[int]:
    """ids of every node inside the task enum's class body, when this is its module."""
    if rel != TASK_ENUM[0]:
        return set()
    return {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.name == TASK_ENUM[1]
        for inner in ast.walk(node)
    }


def words(source: str, rel: str) -> Iterator[tuple[int, str]]:
    """(line, text) of every identifier, import path and non-doc string constant in ``source``."""
    tree = ast.parse(source)
    docs, skipped = _docstrings(tree), _skipped(tree, rel)
    for node in ast.walk(tree):
        if id(node) in skipped or id(node) in docs:
            continue
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Name):
            yield line, node.id
        elif isinstance(node, ast.Attribute):
            yield line, node.attr
        elif isinstance(node, ast.arg):
            yield line, node.arg
        elif isinstance(node, ast.keyword) and node.arg:
            yield line, node.arg
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield line, node.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield line, node.module
        elif isinstance(node, ast.alias):
            yield line, node.name
            if node.asname:
                yield line, node.asname
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield line, node.value


def task_mentions(path: Path) -> list[str]:
    rel = path.relative_to(REPO).as_posix()
    allowed = ALLOWED_NAMES.get(rel, frozenset())
    return [
        f"{rel}:{line}: {text!r}"
        for line, text in words(path.read_text(encoding="utf-8"), rel)
        if text not in allowed and TASK_WORD.search(text)
    ]


def test_no_device_module_outside_the_decoders_names_a_task() -> None:
    modules = device_modules()
    names = {p.relative_to(EDGE).as_posix() for p in modules}
    assert {"agent/core.py", "agent/installer.py", "agent/feedback.py", "inference.py", "server.py"} <= names
    assert "contract/manifest.py" in names and not any(n.startswith("contract/decoders/") for n in names)
    problems = [problem for path in modules for problem in task_mentions(path)]
    assert problems == [], "move task-specific code into edge_sync/contract/decoders/:\n" + "\n".join(problems)


def test_the_scan_catches_a_task_in_code_but_not_in_prose() -> None:
    """The checker itself: a task in an identifier, an import or a message is found; docstrings and
    comments are not; the enum's body is exempt only in its own module."""
    code = '''"""Explains anomaly scores."""
from edge_sync.contract.decoders.anomaly import x  # an anomaly comment
def decide_anomaly(a):
    """anomaly"""
    return Task.ANOMALY if a else f"no classify here {a}"
class Task:
    OCR = "ocr"
'''
    found = {text for _, text in words(code, "edge_sync/agent/x.py") if TASK_WORD.search(text)}
    assert found == {"edge_sync.contract.decoders.anomaly", "decide_anomaly", "ANOMALY", "no classify here ", "OCR", "ocr"}
    in_manifest = {text for _, text in words(code, TASK_ENUM[0]) if TASK_WORD.search(text)}
    assert in_manifest == found - {"OCR", "ocr"}
    assert not TASK_WORD.search("detector") and not TASK_WORD.search("segments") and TASK_WORD.search("ANOMALY_X")
