"""``validation_report``: how good the trained model is, in the terms the line cares about.

The variant's engine scores validation and test (``TaskEngine.evaluate``): its own figures (per-class
precision and recall, AUROC, mAP, ...) and, for the good-vs-defect decision, the false-reject rate
(good parts rejected) and the escape rate (defective parts passed) at an operating threshold
calibrated on the validation split. This asset wraps them in the report frame every task shares,
names the files behind the gallery, writes JSON and a self-contained HTML page, and runs the
blocking release check that stops export and registration of a model that misses the criteria.
"""

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from mfg_assets.common import blocking_check_result, inspection_asset, per_product, record_lineage
from mfg_assets.handle_store import store_handle
from mfg_assets.handles import CrossValidation, DatasetVersion, TrainedModel, TrainingRecipe, ValidationReport
from mfg_assets.saved_options import config_for_run
from mfg_assets.task_data import StoredTaskData, engine_failures
from resources.artifact_store import ArtifactStore
from resources.reporting.format import pct_with_interval
from resources.storage.code_version import code_version
from resources.storage.scratch import scratch_dir
from resources.lineage import LineageStore
from resources.data.variants import split_partition_key
from resources.engines import Engines

__all__ = ["ValidationConfig", "release_verdict", "report_frame", "validation_report"]

RELEASE_CHECK = {"meets_release_criteria": "test accuracy and escape rate meet the release criteria"}


class ValidationConfig(dg.Config):
    max_escape_rate: float = Field(
        0.0, ge=0.0, lt=1.0, description="calibration target: highest escape rate allowed on the validation split"
    )
    release_min_accuracy: float = Field(0.9, ge=0.0, le=1.0, description="release criterion: lowest test accuracy")
    release_max_escape_rate: float = Field(
        0.05, ge=0.0, le=1.0, description="release criterion: highest test escape rate (ignored without a good class)"
    )
    gallery_size: int = Field(12, ge=0, le=100, description="worst errors shown in the HTML gallery")
    release_without_defects: bool = Field(
        False,
        description=(
            "tasks that train on good parts only: release a model whose test split holds no defective image (its "
            "escape rate is then unmeasured); off by default, so that is a decision someone takes"
        ),
    )
    target_false_reject_rate: float = Field(
        0.001,
        ge=0.0,
        lt=1.0,
        description=(
            "tasks that train on good parts only: the false-reject rate the threshold aims at when validation holds "
            "no defective image (or when passing none of them would reject every good one)"
        ),
    )


def _rate(value: float | None) -> str:
    """A rate or threshold for a log line: four significant digits, not seventeen."""
    return "n/a" if value is None else f"{value:.4g}"


def report_frame(
    *,
    model: TrainedModel,
    dataset: DatasetVersion,
    partition: str,
    config: ValidationConfig,
    notes: list[str],
    training: dict,
    **sections: object,
) -> dict:
    """The report's keys every task shares, around the task's own ``sections`` (threshold, val,
    test, worst errors, ...) and ``training`` details; the release verdict and the backbone's
    provenance included."""
    line, variant = split_partition_key(partition)
    report = {
        "task": dataset.task,
        "line": line,
        "variant": variant,
        "model_id": model.id,
        # the registry number is given after the release check; until then the model is its content id
        "model_version": model.id,
        "dataset_version": dataset.id,
        "classes": list(dataset.classes),
        "good_class": dataset.good_class,
        "grouping": dict(dataset.grouping),
        **sections,
        "training": {
            "arch": model.arch,
            "image_size": model.image_size,
            "resize": model.resize,
            "init": model.init,
            "train_seconds": model.train_seconds,
            **training,
        },
        "config": config.model_dump(),
        "notes": notes,
        "code_version": code_version(),
        "created_at": datetime.now(UTC).isoformat(),
    }
    report["release"] = release_verdict(report, config)
    if model.init.get("source") == "backbone":
        report["backbone"] = {key: model.init.get(key) for key in ("name", "package", "package_version", "sha256", "licence", "file")}
    return report


def release_verdict(report: dict, config: ValidationConfig) -> dict:
    """The release check: test accuracy of the decision and the test escape rate for every task,
    then the task's own rules (``TaskEngine.release_problems``)."""
    from resources.tasks import engine_for

    failures = []
    accuracy = report["test"]["accuracy"]
    if accuracy is None or accuracy < config.release_min_accuracy:
        shown = "n/a" if accuracy is None else f"{accuracy:.4f}"
        failures.append(f"test accuracy {shown} < {config.release_min_accuracy}")
    escape = report["test"]["escape_rate"]
    if escape is not None and escape > config.release_max_escape_rate:
        failures.append(f"test escape rate {escape:.4f} > {config.release_max_escape_rate}")
    failures.extend(engine_for(report["task"]).release_problems(report, config))
    return {"passed": not failures, "failures": failures}


