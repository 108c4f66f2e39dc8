"""``raw_images``: ingest complete landing batches of a line/variant into the artifact store.

Each file is decoded and checked; good images are stored by content hash and described in the
``images`` table (line, variant, camera, shift/lighting tags, size, capture time, pHash); bad files
are copied to the quarantine folder and described in the ``quarantine`` table with the reason and
the fix. Batches already ingested are skipped, so new batches extend a variant's data and nothing
ingested before is lost or overwritten.
"""

import json
from datetime import UTC, datetime

import dagster as dg
import pandas as pd
from pydantic import Field

from edge_sync.failpoints import failpoint
from mfg_assets.common import hash_rows, inspection_asset, record_lineage
from mfg_assets.handles import ImageSet
from resources.artifact_store import ArtifactStore
from resources.data.ingest import ingest_batch
from resources.data.variants import split_partition_key
from resources.landing import LandingZone, invalid_folders
from resources.lineage import LineageStore
from resources.storage.scratch import sweep_abandoned

__all__ = ["IngestConfig", "load_image_table", "raw_images"]


class IngestConfig(dg.Config):
    max_pixels: int = Field(
        40_000_000, ge=1, le=500_000_000, description="images with more pixels are quarantined as too large"
    )


def load_image_table(lineage: LineageStore, partition: str) -> pd.DataFrame:
    """Every ingested image file of a partition's current batches (duplicates included; the files of
    a withdrawn batch stay stored, but no asset reads them: ``resources.data.batches``). Rows of a
    batch whose ingest never finished (no ``image_batches`` row: the process died) are left out."""
    from resources.data.batches import withdrawn_batches

    images = lineage.read_table("images", "partition = ?", [partition])
    if images.empty:
        return images
    done = lineage.read_table("image_batches", "partition = ?", [partition])
    committed = set(done["batch"]) if not done.empty else set()
    keep = images["batch"].isin(committed) & ~images["batch"].isin(withdrawn_batches(lineage, partition))
    return images[keep].reset_index(drop=True)


@inspection_asset("raw_images", kinds={"parquet"})
def raw_images(
    context: dg.AssetExecutionContext,
    config: IngestConfig,
    landing: LandingZone,
    artifact_store: ArtifactStore,
    lineage: LineageStore,
) -> dg.Output[ImageSet]:
    """Images of a line/variant: decoded, hashed, deduplicated; bad files quarantined with a reason."""
    from resources.data.batches import current_batches

    partition = context.partition_key
    line, variant = split_partition_key(partition)
    # What a killed run left half-written (its process is gone) goes first; work of live runs stays.
    for path in sweep_abandoned(artifact_store.root_path(), lineage.warehouse().tables_dir, landing.root_path()):
        context.log.warning(f"removed {path}: left half-written by a process that is gone (crashed or killed)")
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
    notes: list[str] = [
        f"{folder}: a landing folder with a _READY marker but a name that is not a valid batch name "
        "(letters, digits, '_' or '-'); it is not ingested: rename it"
        for folder in invalid_folders(landing.root_path())
        if folder.parent.name == variant and folder.parent.parent.name == line
    ]
    for note in notes:
        context.log.warning(note)
    label_suffixes = _label_suffixes(line, variant, lineage) if new_batches else frozenset()
    for batch in new_batches:
        context.log.info(f"ingesting batch {batch.batch_id} from {batch.path}")
        ingest = ingest_batch(
            batch,
            store=artifact_store,
            quarantine_root=landing.quarantine_path(),
            known_hashes=known_hashes,
            max_pixels=config.max_pixels,
            run_id=context.run_id,
            label_suffixes=label_suffixes,
        )
        for folder in ingest.empty_folders:
            context.log.warning(f"{batch.batch_id}: folder {folder}/ holds no files; it contributes no images")
        for note in ingest.notes:
            context.log.warning(note)
        notes += ingest.notes
        for row in ingest.quarantined:
            context.log.warning(f"quarantined {batch.batch_id}/{row['rel_path']}: {row['detail']}")
        # A batch's rows are keyed by partition and batch, and the batch counts as ingested only once
        # its image_batches row is written, last: a crash in between leaves rows that no asset reads
        # and that the rerun's rows replace, so nothing is lost or counted twice.
        warehouse = lineage.warehouse()
        warehouse.replace_keyed("images", ingest.images, prefix=batch.batch, key=f"{partition}/{batch.batch}")
        warehouse.replace_keyed("quarantine", ingest.quarantined, prefix=batch.batch, key=f"{partition}/{batch.batch}")
        failpoint("ingest.before_batch_commit")
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
    if images.empty and not done.empty and len(current_batches(lineage, partition)) == 0:
        raise dg.Failure(
            f"{line}/{variant}: every ingested batch is withdrawn (see `mfgv batch list --line {line} --variant "
            f"{variant}`); land a new batch (`mfgv onboard` or `mfgv batch replace`)"
        )
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
            "notes": dg.MetadataValue.json(notes[:100]),
            "n_notes": len(notes),
            "quarantine_reasons": dg.MetadataValue.json({str(k): int(v) for k, v in reasons.items()}),
            "dagster/row_count": len(images),
        },
    )


def _label_suffixes(line: str, variant: str, lineage: LineageStore) -> frozenset[str]:
    """The label-file suffixes the variant's task reads (none for a task whose labels are folders or
    one CSV/JSON: then a ``.txt`` in a batch is not an image and is quarantined as one)."""
    from resources.data.variants import UnknownVariant, load_variant
    from resources.tasks import engine_for

    try:
        spec = load_variant(line, variant, lineage.home_path())
    except UnknownVariant:  # a batch landed before its variant was registered: the annotations step says so
        return frozenset()
    return engine_for(spec.task).label_file_suffixes
