"""``deployment``: a registered model published to a line's edge devices, canary ring first.

The asset builds the deployment manifest (model version, files with sha256, input spec, threshold,
dataset version), signs it with the platform's ed25519 key and publishes it with the package into
the sync server's state; devices pull it, verify it and activate it. It also records the baseline
the edge-health sensor compares the line against: the defect-score histogram on the test split and
the brightness histogram of the training images.
"""

import json
from datetime import UTC, datetime
from typing import TypeVar

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from mfg_assets.common import inspection_asset, record_lineage
from mfg_assets.datasets import load_split_images
from mfg_assets.handle_store import load_handle
from mfg_assets.handles import DatasetVersion, DeploymentRecord, ExportedModel, RegisteredModel, ValidationReport
from mfg_assets.task_data import engine_failures
from resources.artifact_store import ArtifactStore
from resources.edge import EdgeSync
from resources.engines import Engines
from resources.lineage import LineageStore
from resources.data.variants import split_partition_key

__all__ = [
    "DeploymentConfig",
    "baseline_histograms",
    "deployment",
    "int8_shortfall",
    "promotion_config",
    "promotion_refusal",
    "registered_inputs",
]

FORMATS = ("onnx", "openvino", "onnx_int8")

_Paired = TypeVar("_Paired", ExportedModel, ValidationReport, DatasetVersion)


class DeploymentConfig(dg.Config):
    ring: str = Field("canary", description="canary (only the line's canary devices) or fleet (every device)")
    model_format: str = Field("onnx", description=f"which exported file devices run: one of {', '.join(FORMATS)}")
    canary_devices: list[str] = Field(
        default_factory=list, description="devices of the canary ring; empty: the line's devices flagged canary"
    )
    accept_int8_shortfall: bool = Field(
        False,
        description=(
            "deploy onnx_int8 although no INT8 model decided like FP32 within the export's tolerance on validation "
            "images (the decision is recorded in lineage)"
        ),
    )
    promote_canary: str | None = Field(
        None,
        description=(
            "deployment id of the canary this fleet deployment promotes (the edge sensor sets it): refused unless "
            "that canary is still live on the line with the variant's registered model, so the fleet gets what the "
            "canary proved and never a model registered since, nor one rolled back meanwhile"
        ),
    )


def int8_shortfall(model_format: str, int8: dict | None, version: str, accepted: bool) -> str | None:
    """Why ``onnx_int8`` of ``version`` must not go out unasked, or None when it may.

    The export keeps the closest INT8 model when none meets its tolerance (so the report can show what
    INT8 costs); such a model decides differently from the validated FP32 one on more validation images
    than the plant allowed, or loses more test accuracy than the export allows (``int8_max_accuracy_drop``,
    the figure its ``int8_keeps_accuracy`` check warns on), so deploying it is a person's explicit decision,
    never a default. Returns the refusal, or None (a shortfall that was accepted is logged by the caller)."""
    if model_format != "onnx_int8" or not int8 or accepted:
        return None
    reasons = []
    if not int8.get("within_tolerance", True):
        reasons.append(
            f"decides differently from FP32 on {100 * int8['holdout_disagreement']:.2f} % of "
            f"{int8.get('n_holdout', '?')} {int8.get('holdout', 'validation')} images, above the export's "
            f"{100 * int8['max_disagreement']:.2f} % tolerance"
        )
    drop, allowed = int8.get("test_accuracy_drop"), int8.get("max_test_accuracy_drop")
    if drop is not None and allowed is not None and drop > allowed + 1e-12:
        reasons.append(
            f"loses {100 * drop:.2f} pt of test accuracy against FP32, more than the export's {100 * allowed:.2f} pt"
        )
    if not reasons:
        return None
    return (
        f"{version}'s INT8 model {' and '.join(reasons)}; deploy --format onnx or openvino, or accept the "
        "shortfall explicitly (mfgv deploy --accept-int8-shortfall, or accept_int8_shortfall in the deployment config)"
    )


def promotion_refusal(canary_id: str, live_canary_manifest: str | None, version: str, ring: str) -> str | None:
    """Why a promotion of canary ``canary_id`` must not publish ``version`` to the fleet, or None.

    ``live_canary_manifest`` is the manifest JSON live on the line's canary ring now (None: no canary).
    The sensor decided on that canary's metrics; by the time the run starts the canary may have been
    rolled back or replaced, or another version registered, and none of those was proven on the line."""
    from edge_sync.contract import DeploymentManifest

    if ring != "fleet":
        return f"promote_canary is set ({canary_id}) with ring {ring}; a promotion deploys to ring fleet"
    live = DeploymentManifest.model_validate_json(live_canary_manifest) if live_canary_manifest else None
    if live is None or live.deployment_id != canary_id:
        now = "no canary" if live is None else f"canary {live.deployment_id}"
        return (
            f"canary {canary_id} is no longer live on its line (it now has {now}): it was rolled back or replaced "
            "since the promotion was decided; nothing promoted. Deploy to the canary ring again (mfgv deploy)"
        )
    if live.model_version != version:
        return (
            f"canary {canary_id} ran {live.model_version} but the variant's registered model is now {version}, which "
            f"no canary has run; deploy {version} to the canary ring first (mfgv deploy --ring canary)"
        )
    return None


