"""``raw_images``: ingest complete landing batches of a line/variant into the artifact store.

Each file is decoded and checked; good images are stored by content hash and described in the
``images`` table (line, variant, camera, shift/lighting tags, size, capture time, pHash); bad files
are copied to the quarantine folder and described in the ``quarantine`` table with the reason and
the fix. Batches already ingested are skipped, so new batches extend a variant's data and nothing
ingested before is lost or overwritten.
"""

import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import Field

from mfg_assets.common import inspection_asset, hash_rows, record_lineage
from mfg_assets.handles import ImageSet
from resources.artifact_store import ArtifactStore
from resources.landing import SIDECAR_FILES, LandingBatch, LandingZone
from resources.lineage import LineageStore
from resources.data.variants import split_partition_key

__all__ = ["IngestConfig", "BatchIngest", "ingest_batch", "raw_images", "load_image_table"]

METADATA_COLUMNS = ("camera", "shift", "lighting", "capture_time")


class IngestConfig(dg.Config):
    max_pixels: int = Field(
        40_000_000, ge=1, le=500_000_000, description="images with more pixels are quarantined as too large"
    )


@dataclass
class BatchIngest:
    """What one batch produced: image rows, quarantine rows and the stored sidecar files."""

    images: list[dict] = field(default_factory=list)
    quarantined: list[dict] = field(default_factory=list)
    sidecars: dict[str, dict] = field(default_factory=dict)
    empty_folders: list[str] = field(default_factory=list)


def _read_metadata(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "path" not in frame.columns:
        raise ValueError(
            f"has no 'path' column (columns: {', '.join(frame.columns)}); its header must be "
            f"path,{','.join(METADATA_COLUMNS)}"
        )
    return frame.drop_duplicates("path", keep="last").set_index("path")


def ingest_batch(
    batch: LandingBatch,
    *,
    store: ArtifactStore,
    quarantine_root: Path,
    known_hashes: set[str],
    max_pixels: int,
    run_id: str,
) -> BatchIngest:
    """Check, store and describe every file of one batch; quarantine what cannot be used."""
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
        if rel_path in SIDECAR_FILES or any(part.startswith(".") for part in Path(rel_path).parts):
            continue
        try:
            facts = inspect_image(path, max_pixels=max_pixels)
        except ImageRejected as exc:
            quarantine(path, rel_path, exc.reason, str(exc))
            continue
        stored = store.put_file(path, kind="images")
        meta = metadata.loc[rel_path] if rel_path in metadata.index else None
        capture_time = (meta.get("capture_time") if meta is not None else "") or datetime.fromtimestamp(
            path.stat().st_mtime, UTC
        ).isoformat()
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
                "duplicate_of": facts.sha256 if facts.sha256 in known_hashes else "",
                "run_id": run_id,
                "ingested_at": now,
            }
        )
        known_hashes.add(facts.sha256)
    return result


def load_image_table(lineage: LineageStore, partition: str) -> pd.DataFrame:
    """Every ingested image file of a partition (duplicates included)."""
    return lineage.read_table("images", "partition = ?", [partition])


@inspection_asset("raw_images", kinds={"parquet"})
def raw_images(
    context: dg.AssetExecutionContext,
    config: IngestConfig,
    landing: LandingZone,
    artifact_store: ArtifactStore,
    lineage: LineageStore,
) -> dg.Output[ImageSet]:
    """Images of a line/variant: decoded, hashed, deduplicated; bad files quarantined with a reason."""
    partition = context.partition_key
    line, variant = split_partition_key(partition)
    done = lineage.read_table("image_batches", "partition = ?", [partition])
    done_batches = set(done["batch"]) if not done.empty else set()
    existing = load_image_table(lineage, partition)
    known_hashes = set(existing["sha256"]) if not existing.empty else set()

    complete = landing.batches(line, variant)
    new_batches = [b for b in complete if b.batch not in done_batches]
    if not complete and not done_batches:
        raise dg.Failure(
            f"no complete batch for {line}/{variant} in {landing.root_path() / line / variant}: copy the "
            f"images into a batch folder there and create its _READY marker last (or use `mfgv onboard`)"
        )
    quarantined_total = 0
    for batch in new_batches:
        context.log.info(f"ingesting batch {batch.batch_id} from {batch.path}")
        ingest = ingest_batch(
            batch,
            store=artifact_store,
            quarantine_root=landing.quarantine_path(),
            known_hashes=known_hashes,
            max_pixels=config.max_pixels,
            run_id=context.run_id,
        )
        for folder in ingest.empty_folders:
            context.log.warning(f"{batch.batch_id}: folder {folder}/ holds no files; it contributes no images")
        for row in ingest.quarantined:
            context.log.warning(f"quarantined {batch.batch_id}/{row['rel_path']}: {row['detail']}")
        if ingest.images:
            lineage.append_table("images", ingest.images, prefix=batch.batch)
        if ingest.quarantined:
            lineage.append_table("quarantine", ingest.quarantined, prefix=batch.batch)
        quarantined_total += len(ingest.quarantined)
        lineage.append_table(
            "image_batches",
            [
                {
                    "partition": partition,
                    "batch": batch.batch,
                    "landing_path": str(batch.path),
                    "marker_mtime_ns": batch.marker_mtime_ns,
                    "n_images": len(ingest.images),
                    "n_quarantined": len(ingest.quarantined),
                    "empty_folders": json.dumps(ingest.empty_folders),
                    "sidecars": json.dumps(ingest.sidecars, sort_keys=True),
                    "run_id": context.run_id,
                    "ingested_at": datetime.now(UTC).isoformat(),
                }
            ],
            prefix=batch.batch,
        )

    images = load_image_table(lineage, partition)
    if images.empty:
        raise dg.Failure(
            f"{line}/{variant}: no usable image in {len(complete)} batch(es); every file was quarantined "
            f"— see {landing.quarantine_path() / line / variant} and the quarantine table for reasons"
        )
    batches = tuple(sorted(set(images["batch"])))
    unique = sorted(set(images["sha256"]))
    image_set_id = f"images:{hash_rows([[h] for h in unique])}"
    all_quarantined = lineage.read_table("quarantine", "partition = ?", [partition])
    record_lineage(
        context,
        lineage,
        output_id=image_set_id,
        input_ids=[f"batch:{partition}/{b}" for b in batches],
        parameters=config.model_dump(),
        input_hashes={f"batch:{partition}/{b.batch}": str(b.marker_mtime_ns) for b in new_batches},
    )
    reasons = (
        all_quarantined.groupby("reason").size().to_dict() if not all_quarantined.empty else {}
    )
    handle = ImageSet(
        id=image_set_id,
        partition=partition,
        batches=batches,
        n_images=len(unique),
        n_files=len(images),
        n_quarantined=len(all_quarantined),
    )
    return dg.Output(
        handle,
        metadata={
            "image_set_id": image_set_id,
            "n_images": len(unique),
            "n_files": len(images),
            "n_duplicate_files": int((images["duplicate_of"] != "").sum()),
            "n_quarantined": len(all_quarantined),
            "n_quarantined_this_run": quarantined_total,
            "new_batches": dg.MetadataValue.json([b.batch for b in new_batches]),
            "quarantine_reasons": dg.MetadataValue.json({str(k): int(v) for k, v in reasons.items()}),
            "dagster/row_count": len(images),
        },
    )
