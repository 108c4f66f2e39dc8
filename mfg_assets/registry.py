"""``registered_model``: a version in the model registry with its provenance, status ``candidate``.

Only a model whose validation report met the release criteria and whose exports passed the parity
check gets here (both checks are blocking). Approval and deployment are later, audited steps.
"""

import dagster as dg

from mfg_assets.common import inspection_asset, record_lineage
from mfg_assets.handles import DatasetVersion, ExportedModel, RegisteredModel, TrainedModel, ValidationReport
from resources.artifact_store import ArtifactStore
from resources.storage.code_version import code_version
from resources.lineage import LineageStore
from resources.registry import ModelRegistry
from resources.data.variants import split_partition_key

__all__ = ["registered_model"]


@inspection_asset("registered_model", kinds={"duckdb"})
def registered_model(
    context: dg.AssetExecutionContext,
    trained_model: TrainedModel,
    validation_report: ValidationReport,
    exported_model: ExportedModel,
    dataset_version: DatasetVersion,
    registry: ModelRegistry,
    artifact_store: ArtifactStore,
    lineage: LineageStore,
) -> dg.Output[RegisteredModel]:
    """The model version, registered as a candidate with sha256, dataset version, metrics and parameters."""
    if not (validation_report.release_passed and exported_model.parity_passed):
        raise dg.Failure(
            f"{trained_model.id} is not registrable: release criteria passed={validation_report.release_passed} "
            f"({'; '.join(validation_report.release_failures) or 'ok'}), parity passed={exported_model.parity_passed}"
        )
    line, variant = split_partition_key(context.partition_key)
    version = registry.register(
        line=line,
        variant=variant,
        task=dataset_version.task,
        checkpoint_sha256=trained_model.checkpoint.sha256,
        dataset_version=dataset_version.id,
        metrics={
            "test_accuracy": validation_report.accuracy,
            "test_false_reject_rate": validation_report.false_reject_rate,
            "test_escape_rate": validation_report.escape_rate,
            "threshold": validation_report.threshold,
            "parity_max_abs_diff": exported_model.parity["max_abs_diff"],
            "int8_test_accuracy": exported_model.int8_test_accuracy,
            # how many leading convolutions the INT8 model keeps in float (None: no INT8 model)
            "int8_float_convs": (exported_model.int8 or {}).get("float_convs"),
            # False: no INT8 try decided like FP32 within the tolerance; the closest was kept (deploy refuses it)
            "int8_within_tolerance": (exported_model.int8 or {}).get("within_tolerance"),
            "latency_ms": exported_model.latency_ms,
            **validation_report.task_metrics,
        },
        parameters={
            "train": trained_model.settings,
            "arch": trained_model.arch,
            "image_size": trained_model.image_size,
            "resize": trained_model.resize,
            "init": trained_model.init,
            "recipe_id": trained_model.recipe_id,
        },
        artifacts={
            "checkpoint": trained_model.checkpoint.relpath,
            "package": exported_model.package.relpath,
            "package_sha256": exported_model.package.sha256,
            "files": exported_model.files,
            "file_sha256": exported_model.file_sha256,
            "report_json": validation_report.json_artifact.relpath,
            "report_html": validation_report.html_artifact.relpath,
        },
        code_version=code_version(),
    )
    record_lineage(
        context,
        lineage,
        output_id=version.version,
        input_ids=[exported_model.id, validation_report.id, trained_model.id],
        parameters={"status": version.status.value},
        input_hashes={exported_model.id: exported_model.package.sha256, trained_model.id: trained_model.checkpoint.sha256},
    )
    context.log.info(f"registered {version.version} ({version.status.value}) from {trained_model.id}")
    return dg.Output(
        RegisteredModel(
            version=version.version,
            model_id=trained_model.id,
            export_id=exported_model.id,
            report_id=validation_report.id,
            dataset_id=dataset_version.id,
            status=version.status.value,
        ),
        metadata={
            "model_version": version.version,
            "status": version.status.value,
            "checkpoint_sha256": trained_model.checkpoint.sha256,
            "dataset_version": dataset_version.id,
            "package": dg.MetadataValue.path(str(artifact_store.path(exported_model.package))),
        },
    )
