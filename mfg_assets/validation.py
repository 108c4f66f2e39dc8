"""``validation_report``: how good the trained model is, in the terms the line cares about.

Test-split accuracy, per-class precision/recall and the confusion matrix; for the good-vs-defect
decision, the false-reject rate (good parts rejected) and the escape rate (defective parts passed)
at an operating threshold calibrated on the validation split (default target: zero escapes, then
the lowest false-reject rate). Written as JSON and as a self-contained HTML page with plots. A
blocking release check stops export and registration of a model that misses the release criteria.
"""

import json
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime

import dagster as dg
import numpy as np
from pydantic import Field

from mfg_assets.common import blocking_check_result, inspection_asset, per_product, record_lineage
from mfg_assets.datasets import load_split_images, split_groups
from mfg_assets.handle_store import store_handle
from mfg_assets.handles import CrossValidation, DatasetVersion, TrainedModel, TrainingRecipe, ValidationReport
from mfg_assets.saved_options import config_for_run
from resources.artifact_store import ArtifactStore
from resources.reporting.format import pct_with_interval
from resources.storage.code_version import code_version
from resources.storage.scratch import scratch_dir
from resources.lineage import LineageStore
from resources.data.variants import split_partition_key
from resources.trainers import AnomalyTrainer

__all__ = ["ValidationConfig", "build_report", "release_verdict", "report_frame", "validation_report"]

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
            "anomaly task: release a detector whose test split holds no defective image (its escape rate is then "
            "unmeasured); off by default, so that is a decision someone takes"
        ),
    )
    target_false_reject_rate: float = Field(
        0.001,
        ge=0.0,
        lt=1.0,
        description=(
            "anomaly task: the false-reject rate the threshold aims at when validation holds no defective image "
            "(or when passing none of them would reject every good one)"
        ),
    )


def _rate(value: float | None) -> str:
    """A rate or threshold for a log line: four significant digits, not seventeen."""
    return "n/a" if value is None else f"{value:.4g}"


def _split_section(
    probabilities: np.ndarray, labels: np.ndarray, classes, good_class, threshold, task: str, groups: np.ndarray | None
) -> dict:
    """The task's metrics on one split (its engine's), plus the decision rates every task reports
    (their intervals counted in near-duplicate ``groups`` when given)."""
    from resources.reporting.metrics import RATE_KEYS, decision_rates, defect_scores, roc_points
    from resources.tasks import engine_for

    section = engine_for(task).metrics(labels, probabilities, classes, good_class)
    if good_class is not None:
        scores = defect_scores(probabilities, classes, good_class)
        is_defect = labels != list(classes).index(good_class)
        section["decision"] = decision_rates(scores, is_defect, threshold, groups)
        section.update({key: section["decision"][key] for key in RATE_KEYS})
        section["roc"] = roc_points(scores, is_defect)
        section["defect_scores"] = [round(float(v), 6) for v in scores]
        section["is_defect"] = [bool(v) for v in is_defect]
    else:
        section.update(dict.fromkeys(RATE_KEYS))
    return section


def build_report(
    *,
    model: TrainedModel,
    dataset: DatasetVersion,
    partition: str,
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    config: ValidationConfig,
    history: list[dict],
    recipe: TrainingRecipe | None = None,
    cv: CrossValidation | None = None,
    groups: dict[str, np.ndarray] | None = None,
) -> dict:
    """The report dictionary from validation and test probabilities (pure; no I/O); ``groups``
    holds each split's near-duplicate group ids (``"val"``, ``"test"``), which the rates'
    intervals count instead of images."""
    from resources.reporting.metrics import calibrate_threshold, defect_scores, threshold_setters, worst_errors

    classes, good_class = list(dataset.classes), dataset.good_class
    notes: list[str] = []
    calibration = None
    set_by: list[dict] = []
    if good_class is not None:
        val_scores = defect_scores(val[0], classes, good_class)
        val_defect = val[1] != classes.index(good_class)
        calibration = asdict(calibrate_threshold(val_scores, val_defect, max_escape_rate=config.max_escape_rate))
        set_by = [{**row, "true": classes[val[1][row["index"]]]} for row in threshold_setters(val_scores, val_defect)]
    else:
        notes.append(
            "No class is marked good (--good-class), so every class is a defect type: false-reject and "
            "escape rates are not computed and no operating threshold is calibrated."
        )
    threshold = calibration["threshold"] if calibration else None
    report = report_frame(
        model=model,
        dataset=dataset,
        partition=partition,
        config=config,
        notes=notes,
        threshold=calibration,
        val=_split_section(val[0], val[1], classes, good_class, threshold, dataset.task, (groups or {}).get("val")),
        test=_split_section(test[0], test[1], classes, good_class, threshold, dataset.task, (groups or {}).get("test")),
        worst_errors=worst_errors(test[1], test[0], classes, k=config.gallery_size),
        threshold_set_by=set_by,
        training={"settings": model.settings, "best_epoch": model.best_epoch, "history": history},
    )
    if recipe is not None and recipe.search is not None:
        report["hpo"] = {**recipe.search, "best_settings": recipe.settings}
    if cv is not None and cv.summary is not None:
        report["cv"] = dict(cv.summary)
    return report


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
    """The release check, the same for every task: test accuracy of the decision (for anomaly
    detection, good vs defect at the threshold) and the test escape rate."""
    failures = []
    accuracy = report["test"]["accuracy"]
    if accuracy is None or accuracy < config.release_min_accuracy:
        shown = "n/a" if accuracy is None else f"{accuracy:.4f}"
        failures.append(f"test accuracy {shown} < {config.release_min_accuracy}")
    escape = report["test"]["escape_rate"]
    if escape is not None and escape > config.release_max_escape_rate:
        failures.append(f"test escape rate {escape:.4f} > {config.release_max_escape_rate}")
    if report.get("task") == "anomaly" and not report["test"].get("n_defect") and not config.release_without_defects:
        failures.append(
            "the test split holds no defective image, so escapes are not measured; add defect images (a few of "
            "each type), or release it knowingly with --release-without-defects"
        )
    return {"passed": not failures, "failures": failures}


