"""``annotations``: labels for every ingested image, imported from the batch's own label files.

Supported layouts per batch: folder-per-class, ``labels.csv`` (``path,label[,reviewer]``), a COCO
``annotations.json`` with one category per image, and the MVTec layout with defect masks. Each reviewer's label is kept as its own row, so reviewer
agreement can be measured; the blocking checks below stop training on a bad label set.
"""

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg
import pandas as pd
from pydantic import Field

from mfg_assets.common import blocking_check_result, inspection_asset, hash_rows, record_lineage, variant_for
from mfg_assets.handles import AnnotationSet, ImageSet
from mfg_assets.ingest import load_image_table
from mfg_assets.masks import split_off_masks
from mfg_assets.saved_options import config_for_run
from resources.data.mvtec_labels import MVTEC_FORMAT
from resources.artifact_store import ArtifactStore
from resources.engine_io import BatchFiles
from resources.errors import MfgVisionError
from resources.lineage import LineageStore

__all__ = ["AnnotationConfig", "CHECK_DESCRIPTIONS", "annotations", "load_label_masks", "load_labels", "way_out"]

# Blocking: a failing check fails the step, so the dataset and the model are not built in that run.
CHECK_DESCRIPTIONS = {
    "every_image_labelled": "every ingested image has a label, and every label names an ingested image",
    "labels_in_taxonomy": "every label is a class of the variant's taxonomy (great-expectations)",
    "no_conflicting_duplicates": "no image content appears twice with different labels",
    "min_images_per_class": (
        "every class has at least the minimum number of images (for a task that learns from good parts only, its "
        "good class; defect types may be rare)"
    ),
    "reviewer_agreement": "Cohen's kappa between every pair of reviewers is over the threshold",
}


def _batch_labels(batch_row: pd.Series, rel_paths: list[str], label_format: str, store: ArtifactStore) -> pd.DataFrame:
    from resources.data.labels import LabelImportError, labels_from_coco, labels_from_csv, labels_from_folders
    from resources.data.mvtec_labels import MVTEC_FORMAT, labels_from_mvtec

    if label_format == MVTEC_FORMAT and "labels.csv" not in json.loads(batch_row["sidecars"]):
        return labels_from_mvtec(rel_paths, require_good=False).labels  # good images: min_images_per_class
    if label_format == MVTEC_FORMAT:  # operator feedback in the MVTec layout: labels.csv names the reviewers
        return labels_from_csv(store.path(json.loads(batch_row["sidecars"])["labels.csv"]["relpath"]))
    sidecars = json.loads(batch_row["sidecars"])
    has_csv, has_coco = "labels.csv" in sidecars, "annotations.json" in sidecars
    chosen = label_format
    if label_format == "auto":
        if has_csv and has_coco:
            raise LabelImportError(
                f"batch {batch_row['batch']} has both labels.csv and annotations.json; keep one of them "
                "or set the variant's label_format"
            )
        chosen = "csv" if has_csv else "coco" if has_coco else "folders"
    if chosen == "folders":
        return labels_from_folders(rel_paths)
    sidecar = "labels.csv" if chosen == "csv" else "annotations.json"
    if sidecar not in sidecars:
        raise LabelImportError(
            f"batch {batch_row['batch']}: the variant's label format is {chosen} but the batch has no "
            f"{sidecar}; deliver it with the batch"
        )
    path = store.path(sidecars[sidecar]["relpath"])
    try:
        return labels_from_csv(path) if chosen == "csv" else labels_from_coco(path)
    except LabelImportError as exc:
        raise LabelImportError(f"batch {batch_row['batch']}, {sidecar}: {exc}") from exc


def way_out(partition: str, batch: str | None = None, unknown_class: str | None = None) -> str:
    """The commands that get a variant past a blocking label check, as the user would type them."""
    from resources.data.variants import split_partition_key

    line, variant = split_partition_key(partition)
    where = f"--line {line} --variant {variant}"
    named = batch or "BATCH"
    advice = (
        f"fix the data and replace the batch (`mfgv batch replace {where} --batch {named} --from FIXED_DIR`), "
        f"or withdraw it (`mfgv batch withdraw {where} --batch {named} --reason WHY`)"
    )
    if unknown_class is not None:
        advice += f", or grow the taxonomy (`mfgv variant add-class {where} --class {unknown_class}`)"
    return advice


def _failing_batches(failures: list[dict]) -> list[str]:
    return sorted({str(f["batch"]) for f in failures if f.get("batch") not in (None, "")})


def load_labels(lineage: LineageStore, annotation_set_id: str) -> pd.DataFrame:
    return lineage.read_table("labels", "annotation_set_id = ?", [annotation_set_id])


