"""Jobs: one per task, over one line/variant partition."""

import dagster as dg

from mfg_assets.partitions import line_variant_partitions

__all__ = ["CLASSIFY_ASSETS", "INSPECTION_ASSETS", "anomaly_job", "classify_job", "deploy_job", "edge_metrics_job", "job_for_task", "retrain_job"]

CLASSIFY_ASSETS = (
    "raw_images",
    "annotations",
    "dataset_version",
    "augmented_set",
    "hyperparameter_search",
    "cross_validation",
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

anomaly_job = dg.define_asset_job(
    "anomaly_job",
    selection=dg.AssetSelection.assets(*CLASSIFY_ASSETS),
    partitions_def=line_variant_partitions,
    description=(
        "Raw images to a registered anomaly detector (fitted on good parts only) for one line/variant: the same "
        "assets as classify_job, each asking the variant's task engine for what differs."
    ),
    tags={"task": "anomaly"},
)

INSPECTION_ASSETS = CLASSIFY_ASSETS  # one graph: every task's job selects these assets


def job_for_task(task: str) -> str:
    """The name of the job that runs the inspection graph for a variant of ``task``."""
    return {"classify": "classify_job", "anomaly": "anomaly_job"}[task]


deploy_job = dg.define_asset_job(
    "deploy_job",
    selection=dg.AssetSelection.assets("deployment"),
    partitions_def=line_variant_partitions,
    description="Sign and publish the line/variant's registered model to its edge devices (canary ring by default).",
    tags={"task": "deploy"},
)

retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=dg.AssetSelection.assets(*CLASSIFY_ASSETS, "deployment"),
    partitions_def=line_variant_partitions,
    description="Retrain on the variant's current data, validate, export, register and deploy to the canary ring.",
    tags={"task": "retrain"},
)

edge_metrics_job = dg.define_asset_job(
    "edge_metrics_job",
    selection=dg.AssetSelection.assets("edge_metrics", "edge_feedback"),
    description="Land the metric windows and the operator-labelled images devices uploaded.",
)
