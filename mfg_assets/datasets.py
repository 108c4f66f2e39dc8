"""``dataset_version``: a content-addressed, leakage-free train/val/test split of labelled images.

The id is a hash of the image hashes, their labels, their splits and the split spec, so the same
data and spec always give the same version and any change gives a new one. Exact duplicates are
merged at ingest; images of one part (part ids from ``metadata.csv``, else near-copies by pHash
where they stand out from the line) are grouped and each group goes to one split, so no near-copy
of a test image is trained on. A blocking check re-verifies that. A grouping that would collapse a
split is refused, or with ``group_by=auto`` replaced by none, and the choice is recorded
(``resources.data.split_plan``).
"""

from collections.abc import Iterator
from typing import Literal

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from mfg_assets.annotations import load_labels
from mfg_assets.common import blocking_check_result, inspection_asset, record_lineage, variant_for
from mfg_assets.handle_store import store_handle
from mfg_assets.handles import AnnotationSet, DatasetVersion
from mfg_assets.ingest import load_image_table
from mfg_assets.saved_options import config_for_run
from resources.artifact_store import ArtifactStore
from resources.lineage import LineageStore

__all__ = ["SplitConfig", "dataset_version", "load_dataset_items", "load_split_images", "split_groups"]

SPLITS = ("train", "val", "test")
LEAKAGE_CHECK = {"no_leakage_across_splits": "no image or near-duplicate of it appears in two splits"}


class SplitConfig(dg.Config):
    train_fraction: float = Field(0.6, gt=0.0, lt=1.0, description="share of images for training")
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="share for validation and threshold calibration")
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="share for the held-out test report")
    seed: int = Field(0, ge=0, description="seed of the split; recorded in the dataset version")
    near_duplicate_max_distance: int = Field(
        4, ge=0, le=16, description="pHash Hamming distance at or below which two images are near-duplicates"
    )
    near_copy_max_neighbours: int = Field(
        8,
        ge=0,
        le=1_000_000,
        description="images within that distance are near-copies only if neither has more than this many others as close",
    )
    group_by: Literal["auto", "metadata", "phash", "none"] = Field(
        "auto",
        description=(
            "what keeps images of one part in one split: metadata (part_id/capture_id in metadata.csv), phash "
            "(near-copies), none (identical files only), auto (metadata where every image has an id, else phash; "
            "no grouping, recorded, if phash would collapse a split)"
        ),
    )


def _split_line(record: dict) -> str:
    """One log line: how the split was grouped and what each split holds."""
    parts = ", ".join(
        f"{name} {row['images']} images in {row['groups']} groups ({row['effective_parts']:g} effective parts)"
        for name, row in record["splits"].items()
    )
    return f"split grouped by {record['group_by']} ({record['reason']}): {parts}; largest group {record['largest_group']}"


def load_dataset_items(lineage: LineageStore, dataset_id: str) -> pd.DataFrame:
    items = lineage.read_table("dataset_items", "dataset_id = ?", [dataset_id])
    if items.empty:
        raise LookupError(f"dataset version {dataset_id} has no rows in dataset_items; re-materialize dataset_version")
    return items.sort_values(["split", "sha256"]).reset_index(drop=True)


def split_groups(rows: pd.DataFrame) -> np.ndarray | None:
    """The near-duplicate group of each of a split's rows (from :func:`load_split_images`), for
    intervals that count parts rather than exposures; ``None`` when the rows carry no groups."""
    if "group_id" not in rows.columns or rows["group_id"].isna().any():
        return None
    return rows["group_id"].to_numpy(dtype=np.int64)