def _batch_files(batch_row: pd.Series, batch_images: pd.DataFrame, store: ArtifactStore) -> BatchFiles:
    """The batch's images and label files by their path in the batch, for a task's own label reader."""
    sidecars = json.loads(batch_row["sidecars"])
    return BatchFiles(
        batch=str(batch_row["batch"]),
        images={row.rel_path: store.path(row.artifact) for row in batch_images.drop_duplicates("rel_path").itertuples()},
        sidecars={name: store.path(entry["relpath"]) for name, entry in sidecars.items()},
        sizes={row.rel_path: (int(row.width), int(row.height)) for row in batch_images.drop_duplicates("rel_path").itertuples()},
    )


def _with_image_hashes(table: pd.DataFrame, by_path: pd.Series) -> pd.DataFrame:
    """A geometry table keyed by (batch, rel_path), with each row's image content hash."""
    keys = list(zip(table["batch"], table["rel_path"], strict=True))
    return table.assign(image_sha256=[by_path.get(key, "") for key in keys])


def _quarantine_labels(
    context: dg.AssetExecutionContext,
    lineage: LineageStore,
    partition: str,
    batch: str,
    items: list[dict[str, str]],
) -> None:
    """Images a task's label reader set aside: each logged and kept in the quarantine table with its
    reason (the rest of the batch goes on). Replaced per batch, so a re-run does not count twice."""
    now = datetime.now(UTC).isoformat()
    rows = []
    for item in items:
        context.log.warning(f"quarantined {batch}/{item['rel_path']}: {item['detail']}")
        rows.append(
            {
                "partition": partition,
                "batch": batch,
                "rel_path": item["rel_path"],
                "reason": item["reason"],
                "detail": item["detail"],
                "quarantined_to": item.get("stored", ""),
                "run_id": context.run_id,
                "quarantined_at": now,
            }
        )
    lineage.warehouse().replace_keyed("quarantine", rows, prefix=batch, key=f"{partition}/{batch}/labels")


def load_label_masks(lineage: LineageStore, annotation_set_id: str) -> pd.DataFrame:
    """The defect masks of an annotation set (``--format mvtec``): one row per image that has one."""
    return lineage.read_table("label_masks", "annotation_set_id = ?", [annotation_set_id])


class AnnotationConfig(dg.Config):
    min_images_per_class: int = Field(5, ge=1, le=100_000, description="fewest images a class may have")
    min_kappa: float = Field(
        0.6, ge=-1.0, le=1.0, description="lowest Cohen's kappa allowed between two reviewers"
    )


