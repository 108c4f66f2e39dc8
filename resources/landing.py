"""The landing zone: where line cameras (or an import) drop batches of images.

Layout: ``MFG_HOME/landing/<line>/<variant>/<batch>/``. A batch is complete when its marker file
``_READY`` appears (the camera writes it last), so a half-copied batch is never ingested. Label and
metadata files in a batch (``labels.csv``, ``annotations.json``, ``metadata.csv``) travel with it.
"""

from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from resources.settings import mfg_home
from resources.data.variants import NAME_PATTERN

__all__ = ["LandingBatch", "LandingZone", "MARKER", "SIDECAR_FILES", "find_complete_batches", "landed_source", "onboard_marker"]

MARKER = "_READY"
SIDECAR_FILES = frozenset({"labels.csv", "annotations.json", "metadata.csv", MARKER})
# the line of an onboarded batch's marker that names the folder `mfgv onboard` copied it from
_SOURCE_LINE = "source: "


def onboard_marker(source: Path) -> str:
    """The marker text of a batch ``mfgv onboard`` copied from ``source``: the folder is named, so a
    report can later point the user at their own file rather than the landed copy."""
    return f"onboarded by mfgv\n{_SOURCE_LINE}{source.resolve()}\n"


def landed_source(batch_dir: Path) -> Path | None:
    """The folder ``mfgv onboard`` copied a landed batch from (its marker's ``source:`` line), or
    ``None`` for batches that came otherwise (a camera's drop, a sync) or before markers named it."""
    try:
        lines = (batch_dir / MARKER).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    found = [line[len(_SOURCE_LINE):] for line in lines if line.startswith(_SOURCE_LINE)]
    return Path(found[0]) if found and found[0] else None


@dataclass(frozen=True)
class LandingBatch:
    line: str
    variant: str
    batch: str
    path: Path
    marker_mtime_ns: int

    @property
    def batch_id(self) -> str:
        return f"{self.line}/{self.variant}/{self.batch}"


def find_complete_batches(landing_root: Path) -> list[LandingBatch]:
    """Every complete batch under ``landing_root``, sorted by line, variant, batch.

    Folders whose names are not valid line/variant/batch names are ignored here and reported by
    ``invalid_folders`` so a sensor can log them.
    """
    batches: list[LandingBatch] = []
    if not landing_root.exists():
        return batches
    for marker in sorted(landing_root.glob(f"*/*/*/{MARKER}")):
        batch_dir = marker.parent
        variant_dir = batch_dir.parent
        line_dir = variant_dir.parent
        if not all(NAME_PATTERN.fullmatch(p.name) for p in (batch_dir, variant_dir, line_dir)):
            continue
        batches.append(
            LandingBatch(line_dir.name, variant_dir.name, batch_dir.name, batch_dir, marker.stat().st_mtime_ns)
        )
    return batches


def invalid_folders(landing_root: Path) -> list[Path]:
    """Batch folders with a marker whose line/variant/batch names are not valid."""
    return [
        marker.parent
        for marker in sorted(landing_root.glob(f"*/*/*/{MARKER}"))
        if not all(NAME_PATTERN.fullmatch(p.name) for p in (marker.parent, marker.parent.parent, marker.parent.parent.parent))
    ]


class LandingZone(dg.ConfigurableResource):
    """The landing zone and the quarantine folder. Defaults: ``MFG_HOME/landing``, ``MFG_HOME/quarantine``."""

    root: str = ""
    quarantine_root: str = ""

    def root_path(self) -> Path:
        return Path(self.root).expanduser().resolve() if self.root else mfg_home() / "landing"

    def quarantine_path(self) -> Path:
        return (
            Path(self.quarantine_root).expanduser().resolve()
            if self.quarantine_root
            else mfg_home() / "quarantine"
        )

    def batches(self, line: str, variant: str) -> list[LandingBatch]:
        return [b for b in find_complete_batches(self.root_path()) if b.line == line and b.variant == variant]

    def batch_dir(self, line: str, variant: str, batch: str) -> Path:
        return self.root_path() / line / variant / batch