@inspection_asset("validation_report", kinds={"html"}, checks=RELEASE_CHECK)
def validation_report(
    context: dg.AssetExecutionContext,
    config: ValidationConfig,
    trained_model: TrainedModel,
    dataset_version: DatasetVersion,
    hyperparameter_search: TrainingRecipe,
    cross_validation: CrossValidation,
    anomaly_trainer: AnomalyTrainer,
    artifact_store: ArtifactStore,
    lineage: LineageStore,
) -> Iterator[dg.Output[ValidationReport] | dg.AssetCheckResult]:
    """Per-class metrics, calibrated FRR/escape rate, ROC and worst errors, as JSON and HTML."""
    config = config_for_run(context, config, lineage.home_path())
    from resources.classify.model import load_inference_model, predict_proba
    from resources.reporting.html import render_report_html

    if trained_model.recipe_id != hyperparameter_search.id or cross_validation.recipe_id != hyperparameter_search.id:
        raise dg.Failure(
            f"trained model {trained_model.id} (recipe {trained_model.recipe_id}) and cross-validation "
            f"{cross_validation.id} (recipe {cross_validation.recipe_id}) do not both come from recipe "
            f"{hyperparameter_search.id}; materialize the graph in one run"
        )
    val_rows = None
    threshold_images: list = []
    suspicious_images: list = []
    if dataset_version.task == "anomaly":
        from mfg_assets.anomaly_steps import anomaly_report

        report, gallery, test_rows = anomaly_report(
            context, config, trained_model, dataset_version, anomaly_trainer, artifact_store, lineage
        )
        from resources.data.images import load_rgb

        fit = dict(trained_model.settings.get("fit") or {})
        suspicious_images = [
            load_rgb(artifact_store.path(entry["artifact"]))
            for entry in fit.get("suspicious_training_images") or []
            if entry.get("flagged") and entry.get("artifact")
        ]
    else:
        model = load_inference_model(artifact_store.path(trained_model.checkpoint))
        size, resize = trained_model.image_size, trained_model.resize
        val_images, val_labels, val_rows = load_split_images(lineage, artifact_store, dataset_version, "val", size, resize)
        test_images, test_labels, test_rows = load_split_images(lineage, artifact_store, dataset_version, "test", size, resize)
        report = build_report(
            model=trained_model,
            dataset=dataset_version,
            partition=context.partition_key,
            val=(predict_proba(model, val_images), val_labels),
            test=(predict_proba(model, test_images), test_labels),
            config=config,
            history=list(trained_model.history),
            recipe=hyperparameter_search,
            cv=cross_validation,
            groups={"val": split_groups(val_rows), "test": split_groups(test_rows)},
        )
        gallery = [test_images[e["index"]] for e in report["worst_errors"]]
        threshold_images = [val_images[row["index"]] for row in report.get("threshold_set_by") or []]
    named = [(report["worst_errors"], test_rows)]
    if report.get("threshold_set_by"):  # classification with a good class: validation images
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
            report, gallery_images=gallery, out_path=html_path, search_plots=plots, threshold_images=threshold_images,
            suspicious_images=suspicious_images,
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
            {f"test_{key}": test.get(key) for key in ("image_auroc", "pixel_auroc", "pro")}
            | {"threshold_rule": report.get("threshold_rule")}
            if dataset_version.task == "anomaly"
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
        **{key: test.get(key) for key in ("image_auroc", "pixel_auroc", "pro") if key in test},
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