def promotion_config(lineage: LineageStore, canary_deployment_id: str) -> tuple[str, DeploymentConfig]:
    """The line/variant partition of a canary and the fleet deployment that promotes it: the same model
    version in the same format.

    The canary proved a model file on the line, so the fleet gets that file (an INT8 canary stays INT8,
    and a shortfall a person accepted for it stays accepted, recorded again in the fleet's lineage), and
    the deployment refuses unless that canary is still live with the variant's registered model (a version
    registered since, or a rollback meanwhile, was never proven on the line)."""
    rows = lineage.read_table("deployments", "deployment_id = ?", [canary_deployment_id])
    if rows.empty:
        raise dg.Failure(
            f"canary {canary_deployment_id} has no row in the deployments table under {lineage.home_path()} (published "
            "by hand, or another MFG_HOME): nothing to promote from; deploy the variant with mfgv deploy --ring fleet"
        )
    row = rows.iloc[-1]
    accepted = row.get("int8_shortfall_accepted")  # absent (or NaN) in rows written before it was recorded
    return str(row["partition"]), DeploymentConfig(
        ring="fleet",
        model_format=str(row["model_format"]),
        accept_int8_shortfall=False if pd.isna(accepted) else bool(accepted),
        promote_canary=canary_deployment_id,
    )


def registered_inputs(
    lineage: LineageStore,
    partition: str,
    registered: RegisteredModel,
    exported: ExportedModel,
    report: ValidationReport,
    dataset: DatasetVersion,
) -> tuple[ExportedModel, ValidationReport, DatasetVersion]:
    """The export, validation report and dataset version ``registered`` was registered with.

    Those are the latest materialisations unless a later run of the variant was refused by its release
    check: it leaves a newer report and dataset (and maybe export) behind and registers nothing, and
    publishing the registered model with them would pair it with another model's threshold, classes and
    baselines. Then they are read by id from the handles every run keeps
    (:mod:`mfg_assets.handle_store`); one that was not kept cannot be paired and is refused."""
    missing: list[str] = []

    def own(latest: _Paired, handle_id: str) -> _Paired:
        if latest.id == handle_id:
            return latest
        found = load_handle(lineage, type(latest), handle_id, partition)
        if found is None:
            missing.append(handle_id)
        return found or latest

    paired = (own(exported, registered.export_id), own(report, registered.report_id), own(dataset, registered.dataset_id))
    if missing:
        raise dg.Failure(
            f"{registered.version} was registered with {', '.join(missing)}, which {partition} no longer has as its "
            f"latest (a later run's model was not registered) and which this MFG_HOME did not keep by id (made before "
            f"handles were kept, by another MFG_HOME, or by a code version whose handles differ); re-run the variant's "
            f"job until its model registers, or put a published version back on the fleet with "
            f"mfgv rollback --line LINE --to VERSION"
        )
    return paired


def baseline_histograms(report: dict, train_images: np.ndarray) -> tuple[list[int], list[int]]:
    """Test-split defect-score histogram and training brightness histogram, in the device's bins.

    Both go through the contract's binning (``edge_sync.contract.windows``), and the brightness is
    that of each training image's model input, as the device measures its camera images, so the
    health sensor's PSI compares like with like."""
    from edge_sync.contract import brightness_histogram, input_brightness, score_histogram
    from resources.tasks import engine_for

    # The task's engine puts the report's test scores in the device's units (none without a good
    # class: the device then scores 1 - max probability and there is no baseline to compare).
    scores = report["test"].get("defect_scores") or []
    if report.get("task"):
        scores = engine_for(report["task"]).device_scores(report)
    return score_histogram(scores), brightness_histogram(input_brightness(image) for image in train_images)


