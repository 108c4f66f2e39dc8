"""``exported_model``: the trained model as ONNX, OpenVINO IR and INT8 ONNX, in one package.

Normalisation and softmax are inside the exported graph, so a device only resizes to the input
size. A blocking parity check compares every FP32 runtime against the trained torch model on the
test images (largest probability difference and decision agreement); the INT8 model is measured for
test accuracy instead, and a warning check says when it loses more than 0.5 pt against the validated FP32 model.
Latency is measured for torch, ONNX Runtime and OpenVINO on this machine.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg
from pydantic import Field

from mfg_assets.common import blocking_check_result, inspection_asset, json_metadata, record_lineage
from mfg_assets.handle_store import store_handle
from mfg_assets.handles import DatasetVersion, ExportedModel, TrainedModel, ValidationReport
from mfg_assets.task_data import StoredTaskData, engine_failures
from resources.artifact_store import ArtifactStore
from resources.engines import Engines
from resources.export_limits import INT8_MAX_DISAGREEMENT, PARITY_TOLERANCE
from resources.lineage import LineageStore
from resources.storage.code_version import code_version
from resources.storage.scratch import scratch_dir

__all__ = ["ExportConfig", "exported_model"]

PARITY_CHECK = {
    "exports_match_trained_model": "ONNX Runtime and OpenVINO reproduce the torch model's probabilities and decisions",
    "int8_keeps_accuracy": (
        "the INT8 model's test accuracy is within int8_max_accuracy_drop of the validated FP32 model's and its "
        "precision search met int8_max_disagreement; a warning, not a stop: devices run FP32 ONNX unless deployed "
        "with --format onnx_int8 (refused after either shortfall unless --accept-int8-shortfall)"
    ),
}


class ExportConfig(dg.Config):
    parity_tolerance: float = Field(
        PARITY_TOLERANCE,
        gt=0.0,
        le=1.0,
        description="largest allowed probability difference between torch and an FP32 export (1e-4 catches bf16/FP16 drift)",
    )
    int8: bool | None = Field(
        None,
        description=(
            "also write a statically quantised INT8 ONNX model (None: the task's default, which is yes where the "
            "task exports INT8; true for a task without INT8 is refused)"
        ),
    )
    calibration_images: int = Field(32, ge=1, le=1024, description="training images used to calibrate INT8")
    int8_max_disagreement: float = Field(
        INT8_MAX_DISAGREEMENT,
        ge=0.0,
        lt=1.0,
        description=(
            "fraction of validation images on which INT8 may decide differently from FP32 before more of the "
            "network's leading convolutions stay in float"
        ),
    )
    int8_max_accuracy_drop: float = Field(
        0.005, ge=0.0, le=1.0, description="test accuracy INT8 may lose against the FP32 model before its check warns"
    )
    latency_repeats: int = Field(20, ge=1, le=1000, description="timed single-image runs per runtime")


@inspection_asset("exported_model", kinds={"onnx", "openvino"}, checks=PARITY_CHECK)
def exported_model(
    context: dg.AssetExecutionContext,
    config: ExportConfig,
    trained_model: TrainedModel,
    validation_report: ValidationReport,
    dataset_version: DatasetVersion,
    engines: Engines,
    artifact_store: ArtifactStore,
    lineage: LineageStore,
) -> Iterator[dg.Output[ExportedModel] | dg.AssetCheckResult]:
    """A deployable package written by the variant's engine (ONNX, OpenVINO and, where the task has
    it, INT8) with a manifest of its files' hashes, parity-checked against the fitted model."""
    if validation_report.model_id != trained_model.id:
        raise dg.Failure(
            f"validation report {validation_report.id} is about {validation_report.model_id}, not "
            f"{trained_model.id}; materialize the graph in one run"
        )
    size, resize = trained_model.image_size, trained_model.resize
    manifest = {
        "model_id": trained_model.id,
        "dataset_version": dataset_version.id,
        "classes": list(trained_model.classes),
        "good_class": dataset_version.good_class,
        "threshold": validation_report.threshold,
        "input": {"name": "images", "layout": "NCHW", "dtype": "float32", "range": [0, 255], "channels": "RGB", "height": size, "width": size, "resize": resize},
        "code_version": code_version(),
    }
    data = StoredTaskData(lineage, artifact_store, dataset_version)
    with engine_failures():
        engine = engines.engine(dataset_version.task)
        engine.refuse({"int8": config.int8 is True})
        # None means the task's default; lineage records what was done
        config = config.model_copy(update={"int8": config.int8 if config.int8 is not None else engine.int8_default})
        with scratch_dir(artifact_store.root_path(), "export") as tmp:
            build = engine.export(
                trained_model, validation_report.threshold, data, config, tmp, manifest, engines.machine(context.log)
            )
            stored = artifact_store.put_tree(tmp, kind="packages")
    export_id = f"export:{stored.sha256}"
    record_lineage(
        context,
        lineage,
        output_id=export_id,
        input_ids=[trained_model.id, validation_report.id],
        parameters={**config.model_dump(), **build.lineage_parameters},
        input_hashes={trained_model.id: trained_model.checkpoint.sha256},
    )
    latency, int8_accuracy, int8_record = build.latency_ms, build.int8_test_accuracy, build.int8
    if int8_record is not None and int8_accuracy is not None:
        # What INT8 costs on test against the validated FP32 model, and what the plant allows: deploy
        # refuses onnx_int8 beyond it unless a person accepts (mfg_assets.deployment.int8_shortfall).
        int8_record = {
            **int8_record,
            "test_accuracy_drop": round(float(validation_report.accuracy) - float(int8_accuracy), 6),
            "max_test_accuracy_drop": config.int8_max_accuracy_drop,
        }
    handle = ExportedModel(
        id=export_id,
        model_id=trained_model.id,
        package=stored,
        files=build.files,
        file_sha256=build.file_sha256,
        input_size=size,
        resize=resize,
        parity_passed=build.parity_passed,
        parity={**build.parity, "passed": build.parity_passed},
        latency_ms=latency,
        int8_test_accuracy=int8_accuracy,
        int8=int8_record,
    )
    store_handle(lineage, handle, context.partition_key)
    shown = ", ".join(f"{fmt} {ms:.1f}" for fmt, ms in latency.items() if isinstance(ms, int | float))
    context.log.info(f"exported {', '.join(build.files)} to {artifact_store.path(stored)}; ms per image: {shown}")
    metadata = dict(build.metadata)
    if "int8_precision" in metadata and int8_record is not None:
        metadata["int8_precision"] = int8_record
    yield dg.Output(
        handle,
        metadata={
            "export_id": export_id,
            "package": dg.MetadataValue.path(str(artifact_store.path(stored))),
            **{f"latency_ms_{k}": float(v) for k, v in latency.items()},
            **json_metadata(metadata),
        },
    )
    yield blocking_check_result(
        "exported_model",
        "exports_match_trained_model",
        passed=build.parity_passed,
        description=build.parity_description,
        metadata=dict(build.parity_metadata),
    )
    # The reference is the validated model's test accuracy: the blocking parity check above holds the
    # FP32 exports to it, so scoring ONNX again would only repeat that work.
    n_test = len(data.items().query("split == 'test'"))
    yield _int8_check(
        int8_accuracy, validation_report.accuracy, config.int8_max_accuracy_drop, n_test, int8_record, note=build.int8_note
    )


