"""Jobs: one per registered task engine, over one line/variant partition, and the deploy and edge jobs."""

from typing import Any

import dagster as dg

from mfg_assets.partitions import line_variant_partitions
from resources.tasks import engine_for, supported_tasks

__all__ = ["CLASSIFY_ASSETS", "INSPECTION_ASSETS", "TASK_JOBS", "deploy_job", "edge_metrics_job", "job_for_task", "retrain_job"]

INSPECTION_ASSETS = (
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
CLASSIFY_ASSETS = INSPECTION_ASSETS  # the name older code and tests import: one graph for every task


def job_for_task(task: str) -> str:
    """The name of the job that runs the inspection graph for a variant of ``task``."""
    return f"{task}_job"


def _task_job(task: str) -> Any:
    """The inspection graph for one task's variants: the same assets for every task, each asking
    the variant's engine (``resources.tasks``) for what differs; the tag says which task it is for."""
    engine = engine_for(task)
    return dg.define_asset_job(
        job_for_task(task),
        selection=dg.AssetSelection.assets(*INSPECTION_ASSETS),
        partitions_def=line_variant_partitions,
        description=(
            f"Raw images to a registered {task} model for one line/variant (labels: {engine.labels}; the device "
            f"gets {engine.device_output}): the same assets for every task, each asking the variant's task engine "
            "for what differs."
        ),
        tags={"task": task},
    )


TASK_JOBS: dict[str, Any] = {task: _task_job(task) for task in supported_tasks()}
"""One job per registered engine, named ``<task>_job`` (the names the UI, sensors and runs have always used)."""


deploy_job = dg.define_asset_job(
    "deploy_job",
    selection=dg.AssetSelection.assets("deployment"),
    partitions_def=line_variant_partitions,
    description="Sign and publish the line/variant's registered model to its edge devices (canary ring by default).",
    tags={"task": "deploy"},
)

retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=dg.AssetSelection.assets(*INSPECTION_ASSETS, "deployment"),
    partitions_def=line_variant_partitions,
    description="Retrain on the variant's current data, validate, export, register and deploy to the canary ring.",
    tags={"task": "retrain"},
)

edge_metrics_job = dg.define_asset_job(
    "edge_metrics_job",
    selection=dg.AssetSelection.assets("edge_metrics", "edge_feedback"),
    description="Land the metric windows and the operator-labelled images devices uploaded.",
)
