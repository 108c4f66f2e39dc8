"""The composition root: the only place the Dagster ``Definitions`` are built.

Loaded by ``dagster dev`` (workspace.yaml / [tool.dagster]) and by ``mfgv onboard``, so the UI and
the CLI run the very same assets, checks and resources.
"""

import dagster as dg

from mfg_assets.annotations import annotations
from mfg_assets.augment import augmented_set
from mfg_assets.cross_validation import cross_validation
from mfg_assets.datasets import dataset_version
from mfg_assets.deployment import deployment
from mfg_assets.export import exported_model
from mfg_assets.ingest import raw_images
from mfg_assets.edge_metrics import edge_feedback, edge_metrics
from mfg_assets.jobs import anomaly_job, classify_job, deploy_job, edge_metrics_job, retrain_job
from mfg_assets.registry import registered_model
from mfg_assets.rollback import rollback_job
from mfg_assets.search import hyperparameter_search
from mfg_assets.training import trained_model
from mfg_assets.validation import validation_report
from resources.artifact_store import ArtifactStore
from resources.edge import EdgePolicy, EdgeSync
from resources.landing import LandingZone
from resources.lineage import LineageStore
from resources.registry import ModelRegistry
from resources.settings import apply_offline_switches
from resources.trainers import AnomalyTrainer, ClassificationTrainer
from sensors.edge import edge_housekeeping_schedule, edge_loop_sensor
from sensors.landing import landing_zone_sensor

apply_offline_switches()

defs = dg.Definitions(
    assets=[
        raw_images,
        annotations,
        dataset_version,
        augmented_set,
        hyperparameter_search,
        cross_validation,
        trained_model,
        validation_report,
        exported_model,
        registered_model,
        deployment,
        edge_metrics,
        edge_feedback,
    ],
    jobs=[classify_job, anomaly_job, deploy_job, retrain_job, edge_metrics_job, rollback_job],
    sensors=[landing_zone_sensor, edge_loop_sensor],
    schedules=[edge_housekeeping_schedule],
    resources={
        "artifact_store": ArtifactStore(),
        "lineage": LineageStore(),
        "registry": ModelRegistry(),
        "landing": LandingZone(),
        "trainer": ClassificationTrainer(),
        "anomaly_trainer": AnomalyTrainer(),
        "edge": EdgeSync(),
        "edge_policy": EdgePolicy(),
    },
)