def load_split_images(
    lineage: LineageStore,
    store: ArtifactStore,
    dataset: DatasetVersion,
    split: str,
    size: int,
    resize: str,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Images (uint8 N×size×size×3, fitted by ``resize``), class indices and rows of one split."""
    from resources.data.images import load_rgb_batch

    items = load_dataset_items(lineage, dataset.id)
    rows = items[items["split"] == split].reset_index(drop=True)
    if rows.empty:
        raise ValueError(f"dataset {dataset.id} has no {split} images; add images or change the split fractions")
    images = load_rgb_batch([store.path(relpath) for relpath in rows["artifact"]], size, resize)
    index = {name: i for i, name in enumerate(dataset.classes)}
    labels = np.array([index[label] for label in rows["label"]], dtype=np.int64)
    return images, labels, rows


@inspection_asset("dataset_version", kinds={"parquet"}, checks=LEAKAGE_CHECK)
def dataset_version(
    context: dg.AssetExecutionContext,
    config: SplitConfig,
    annotations: AnnotationSet,
    lineage: LineageStore,
) -> Iterator[dg.Output[DatasetVersion] | dg.AssetCheckResult]:
    """Seeded, stratified split with each part's images in one split (part ids, else near-copies); content-addressed."""
    config = config_for_run(context, config, lineage.home_path())
    from resources.data.grouping import PART_COLUMNS, GroupingError
    from resources.data.label_quality import consensus_labels
    from resources.data.split_plan import plan_split
    from resources.data.splitting import SplitSpec, dataset_content_hash, leakage_violations
    from resources.tasks import engine_for

    spec = variant_for(context, lineage)
    requested = SplitSpec(
        train_fraction=config.train_fraction,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        seed=config.seed,
        near_duplicate_max_distance=config.near_duplicate_max_distance,
        near_copy_max_neighbours=config.near_copy_max_neighbours,
    )
    images = load_image_table(lineage, annotations.partition)
    labels = load_labels(lineage, annotations.id)
    consensus = consensus_labels(labels[labels["sha256"] != ""])
    first = images.sort_values(["batch", "rel_path"]).drop_duplicates("sha256").set_index("sha256")
    part_columns = [c for c in PART_COLUMNS if c in first.columns]
    items = consensus.merge(
        first[["artifact", "batch", "rel_path", "phash", "camera", "lighting", *part_columns]],
        left_on="sha256",
        right_index=True,
        how="inner",
    )
    items["phash"] = [int(value, 16) for value in items["phash"]]
    engine = engine_for(spec.task)
    candidates = items[["sha256", "label", "phash", "rel_path", *part_columns]].assign(
        rel_path=items["batch"] + "/" + items["rel_path"], stratum=[engine.stratify_key(label) for label in items["label"]]
    )
    try:
        plan = plan_split(
            candidates, requested, config.group_by, engine.train_labels(spec.good_class), where=f"partition {annotations.partition}"
        )
    except GroupingError as exc:
        raise dg.Failure(str(exc)) from exc
    split_spec = plan.spec
    if plan.fallback:
        context.log.warning(plan.fallback)
    context.log.info(_split_line(plan.record()))
    split = plan.split[["sha256", "label", "group_id", "split"]]
    items = items.merge(split, on=["sha256", "label"], how="inner")
    violations = leakage_violations(
        items[["sha256", "label", "phash", "split", "group_id", *part_columns]],
        split_spec.near_duplicate_max_distance,
        split_spec.near_copy_max_neighbours,
        near_copies=split_spec.group_by == "phash",
        by_part=split_spec.group_by == "metadata",
    )
    content = dataset_content_hash(
        items[["sha256", "label", "split"]],
        split_spec,
        extra={
            "classes": ",".join(spec.classes),
            "good_class": spec.good_class or "",
            # a label that is only a class keeps the ids it always had; labels that carry more (masks,
            # boxes, text) put the task and their annotation set's id in the dataset's id
            **({"task": spec.task, "annotations": annotations.id} if engine.labels_carry_more_than_class else {}),
        },
    )
    dataset_id = f"dataset:{content}"
    items = items.assign(dataset_id=dataset_id, partition=annotations.partition, phash=[f"{p:016x}" for p in items["phash"]])
    if lineage.read_table("dataset_items", "dataset_id = ?", [dataset_id]).empty:
        lineage.append_table("dataset_items", items, prefix=annotations.partition)
    counts = {
        split_name: {cls: int(((items["split"] == split_name) & (items["label"] == cls)).sum()) for cls in spec.classes}
        for split_name in SPLITS
    }
    record_lineage(
        context,
        lineage,
        output_id=dataset_id,
        input_ids=[annotations.id, annotations.image_set_id],
        parameters={
            **config.model_dump(),
            "classes": list(spec.classes),
            "good_class": spec.good_class,
            "grouping": plan.record(),
        },
    )
    handle = DatasetVersion(
        id=dataset_id,
        partition=annotations.partition,
        classes=spec.classes,
        good_class=spec.good_class,
        task=spec.task,
        counts=counts,
        split_spec=split_spec.model_dump(),
        annotation_set_id=annotations.id,
        grouping=plan.record(),
    )
    store_handle(lineage, handle, annotations.partition)
    yield dg.Output(
        handle,
        metadata={
            "dataset_id": dataset_id,
            "counts": dg.MetadataValue.json(counts),
            "n_images": len(items),
            "n_groups": int(items["group_id"].nunique()),
            "largest_group": int(items.groupby("group_id").size().max()),
            "group_by": split_spec.group_by,
            "grouping": dg.MetadataValue.json(plan.record()),
        },
    )
    yield blocking_check_result(
        "dataset_version",
        "no_leakage_across_splits",
        passed=not violations,
        description=(
            "no image shared between splits"
            if not violations
            else f"{len(violations)} near-duplicate pairs or parts straddle splits (first: {violations[0]}); "
            "lower near_duplicate_max_distance only if these are truly different parts"
        ),
        metadata={"n_violations": len(violations), "violations": dg.MetadataValue.json(violations[:100])},
    )