@inspection_asset("validation_report", kinds={"html"}, checks=RELEASE_CHECK)
def validation_report(
    context: dg.AssetExecutionContext,
    config: ValidationConfig,
    trained_model: TrainedModel,
    dataset_version: DatasetVersion,
    hyperparameter_search: TrainingRecipe,
    cross_validation: CrossValidation,
    engines: Engines,
    artifact_store: ArtifactStore,
    lineage: LineageStore,
) -> Iterator[dg.Output[ValidationReport] | dg.AssetCheckResult]:
    """The task's figures, calibrated FRR/escape rate with intervals and worst errors, as JSON and HTML."""
    config = config_for_run(context, config, lineage.home_path())
    from resources.reporting.html import render_report_html

    if trained_model.recipe_id != hyperparameter_search.id or cross_validation.recipe_id != hyperparameter_search.id:
        raise dg.Failure(
            f"trained model {trained_model.id} (recipe {trained_model.recipe_id}) and cross-validation "
            f"{cross_validation.id} (recipe {cross_validation.recipe_id}) do not both come from recipe "
            f"{hyperparameter_search.id}; materialize the graph in one run"
        )
    data = StoredTaskData(lineage, artifact_store, dataset_version)
    with engine_failures():
        engine = engines.engine(dataset_version.task)
        engine.refuse({"escape_budget": config.max_escape_rate != ValidationConfig.model_fields["max_escape_rate"].default})
        evaluation = engine.evaluate(trained_model, hyperparameter_search, data, config, engines.machine(context.log))
    report = report_frame(
        model=trained_model,
        dataset=dataset_version,
        partition=context.partition_key,
        config=config,
        notes=evaluation.notes,
        training=evaluation.training,
        **evaluation.sections,
    )
    if cross_validation.summary is not None:
        report["cv"] = dict(cross_validation.summary)
    gallery, test_rows, val_rows = evaluation.gallery, evaluation.test_rows, evaluation.val_rows
    named = [(report["worst_errors"], test_rows)]
    if report.get("threshold_set_by") and val_rows is not None:  # the validation images that set the threshold
        named.append((report["threshold_set_by"], val_rows))
    for entries, rows in named:
        for entry in entries:
            row = rows.iloc[entry["index"]]
            entry["sha256"] = row["sha256"]
            entry["rel_path"] = f"{row['batch']}/{row['rel_path']}"
    line, variant = split_partition_key(context.partition_key)
    from resources.registry import ModelRegistry

    report["model_name"] = ModelRegistry(home=str(lineage.home_path())).expected_version(
        line, variant, trained_model.checkpoint.sha256
    )
    json_bytes = json.dumps(report, indent=2, sort_keys=True, default=float).encode()
    json_artifact = artifact_store.put_bytes(json_bytes, kind="reports", suffix=".json")
    plots = {name: artifact_store.read_bytes(artifact) for name, artifact in hyperparameter_search.plots.items()}
    with scratch_dir(artifact_store.root_path(), "report") as work:
        html_path = work / f"{json_artifact.sha256}.html"
        render_report_html(
            report, gallery_images=gallery, out_path=html_path, search_plots=plots,
            threshold_images=evaluation.threshold_images, suspicious_images=evaluation.suspicious_images,
        )
        html_artifact = artifact_store.put_file(html_path, kind="reports", suffix=".html")
    report_id = f"report:{json_artifact.sha256}"
    record_lineage(
        context,
        lineage,
        output_id=report_id,
        input_ids=[trained_model.id, dataset_version.id, hyperparameter_search.id, cross_validation.id],
        parameters=config.model_dump(),
    )
    test = report["test"]
    handle = ValidationReport(
        id=report_id,
        model_id=trained_model.id,
        dataset_id=dataset_version.id,
        json_artifact=json_artifact,
        html_artifact=html_artifact,
        accuracy=float(test["accuracy"]),
        false_reject_rate=test["false_reject_rate"],
        escape_rate=test["escape_rate"],
        threshold=report["threshold"]["threshold"] if report["threshold"] else None,
        release_passed=report["release"]["passed"],
        release_failures=tuple(report["release"]["failures"]),
        task_metrics=(
            {f"test_{key}": test.get(key) for key in engine.headline_keys} | {"threshold_rule": report.get("threshold_rule")}
            if engine.headline_keys
            else {}
        ),
    )
    store_handle(lineage, handle, context.partition_key)
    context.log.info(
        f"test accuracy {handle.accuracy:.4f}, FRR {_rate(handle.false_reject_rate)}, escape rate {_rate(handle.escape_rate)}, "
        f"threshold {_rate(handle.threshold)}; report {artifact_store.path(html_artifact)}"
    )
    # Figures a person plots are keyed by the product (line.variant): Dagster plots a metadata key as
    # one line across every partition, which read two products' accuracies as one model's regression.
    figures = {
        "accuracy": handle.accuracy,
        "false_reject_rate": handle.false_reject_rate,
        "escape_rate": handle.escape_rate,
        "threshold": handle.threshold,
        **{key: test.get(key) for key in engine.headline_keys if key in test},
    }
    yield dg.Output(
        handle,
        metadata={
            "report_id": report_id,
            "product": context.partition_key,
            **per_product(context.partition_key, figures),
            **{
                f"{key}_ci95": dg.MetadataValue.text(pct_with_interval(test.get(key), test.get(f"{key}_ci95"), "n/a"))
                for key in ("false_reject_rate", "escape_rate")
            },
            **({"per_class": dg.MetadataValue.json(test["per_class"])} if "per_class" in test else {}),
            "report_html": dg.MetadataValue.path(str(artifact_store.path(html_artifact))),
            "report_json": dg.MetadataValue.path(str(artifact_store.path(json_artifact))),
        },
    )
    yield blocking_check_result(
        "validation_report",
        "meets_release_criteria",
        passed=handle.release_passed,
        description="meets the release criteria"
        if handle.release_passed
        else "; ".join(handle.release_failures) + " — collect more or better-labelled data, or train longer",
        metadata=per_product(context.partition_key, {"accuracy": handle.accuracy}),
    )
