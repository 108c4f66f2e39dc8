"""The composition root: the only place the Dagster ``Definitions`` are built.

Loaded by ``dagster dev`` (workspace.yaml / [tool.dagster]) and by ``mfgv onboard``, so the UI and
the CLI run the very same assets, checks and resources.
"""

import warnings

import dagster as dg

from mfg_assets.annotations import annotations
from mfg_assets.augment import augmented_set
from mfg_assets.cross_validation import cross_validation
from mfg_assets.datasets import dataset_version
from mfg_assets.deployment import deployment
from mfg_assets.export import exported_model
from mfg_assets.ingest import raw_images
from mfg_assets.edge_metrics import edge_feedback, edge_metrics
from mfg_assets.jobs import TASK_JOBS, deploy_job, edge_metrics_job, retrain_job
from mfg_assets.progress import PROGRESS_LOGGER, progress_logger
from mfg_assets.registry import registered_model
from mfg_assets.rollback import rollback_job
from mfg_assets.search import hyperparameter_search
from mfg_assets.training import trained_model
from mfg_assets.validation import validation_report
from resources.artifact_store import ArtifactStore
from resources.edge import EdgePolicy, EdgeSync
from resources.engines import Engines
from resources.landing import LandingZone
from resources.lineage import LineageStore
from resources.registry import ModelRegistry
from resources.settings import apply_offline_switches
from sensors.edge import edge_housekeeping_schedule, edge_loop_sensor
from sensors.landing import landing_zone_sensor

apply_offline_switches()
# Dagster re-creates the edge loop sensor when it resolves the definitions (a job or the UI asks), and
# each time warns that a multi-job sensor's `owners` parameter is beta: nothing a plant user can act on
# (sensors/edge.py says the same at decoration). Only that warning is filtered.
warnings.filterwarnings(
    "ignore", message=r"Parameter `owners` of initializer `SensorDefinition.__init__`", category=dg.BetaWarning
)

ABOUT = """**mfg-vision**: train, validate, export, register and deploy the visual-inspection models of a plant's lines.

- **inspection** group: one partition per line and product variant (`line1.bracket-a`). A landing batch becomes
  `raw_images` (bad files quarantined with their reason), `annotations` (blocking label checks), a
  `dataset_version` (each part's images in one split; the grouping is in its metadata), the training recipe and
  model, the `validation_report` (false-reject and escape rates at a calibrated threshold, with 95 % intervals),
  the `exported_model` (ONNX, OpenVINO, INT8, parity-checked) and the `registered_model`; `deployment` publishes it
  to the line's devices.
- **edge** group: `edge_metrics` (the devices' metric windows) and `edge_feedback` (images operators labelled on
  the line); the edge loop sensor turns them into retraining or promotion.
- Jobs: `classify_job` and `anomaly_job` run the graph for one task; `mfgv onboard` starts them from the command
  line, the landing sensor when a new batch lands. Every materialization records its inputs' hashes, parameters
  and code version (`mfgv lineage VERSION`).
"""

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
    jobs=[*TASK_JOBS.values(), deploy_job, retrain_job, edge_metrics_job, rollback_job],
    sensors=[landing_zone_sensor, edge_loop_sensor],
    schedules=[edge_housekeeping_schedule],
    # the UI's runs log to Dagster's console as always; mfgv's runs choose the progress line instead
    loggers={"console": dg.colored_console_logger, PROGRESS_LOGGER: progress_logger},
    metadata={"about": dg.MetadataValue.md(ABOUT)},
    resources={
        "artifact_store": ArtifactStore(),
        "lineage": LineageStore(),
        "registry": ModelRegistry(),
        "landing": LandingZone(),
        "engines": Engines(),
        "edge": EdgeSync(),
        "edge_policy": EdgePolicy(),
    },
)