def _int8_check(
    int8_accuracy: float | None,
    fp32_accuracy: float,
    max_drop: float,
    n_images: int,
    precision: dict[str, Any] | None = None,
    note: str = "no INT8 model was built (ExportConfig.int8 is false)",
) -> dg.AssetCheckResult:
    """Warn (not block) when INT8 loses more than ``max_drop`` test accuracy: PTQ of a small network
    can flip borderline images, and a user choosing ``--format onnx_int8`` must see what it costs."""
    if int8_accuracy is None:
        return dg.AssetCheckResult(
            asset_key="exported_model",
            check_name="int8_keeps_accuracy",
            passed=True,
            description=note,
        )
    drop = fp32_accuracy - int8_accuracy
    accuracy_held = drop <= max_drop + 1e-12
    search_held = not precision or precision.get("within_tolerance", True)
    passed = accuracy_held and search_held
    verdict = "within" if accuracy_held else "more than"
    kept = (
        ""
        if not precision
        else f" (first {precision['float_convs']} of {precision['total_convs']} convolutions kept in float)"
    )
    shortfall = (
        ""
        if search_held
        else (
            f"; no try decided like FP32 within {100 * precision['max_disagreement']:.2f} % of the "
            f"{precision['holdout']} images (closest: {100 * precision['holdout_disagreement']:.2f} %)"
        )
    )
    unfolded = "" if not precision or precision.get("bn_folded", True) else f"; {precision['pre_process']}"
    return dg.AssetCheckResult(
        asset_key="exported_model",
        check_name="int8_keeps_accuracy",
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"INT8{kept} test accuracy {int8_accuracy:.2%} vs FP32 {fp32_accuracy:.2%} on {n_images} images: a drop of "
            f"{100 * drop:.2f} pt, {verdict} the {100 * max_drop:.2f} pt allowed"
            + shortfall
            + unfolded
            + (
                ""
                if passed
                else "; deploy with --format onnx (the default) or openvino, not onnx_int8 (refused without "
                "--accept-int8-shortfall)"
            )
        ),
        metadata={
            "int8_test_accuracy": int8_accuracy,
            "fp32_test_accuracy": fp32_accuracy,
            "drop_pt": 100 * drop,
            "int8_float_convs": -1 if not precision else precision["float_convs"],
            "int8_within_tolerance": bool(search_held),
        },
    )