@inspection_asset("annotations", kinds={"parquet"}, checks=CHECK_DESCRIPTIONS)
def annotations(
    context: dg.AssetExecutionContext,
    config: AnnotationConfig,
    raw_images: ImageSet,
    artifact_store: ArtifactStore,
    lineage: LineageStore,
) -> Iterator[dg.Output[AnnotationSet] | dg.AssetCheckResult]:
    """Every reviewer's label for every ingested image of the line/variant, with blocking checks."""
    config = config_for_run(context, config, lineage.home_path())
    from resources.data.batches import current_batches
    from resources.data.label_quality import TaskCounts, run_all
    from resources.tasks import engine_for

    spec = variant_for(context, lineage)
    images = load_image_table(lineage, raw_images.partition)
    batches = current_batches(lineage, raw_images.partition)
    masks = pd.DataFrame()
    if spec.label_format == MVTEC_FORMAT:  # masks are annotations of images, not images to label
        images, masks = split_off_masks(context, images, batches, artifact_store, lineage, raw_images.partition)
    engine = engine_for(spec.task)
    frames = []
    geometry: dict[str, list[pd.DataFrame]] = {}
    set_aside: set[tuple[str, str]] = set()
    summaries: dict[str, dict] = {}
    for _, batch_row in batches.iterrows():
        batch_images = images[images["batch"] == batch_row["batch"]]
        try:
            own = engine.batch_labels(
                _batch_files(batch_row, batch_images, artifact_store), spec.label_format, spec.good_class
            )
            if own is None:
                labels = _batch_labels(batch_row, sorted(batch_images["rel_path"]), spec.label_format, artifact_store)
            else:
                labels = own.labels
                for table, rows in own.tables.items():
                    geometry.setdefault(table, []).append(rows.assign(batch=batch_row["batch"]))
                _quarantine_labels(context, lineage, raw_images.partition, batch_row["batch"], own.quarantined)
                set_aside |= {(batch_row["batch"], item["rel_path"]) for item in own.quarantined}
                if own.summary:
                    summaries[str(batch_row["batch"])] = own.summary
                    context.log.info(f"batch {batch_row['batch']} labels: {own.summary}")
        except MfgVisionError as exc:
            raise dg.Failure(f"{exc}; {way_out(raw_images.partition, batch_row['batch'])}") from exc
        labels = labels.assign(batch=batch_row["batch"])
        frames.append(labels)
    labels = pd.concat(frames, ignore_index=True)
    if set_aside:  # images the task's label reader quarantined are no longer images to label
        keys = pd.Series(list(zip(images["batch"], images["rel_path"], strict=True)), index=images.index)
        images = images[~keys.isin(set_aside)].reset_index(drop=True)
    by_path = images.drop_duplicates(["batch", "rel_path"]).set_index(["batch", "rel_path"])["sha256"]
    keys = list(zip(labels["batch"], labels["rel_path"], strict=True))
    labels["sha256"] = [by_path.get(key, "") for key in keys]
    tables = {name: _with_image_hashes(pd.concat(parts, ignore_index=True), by_path) for name, parts in geometry.items()}
    content = hash_rows(
        [
            *labels[["sha256", "batch", "rel_path", "label", "reviewer"]].itertuples(index=False),
            *([] if masks.empty else masks[["image_sha256", "mask_sha256"]].itertuples(index=False)),
            *(
                (name, *row)
                for name, table in sorted(tables.items())
                for row in table.drop(columns=["batch"]).astype(str).itertuples(index=False)
            ),
        ]
    )
    annotation_set_id = f"labels:{content}"
    labels["annotation_set_id"] = annotation_set_id
    labels["partition"] = raw_images.partition
    if lineage.read_table("labels", "annotation_set_id = ?", [annotation_set_id]).empty:
        lineage.append_table("labels", labels, prefix=raw_images.partition)
        if not masks.empty:
            lineage.append_table(
                "label_masks", masks.assign(annotation_set_id=annotation_set_id), prefix=raw_images.partition
            )
        for name, table in tables.items():
            lineage.append_table(
                name, table.assign(annotation_set_id=annotation_set_id, partition=raw_images.partition),
                prefix=raw_images.partition,
            )
    record_lineage(
        context,
        lineage,
        output_id=annotation_set_id,
        input_ids=[raw_images.id],
        parameters={"label_format": spec.label_format, "taxonomy": list(spec.classes), **config.model_dump()},
    )
    matched = labels[labels["sha256"] != ""]
    handle = AnnotationSet(
        id=annotation_set_id,
        partition=raw_images.partition,
        image_set_id=raw_images.id,
        n_labels=len(labels),
        reviewers=tuple(sorted(set(labels["reviewer"]))),
        classes_seen=tuple(sorted(set(matched["label"]))),
    )
    counts = matched.drop_duplicates("sha256").groupby("label").size().to_dict()
    yield dg.Output(
        handle,
        metadata={
            "annotation_set_id": annotation_set_id,
            "n_labels": len(labels),
            "reviewers": dg.MetadataValue.json(list(handle.reviewers)),
            "images_per_class": dg.MetadataValue.json({str(k): int(v) for k, v in counts.items()}),
            "n_masks": len(masks),
            **{f"n_{name}": len(table) for name, table in tables.items()},
            **({"label_review": dg.MetadataValue.json(summaries)} if summaries else {}),
        },
    )
    matched_labels = labels[labels["sha256"] != ""]
    own_counts = engine.class_image_counts(matched_labels, tables, spec.good_class)
    outcomes = run_all(
        images,
        labels,
        spec.classes,
        min_images_per_class=config.min_images_per_class,
        min_kappa=config.min_kappa,
        good_only=spec.good_class if engine.train_labels(spec.good_class) is not None else None,
        task_counts=None if own_counts is None else TaskCounts(*own_counts),
    )
    for name in CHECK_DESCRIPTIONS:
        outcome = outcomes[name]
        description = outcome.summary
        if not outcome.passed:
            batches = _failing_batches(outcome.failures)
            unknown = next((f["label"] for f in outcome.failures if f.get("problem") == "label not in taxonomy"), None)
            description += (
                f" — in batch(es) {', '.join(batches[:5])}; to go on, "
                f"{way_out(raw_images.partition, batches[0] if len(batches) == 1 else None, unknown)}"
                if batches
                else f" — to go on, {way_out(raw_images.partition, None, unknown)}"
            )
            context.log.error(f"{raw_images.partition}: {name} failed: {description}")
        yield blocking_check_result(
            "annotations",
            name,
            passed=outcome.passed,
            description=description,
            metadata={
                **dict(outcome.metrics),
                "failures": dg.MetadataValue.json(outcome.failures[:200]),
                "n_failures": len(outcome.failures),
            },
        )


