"""Defect masks of an MVTec-layout batch: set apart from the images, matched, checked, quarantined.

A mask under ``ground_truth/`` is ingested like any file (decoded, hashed, stored), but it is the
annotation of a defect image, not an image of the line: ``annotations`` takes the masks out of the
images to label, attaches each to its image and checks it against the image (same size, binary).
A mask that fails is quarantined with the reason (the stored file stays; its image keeps its label
and counts for image-level metrics only); nothing else is dropped.
"""

from datetime import UTC, datetime

import dagster as dg
import pandas as pd

from resources.artifact_store import ArtifactStore
from resources.lineage import LineageStore

__all__ = ["MASK_COLUMNS", "first_mask_per_image", "split_off_masks"]

MASK_COLUMNS = ("partition", "batch", "image_rel_path", "image_sha256", "mask_rel_path", "mask_sha256", "mask_artifact", "width", "height")


def split_off_masks(
    context: dg.AssetExecutionContext,
    images: pd.DataFrame,
    batches: pd.DataFrame,
    store: ArtifactStore,
    lineage: LineageStore,
    partition: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the images without the masks, one row per usable mask with ``MASK_COLUMNS``)."""
    from mfg_assets.annotations import way_out
    from resources.data.mask_files import MaskLayoutError, read_mask
    from resources.data.labels import LabelImportError
    from resources.data.mvtec_labels import is_mask_path, labels_from_mvtec

    is_mask = images["rel_path"].map(is_mask_path)
    kept: list[dict] = []
    for _, batch_row in batches.iterrows():
        batch = batch_row["batch"]
        in_batch = images[images["batch"] == batch]
        try:
            layout = labels_from_mvtec(sorted(in_batch["rel_path"]), require_good=False)
        except LabelImportError as exc:
            raise dg.Failure(f"batch {batch}: {exc}; {way_out(partition, batch)}") from exc
        for problem in layout.problems:
            context.log.warning(f"batch {batch}: {problem}")
        by_path = in_batch.drop_duplicates("rel_path").set_index("rel_path")
        bad: list[dict] = []
        now = datetime.now(UTC).isoformat()
        for image_path, mask_path in sorted(layout.masks.items()):
            image, mask = by_path.loc[image_path], by_path.loc[mask_path]
            size = (int(image["width"]), int(image["height"]))
            try:
                read_mask(store.path(mask["artifact"]), size)
            except MaskLayoutError as exc:
                detail = (
                    f"{batch}/{mask_path} (mask of {image_path}): {str(exc).split(': ', 1)[-1]}; the image keeps its "
                    "label and counts for image-level metrics only; fix the mask and replace the batch"
                )
                context.log.warning(f"quarantined {detail}")
                bad.append(
                    {
                        "partition": partition,
                        "batch": batch,
                        "rel_path": mask_path,
                        "reason": "bad_mask",
                        "detail": detail,
                        "quarantined_to": str(store.path(mask["artifact"])),
                        "run_id": context.run_id,
                        "quarantined_at": now,
                    }
                )
                continue
            kept.append(
                {
                    "partition": partition,
                    "batch": batch,
                    "image_rel_path": image_path,
                    "image_sha256": image["sha256"],
                    "mask_rel_path": mask_path,
                    "mask_sha256": mask["sha256"],
                    "mask_artifact": mask["artifact"],
                    "width": size[0],
                    "height": size[1],
                }
            )
        lineage.warehouse().replace_keyed("quarantine", bad, prefix=batch, key=f"{partition}/{batch}/masks")
    masks, conflicts = first_mask_per_image(pd.DataFrame(kept, columns=list(MASK_COLUMNS)))
    now = datetime.now(UTC).isoformat()
    rows = []
    for conflict in conflicts:
        detail = (
            f"{conflict['batch']}/{conflict['mask_rel_path']}: its image {conflict['image_rel_path']} has the same content "
            f"as {conflict['first']}, whose mask differs; the first mask is used: make the masks agree and replace the batch"
        )
        context.log.warning(f"quarantined {detail}")
        rows.append(
            {
                "partition": partition,
                "batch": conflict["batch"],
                "rel_path": conflict["mask_rel_path"],
                "reason": "conflicting_mask",
                "detail": detail,
                "quarantined_to": str(store.path(conflict["mask_artifact"])),
                "run_id": context.run_id,
                "quarantined_at": now,
            }
        )
    lineage.warehouse().replace_keyed("quarantine", rows, prefix="masks", key=f"{partition}/conflicting-masks")
    return images[~is_mask].reset_index(drop=True), masks


def first_mask_per_image(masks: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """One mask per image content: an image stored twice with the same mask keeps one row; with a
    different mask, the first (batch, path order) is kept and the others come back as conflicts,
    each with ``first`` naming the image whose mask was kept."""
    ordered = masks.sort_values(["batch", "image_rel_path"], kind="stable")
    first = ordered.drop_duplicates("image_sha256")
    kept_mask = dict(zip(first["image_sha256"], first["mask_sha256"], strict=True))
    first_where = {row.image_sha256: f"{row.batch}/{row.image_rel_path}" for row in first.itertuples()}
    conflicts = [
        {**row, "first": first_where[row["image_sha256"]]}
        for row in ordered.drop(first.index).to_dict("records")
        if row["mask_sha256"] != kept_mask[row["image_sha256"]]
    ]
    return first.reset_index(drop=True), conflicts
