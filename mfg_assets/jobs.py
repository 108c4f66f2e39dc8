"""Jobs: one per task, over one line/variant partition."""

import dagster as dg

from mfg_assets.partitions import line_variant_partitions

__all__ = ["classify_job", "deploy_job", "CLASSIFY_ASSETS"]

CLASSIFY_ASSETS = (
    "raw_images",
    "annotations",
    "dataset_version",
    "augmented_set",
    "trained_model",
    "validation_report",
    "exported_model",
    "registered_model",
)

classify_job = dg.define_asset_job(
    "classify_job",
    selection=dg.AssetSelection.assets(*CLASSIFY_ASSETS),
    partitions_def=line_variant_partitions,
    description="Raw images to a registered classification model for one line/variant.",
    tags={"task": "classify"},
)

deploy_job = dg.define_asset_job(
    "deploy_job",
    selection=dg.AssetSelection.assets("deployment"),
    partitions_def=line_variant_partitions,
    description="Sign and publish the line/variant's registered model to its edge devices (canary ring by default).",
    tags={"task": "deploy"},
)