@inspection_asset("deployment", kinds={"edge"})
def deployment(
    context: dg.AssetExecutionContext,
    config: DeploymentConfig,
    registered_model: RegisteredModel,
    exported_model: ExportedModel,
    validation_report: ValidationReport,
    dataset_version: DatasetVersion,
    edge: EdgeSync,
    engines: Engines,
    artifact_store: ArtifactStore,
    lineage: LineageStore,
) -> dg.Output[DeploymentRecord]:
    """Signs and publishes the registered model for the line's devices (canary ring by default)."""
    from edge_sync.contract import DeploymentManifest, InputSpec, ModelFile, Ring, Task

    if config.ring not in ("canary", "fleet"):
        raise dg.Failure(f"ring {config.ring!r} is unknown; choose canary or fleet")
    latest = (exported_model.id, validation_report.id, dataset_version.id)
    exported_model, validation_report, dataset_version = registered_inputs(
        lineage, context.partition_key, registered_model, exported_model, validation_report, dataset_version
    )
    if (exported_model.id, validation_report.id, dataset_version.id) != latest:
        context.log.info(
            f"{registered_model.version} goes out with the report it was registered with, {validation_report.id} on "
            f"{dataset_version.id}, not the variant's latest {latest[1]} on {latest[2]} (a later run whose model was "
            "not registered)"
        )
    if config.model_format not in exported_model.files:
        raise dg.Failure(
            f"{registered_model.version} has no {config.model_format} export; choose one of {', '.join(exported_model.files)}"
        )
    shortfall = int8_shortfall(config.model_format, exported_model.int8, registered_model.version, accepted=False)
    if shortfall and not config.accept_int8_shortfall:
        raise dg.Failure(shortfall)
    # Whether a shortfall was deployed by a person's decision (not merely whether the flag was set)
    shortfall_accepted = shortfall is not None
    if shortfall_accepted:
        context.log.warning(f"deploying {registered_model.version}'s INT8 model outside its tolerance: accepted by config")
    line, variant = split_partition_key(context.partition_key)
    state = edge.server_state()
    if config.promote_canary:
        canary = state.deployments(line).get(Ring.CANARY.value)
        refusal = promotion_refusal(
            config.promote_canary, canary.manifest_json if canary else None, registered_model.version, config.ring
        )
        if refusal:
            raise dg.Failure(refusal)
    devices = list(config.canary_devices)
    if config.ring == "canary" and not devices:
        devices = state.canary_devices(line)
        if not devices:
            raise dg.Failure(
                f"line {line} has no canary device: flag one with `mfgv edge-device add DEVICE --line {line} --canary`, "
                "or deploy with ring=fleet"
            )
    with engine_failures():
        device_fields = engines.engine(dataset_version.task).device_fields(validation_report.threshold)
    package = artifact_store.path(exported_model.package)
    now = datetime.now(UTC)
    # The run id's head keeps two deployments of one version and ring in the same second apart (the id
    # keys the deployments table, promotions and the devices' history).
    deployment_id = f"{registered_model.version}-{config.ring}-{now:%Y%m%dT%H%M%S}-{context.run_id[:8]}"
    manifest = DeploymentManifest(
        deployment_id=deployment_id,
        line=line,
        model_version=registered_model.version,
        task=Task(dataset_version.task),
        model_format=config.model_format,
        model_path=exported_model.files[config.model_format],
        files=tuple(
            ModelFile(path=path, sha256=digest, n_bytes=(package / path).stat().st_size)
            for path, digest in sorted(exported_model.file_sha256.items())
        ),
        input=InputSpec(height=exported_model.input_size, width=exported_model.input_size, resize=exported_model.resize),
        classes=dataset_version.classes,
        good_class=dataset_version.good_class,
        **device_fields,
        dataset_version=dataset_version.id,
        ring=Ring(config.ring),
        devices=tuple(devices) if config.ring == "canary" else (),
        created_at=now,
    )
    signed = edge.publish(manifest, package)
    report = json.loads(artifact_store.read_bytes(validation_report.json_artifact))
    train_images, _, _ = load_split_images(
        lineage, artifact_store, dataset_version, "train", exported_model.input_size, exported_model.resize
    )
    score_hist, bright_hist = baseline_histograms(report, train_images)
    record = DeploymentRecord(
        deployment_id=deployment_id,
        line=line,
        variant=variant,
        model_version=registered_model.version,
        ring=config.ring,
        model_format=config.model_format,
        devices=tuple(devices) if config.ring == "canary" else (),
        deployed_at=now.isoformat(),
    )
    lineage.append_table(
        "deployments",
        [
            {
                **record.model_dump(),
                "devices": json.dumps(list(record.devices)),
                "partition": context.partition_key,
                "baseline_scores": json.dumps(score_hist),
                "baseline_brightness": json.dumps(bright_hist),
                "int8_shortfall_accepted": shortfall_accepted,
                "signature_key_id": signed.key_id,
                "run_id": context.run_id,
            }
        ],
        prefix=deployment_id,
    )
    record_lineage(
        context,
        lineage,
        output_id=f"deployment:{deployment_id}",
        input_ids=[registered_model.version, exported_model.id, validation_report.id, dataset_version.id],
        parameters={**config.model_dump(), "int8_shortfall_accepted": shortfall_accepted},
        input_hashes={exported_model.id: exported_model.package.sha256},
    )
    context.log.info(f"published {registered_model.version} to line {line} ({config.ring}: {devices or 'all devices'})")
    return dg.Output(
        record,
        metadata={
            "deployment_id": deployment_id,
            "model_version": registered_model.version,
            "ring": config.ring,
            "devices": dg.MetadataValue.json(list(record.devices)),
            "model_format": config.model_format,
        },
    )
