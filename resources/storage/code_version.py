"""The code version recorded with every asset: a hash of the platform's own source files.

A git commit is not always available (an installed wheel, a tarball), and a dirty work tree would
make a commit id lie; hashing the source that actually ran is exact in both cases.
"""

import hashlib
from functools import lru_cache
from pathlib import Path

__all__ = ["code_version"]

_PACKAGES = ("mfg_assets", "resources", "sensors", "edge_sync")


@lru_cache(maxsize=1)
def code_version() -> str:
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for package in _PACKAGES:
        for source in sorted((root / package).rglob("*.py")):
            digest.update(str(source.relative_to(root)).encode())
            digest.update(source.read_bytes())
    return digest.hexdigest()[:12]
