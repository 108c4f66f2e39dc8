"""Ingesting one landing batch: decode and check each file, store the good ones by content hash,
quarantine the bad ones with their reason, keep the sidecar files.

No Dagster here: the ``raw_images`` asset finds the complete batches, calls :func:`ingest_batch`
for each and appends the rows it returns to the ``images`` and ``quarantine`` tables.
"""

import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from resources.artifact_store import ArtifactStore
from resources.landing import SIDECAR_FILES, LandingBatch

__all__ = ["LABEL_FILE_SUFFIXES", "METADATA_COLUMNS", "PART_ID_ALIASES", "BatchIngest", "ingest_batch"]

LABEL_FILE_SUFFIXES = frozenset({".txt", ".xml", ".yaml", ".yml", ".json"})
"""Suffixes a label format with one file per image (or a folder of them) may use: YOLO
``labels/*.txt`` with ``data.yaml`` or ``classes.txt``, Pascal VOC ``Annotations/*.xml``, a COCO JSON
beside the images. A task's engine names the ones its formats read (``TaskEngine.label_file_suffixes``);
only those are kept as sidecars, under their path in the batch; elsewhere such a file is not an image."""

METADATA_COLUMNS = ("camera", "shift", "lighting", "capture_time")
PART_ID_ALIASES = ("part_id", "serial")
"""metadata.csv columns naming the physical part (``serial`` when there is no ``part_id``); with
``capture_id`` they keep one part's images in one split (``resources.data.grouping``)."""


@dataclass
class BatchIngest:
    """What one batch produced: image rows, quarantine rows and the stored sidecar files."""

    images: list[dict] = field(default_factory=list)
    quarantined: list[dict] = field(default_factory=list)
    sidecars: dict[str, dict] = field(default_factory=dict)
    empty_folders: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What was accepted or skipped on purpose (hidden files, extra TIFF pages, unparseable
    capture times): nothing is silent, each is logged and shown in the run's metadata."""


def _read_metadata(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "path" not in frame.columns:
        raise ValueError(
            f"has no 'path' column (columns: {', '.join(frame.columns)}); its header must be "
            f"path,{','.join(METADATA_COLUMNS)} (optionally part_id, capture_id)"
        )
    return frame.drop_duplicates("path", keep="last").set_index("path")


def file_mtime_iso(path: Path) -> str:
    """The file's modification time (UTC, ISO 8601): the capture time when metadata gives none."""
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()


def _part_value(meta: "pd.Series | None", columns: tuple[str, ...]) -> str:
    """The first of ``columns`` the image's metadata row fills (stripped), else ''."""
    if meta is None:
        return ""
    for column in columns:
        value = str(meta.get(column) or "").strip()
        if value:
            return value
    return ""


def _parses_as_time(text: str) -> bool:
    try:
        datetime.fromisoformat(str(text))
    except ValueError:
        return False
    return True


def ingest_batch(
    batch: LandingBatch,
    *,
    store: ArtifactStore,
    quarantine_root: Path,
    known_hashes: set[str],
    max_pixels: int,
    run_id: str,
    label_suffixes: frozenset[str] = frozenset(),
) -> BatchIngest:
    """Check, store and describe every file of one batch; quarantine what cannot be used. Files
    whose suffix is in ``label_suffixes`` are label files of the variant's task: kept as sidecars."""
    from resources.data.images import ImageRejected, inspect_image, perceptual_hash

    result = BatchIngest()
    now = datetime.now(UTC).isoformat()
    quarantine_dir = quarantine_root / batch.line / batch.variant / batch.batch

    def quarantine(source: Path, rel_path: str, reason: str, detail: str) -> None:
        target = quarantine_dir / rel_path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        result.quarantined.append(
            {
                "partition": f"{batch.line}.{batch.variant}",
                "batch": batch.batch,
                "rel_path": rel_path,
                "reason": reason,
                "detail": detail,
                "quarantined_to": str(target),
                "run_id": run_id,
                "quarantined_at": now,
            }
        )

    metadata = pd.DataFrame()
    for name in sorted(SIDECAR_FILES - {"_READY"}):
        sidecar = batch.path / name
        if not sidecar.is_file():
            continue
        if name == "metadata.csv":
            try:
                metadata = _read_metadata(sidecar)
            except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
                quarantine(sidecar, name, "bad_metadata", f"{batch.batch_id}/{name}: {exc}; fix the file and re-deliver it")
                continue
        stored = store.put_file(sidecar, kind="sidecars", suffix=Path(name).suffix)
        result.sidecars[name] = stored.model_dump()

    for directory in sorted(p for p in batch.path.rglob("*") if p.is_dir()):
        if not any(child.is_file() for child in directory.rglob("*")):
            result.empty_folders.append(directory.relative_to(batch.path).as_posix())

    for path in sorted(p for p in batch.path.rglob("*") if p.is_file()):
        rel_path = path.relative_to(batch.path).as_posix()
        if rel_path in SIDECAR_FILES:
            continue
        if any(part.startswith(".") for part in Path(rel_path).parts):
            result.notes.append(
                f"{batch.batch_id}/{rel_path}: hidden file skipped (editor and OS artefacts start with '.'); "
                "rename it without the dot to ingest it"
            )
            continue
        if path.suffix.lower() in label_suffixes:
            stored = store.put_file(path, kind="sidecars", suffix=path.suffix.lower())
            result.sidecars[rel_path] = stored.model_dump()
            continue
        try:
            facts = inspect_image(path, max_pixels=max_pixels)
        except ImageRejected as exc:
            quarantine(path, rel_path, exc.reason, str(exc))
            continue
        stored = store.put_file(path, kind="images")
        meta = metadata.loc[rel_path] if rel_path in metadata.index else None
        given = (meta.get("capture_time") if meta is not None else "") or ""
        capture_time = given if given and _parses_as_time(given) else file_mtime_iso(path)
        if given and capture_time != given:
            result.notes.append(
                f"{batch.batch_id}/{rel_path}: metadata.csv capture_time {given!r} is not an ISO 8601 time "
                "(e.g. 2026-12-02T06:10:00+00:00); the file's modification time is used instead"
            )
        if facts.frames > 1:
            result.notes.append(
                f"{batch.batch_id}/{rel_path}: {facts.format} with {facts.frames} pages; only page 1 is used "
                "(deliver one image per file to use the others)"
            )
        result.images.append(
            {
                "partition": f"{batch.line}.{batch.variant}",
                "line": batch.line,
                "variant": batch.variant,
                "batch": batch.batch,
                "rel_path": rel_path,
                "sha256": facts.sha256,
                "phash": f"{perceptual_hash(path):016x}",
                "artifact": stored.relpath,
                "n_bytes": facts.n_bytes,
                "format": facts.format,
                "width": facts.width,
                "height": facts.height,
                "mode": facts.mode,
                "channels": facts.channels,
                "camera": (meta.get("camera") if meta is not None else "") or "unknown",
                "shift": (meta.get("shift") if meta is not None else "") or "unknown",
                "lighting": (meta.get("lighting") if meta is not None else "") or "unknown",
                "capture_time": capture_time,
                "part_id": _part_value(meta, PART_ID_ALIASES),
                "capture_id": _part_value(meta, ("capture_id",)),
                "duplicate_of": facts.sha256 if facts.sha256 in known_hashes else "",
                "run_id": run_id,
                "ingested_at": now,
            }
        )
        known_hashes.add(facts.sha256)
    return result
