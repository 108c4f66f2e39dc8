"""The code version recorded with every asset: a hash of the platform's own source files.

A git commit is not always available (an installed wheel, a tarball), and a dirty work tree would
make a commit id lie; hashing the source that actually ran is exact in both cases. The packages are
found next to this one (``resources/`` and its siblings, wherever they are installed); their Python
files and the report templates are hashed with their paths. Finding none is an error, never the
hash of nothing: versions recorded before 2026-12-07 all read ``e3b0c44298fc`` (sha256 of no bytes),
because this module looked one folder too deep.
"""

import hashlib
from functools import lru_cache
from pathlib import Path

__all__ = ["PACKAGES", "code_version", "source_hash"]

PACKAGES = ("mfg_assets", "resources", "sensors", "edge_sync")
_SUFFIXES = (".py", ".j2")
EMPTY_HASH = hashlib.sha256(b"").hexdigest()[:12]


def source_hash(root: Path, packages: tuple[str, ...] = PACKAGES) -> str:
    """12 hex digits of sha256 over every source file of ``packages`` under ``root`` (path and bytes,
    in sorted order); raises if there is none, so a wrong root cannot pass for a version."""
    digest = hashlib.sha256()
    count = 0
    for package in packages:
        for source in sorted(p for p in (root / package).rglob("*") if p.suffix in _SUFFIXES and p.is_file()):
            if "__pycache__" in source.parts:
                continue
            digest.update(source.relative_to(root).as_posix().encode())
            digest.update(b"\0")
            digest.update(source.read_bytes())
            count += 1
    if not count:
        raise RuntimeError(
            f"no source file of {', '.join(packages)} under {root}; the code version cannot be computed "
            "(is the platform installed as packages next to each other?)"
        )
    return digest.hexdigest()[:12]


@lru_cache(maxsize=1)
def code_version() -> str:
    """The running platform's code version (computed once per process)."""
    return source_hash(Path(__file__).resolve().parent.parent.parent)
