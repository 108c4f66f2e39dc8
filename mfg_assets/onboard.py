"""``mfgv onboard``: register a product variant from a dataset and run the graph for it in Dagster.

The dataset is copied into the landing zone as one batch (its id is a hash of its file listing, so
onboarding the same folder twice adds nothing), the variant's taxonomy is registered, and the
``classify_job`` runs in-process against the instance the UI reads. The report JSON then gathers
what a plant engineer asks first: accuracy, false-reject and escape rates, threshold, exports.
"""

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import dagster as dg

from mfg_assets.run_outcome import failure_summary, interrupted
from resources.data.variants import VariantSpec, load_variant, partition_key, save_run_config, save_variant, validate_name
from resources.errors import MfgVisionError
from resources.landing import MARKER, landed_source, onboard_marker
from resources.settings import mfg_home
from resources.tasks import engine_for

__all__ = ["OnboardError", "OnboardRequest", "discover_classes", "onboard"]


class OnboardError(MfgVisionError, ValueError):
    """The dataset or the request cannot be onboarded; the message says why and what to do."""


@dataclass(frozen=True)
class OnboardRequest:
    data_dir: Path
    line: str
    variant: str
    task: str = "classify"
    label_format: str = "folders"
    good_class: str | None = None
    report_json: Path | None = None
    epochs: int | None = None
    image_size: int | None = None
    arch: str | None = None
    backbone: str | None = None
    pretrained_weights: str | None = None
    init_from: str | None = None
    hpo_trials: int | None = None
    hpo_minutes: float | None = None
    cv_folds: int | None = None
    seed: int = 0
    min_accuracy: float | None = None
    max_test_escape_rate: float | None = None
    escape_budget: float | None = None
    device: str | None = None  # torch device for fitting: auto | cpu | cuda (None: the engines resource's default, auto)
    min_images_per_class: int | None = None
    augment_copies: int | None = None
    anomaly_settings: dict[str, Any] | None = None
    release_without_defects: bool = False
    group_by: str | None = None
    force: bool = False
    no_good_class: bool = False


def discover_classes(data_dir: Path, label_format: str, task: str = "classify", good_class: str | None = None) -> tuple[str, ...]:
    """The taxonomy implied by the dataset: class folders, the MVTec layout's folders, the labels of
    the label file, or (a task with its own label format) the classes its labels name."""
    own = engine_for(task).dataset_labels(data_dir, label_format, good_class)
    if own is not None:
        named = set(own["label"]) | {c for row in own.get("box_classes", []) for c in row}
        return tuple(sorted(named | ({good_class} if good_class else set())))
    if label_format == "mvtec":
        from mfg_assets.onboard_checks import class_counts

        return tuple(class_counts(data_dir, "mvtec"))
    if label_format == "folders":
        from mfg_assets.onboard_checks import class_counts

        counts = class_counts(data_dir, "folders")
        empty = [name for name, n in counts.items() if n == 0]
        if empty:
            raise OnboardError(
                f"{data_dir}: class folder(s) {', '.join(f'{e}/' for e in empty)} hold no images; add images "
                "of that class or remove the folder"
            )
        return tuple(counts)
    from resources.data.labels import labels_from_coco, labels_from_csv

    label_file = data_dir / ("labels.csv" if label_format == "csv" else "annotations.json")
    if not label_file.exists():
        raise OnboardError(f"{label_file} does not exist; --format {label_format} needs it in the dataset folder")
    labels = labels_from_csv(label_file) if label_format == "csv" else labels_from_coco(label_file)
    return tuple(sorted(set(labels["label"])))


def _listing_hash(data_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(data_dir).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def land_batch(data_dir: Path, landing_dir: Path) -> Path:
    """Copy the dataset into the landing zone as one complete batch (idempotent)."""
    from resources.storage.scratch import scratch_name

    batch_dir = landing_dir / f"onboard-{_listing_hash(data_dir)}"
    if (batch_dir / MARKER).exists():
        return batch_dir
    # Copied under this process's in-progress name (never picked up, swept if the process dies), so
    # two onboards of the same data never remove each other's half copy.
    staging = landing_dir / scratch_name("landing")
    landing_dir.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copytree(data_dir, staging, ignore=shutil.ignore_patterns(MARKER, ".*"))
    except (OSError, shutil.Error) as exc:
        shutil.rmtree(staging, ignore_errors=True)  # no half copy left for the landing sensor to puzzle over
        raise OnboardError(f"copying {data_dir} into the landing zone failed: {exc}; nothing was landed") from exc
    if batch_dir.exists():
        shutil.rmtree(batch_dir)  # a copy that lost its marker to a crash: the new copy replaces it
    staging.rename(batch_dir)
    (batch_dir / MARKER).write_text(onboard_marker(data_dir), encoding="utf-8")
    return batch_dir


def _run_config(request: OnboardRequest) -> dg.RunConfig:
    """The run's typed config: each asset's own ``Config`` class, so a wrong field or value fails here."""
    from mfg_assets.annotations import AnnotationConfig
    from mfg_assets.augment import AugmentConfig
    from mfg_assets.cross_validation import CrossValidationConfig
    from mfg_assets.datasets import SplitConfig
    from mfg_assets.progress import run_loggers
    from mfg_assets.search import RecipeConfig
    from mfg_assets.validation import ValidationConfig

    def given(**values: Any) -> dict[str, Any]:
        return {key: value for key, value in values.items() if value is not None}

    ops: dict[str, dg.Config] = {
        "dataset_version": SplitConfig(seed=request.seed, **given(group_by=request.group_by)),
        # The split's seed is the run's seed: the other steps take it from the dataset version.
        "augmented_set": AugmentConfig(**given(image_size=request.image_size, copies_per_image=request.augment_copies)),
        "hyperparameter_search": RecipeConfig(
            **given(
                epochs=request.epochs,
                arch=request.arch,
                backbone=request.backbone,
                pretrained_weights=request.pretrained_weights,
                init_from=request.init_from,
                hpo_trials=request.hpo_trials,
                hpo_minutes=request.hpo_minutes,
                task_settings=request.anomaly_settings,
            ),
        ),
    }
    ops["cross_validation"] = CrossValidationConfig(**given(folds=request.cv_folds))
    ops["validation_report"] = ValidationConfig(
        **given(
            release_min_accuracy=request.min_accuracy,
            release_max_escape_rate=request.max_test_escape_rate,
            max_escape_rate=request.escape_budget,
            release_without_defects=request.release_without_defects or None,
        )
    )
    ops["annotations"] = AnnotationConfig(**given(min_images_per_class=request.min_images_per_class))
    # Every asset whose options onboard sets gets a config, empty or not: this command line is the
    # whole choice, so no asset falls back to an earlier onboard's saved options (saved_options).
    # A progress line, not Dagster's event stream (mfg_assets.progress); -v adds the stream.
    resources = {"engines": {"config": {"device": request.device}}} if request.device else None
    return dg.RunConfig(
        ops=ops, resources=resources, loggers=run_loggers(logging.getLogger("mfgv").isEnabledFor(logging.DEBUG))
    )


def _chosen_options(run_config: dg.RunConfig) -> dict[str, Any]:
    """The run config fields this onboard set, without the defaults: a run a sensor starts for the
    variant keeps the plant's choices (backbone, feature source, input size, release limits) and
    follows the platform's defaults for the rest."""
    chosen = {name: config.model_dump(exclude_unset=True) for name, config in (run_config.ops or {}).items()}
    return {"ops": {name: {"config": fields} for name, fields in chosen.items() if fields}}


def _preflight(request: OnboardRequest, data_dir: Path, classes: tuple[str, ...]) -> OnboardRequest:
    """Refuse options that cannot work (an option the task lacks, folds, backbone, weights,
    --init-from) before landing anything; the task's engine says which and why."""
    from mfg_assets.onboard_checks import check_cv_folds, class_counts

    from resources.devices import resolve_device

    engine = engine_for(request.task)
    try:
        if request.device:
            resolve_device(request.device)  # --device cuda on a machine without one: refused before anything lands
        engine.refuse(
            {
                "hpo_trials": request.hpo_trials is not None,
                "hpo_minutes": request.hpo_minutes is not None,
                "folds": request.cv_folds is not None,
                "epochs": request.epochs is not None,
                "escape_budget": request.escape_budget is not None,
                "augment_copies": bool(request.augment_copies),
            },
            cli=True,
        )
        if "folds" not in engine.unsupported:
            check_cv_folds(request.cv_folds, class_counts(data_dir, request.label_format))
        start = engine.preflight(
            {
                "backbone": request.backbone,
                "arch": request.arch,
                "pretrained_weights": request.pretrained_weights,
                "init_from": request.init_from,
                "task_settings": request.anomaly_settings,
                "image_size": request.image_size,
                "epochs": request.epochs,
            },
            len(classes),
        )
    except MfgVisionError as exc:
        raise OnboardError(str(exc)) from exc
    return dataclasses.replace(request, backbone=start.get("backbone", request.backbone))


def _same_variant(existing: VariantSpec, spec: VariantSpec) -> VariantSpec:
    """The registered variant, if this dataset fits it: the same task, good class and label format,
    and classes among the registered ones (a taxonomy grown with ``mfgv variant add-class`` may hold
    more). Anything else is refused with the command that would make it fit."""
    where = f"--line {spec.line} --variant {spec.variant}"
    new = [c for c in spec.classes if c not in existing.classes]
    if new:
        raise OnboardError(
            f"variant {spec.line}/{spec.variant} (taxonomy version {existing.version}) has classes "
            f"{list(existing.classes)}; this dataset also has {new}. Add them first "
            f"(`mfgv variant add-class {where} --class {new[0]}`, once per class), or use a new --variant name"
        )
    different = [
        f"{field} {getattr(spec, field)!r} (registered: {getattr(existing, field)!r})"
        for field in ("task", "good_class", "label_format")
        if getattr(spec, field) != getattr(existing, field)
    ]
    if different:
        raise OnboardError(
            f"variant {spec.line}/{spec.variant} is registered with other settings: {'; '.join(different)}. "
            "Pass the registered ones, or use a new --variant name for a new taxonomy"
        )
    return existing


def onboard(request: OnboardRequest, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Register the variant, land the data, run ``classify_job`` through Dagster, write the report JSON."""
    started = time.monotonic()
    from mfg_assets.instance import fail_abandoned_runs, get_instance, run_tags

    if request.report_json is not None and request.report_json.exists():
        request.report_json.unlink()  # an earlier run's report must not read as this run's result
    data_dir = request.data_dir.expanduser().resolve()
    if not data_dir.is_dir():
        raise OnboardError(f"{data_dir} is not a folder; pass the dataset folder (one sub-folder per class)")
    validate_name("line", request.line)
    validate_name("variant", request.variant)
    engine = engine_for(request.task)  # a task without an engine is refused before anything lands
    if request.good_class is None and (request.label_format == "mvtec" or engine.label_file_suffixes):
        # the MVTec layout names its good parts; box and text labels mark a good part by having none
        request = dataclasses.replace(request, good_class="good")
    from mfg_assets import onboard_checks as checks

    try:
        checks.scan_dataset(data_dir)
        checks.check_not_mvtec_as_folders(data_dir, request.label_format)
        classes = discover_classes(data_dir, request.label_format, request.task, request.good_class)
        checks.check_part_ids_of(
            data_dir, request.label_format, request.group_by or "auto",
            labels=engine.dataset_labels(data_dir, request.label_format, request.good_class),
        )
    except MfgVisionError as exc:
        raise OnboardError(str(exc)) from exc
    if problems := engine.variant_problems(classes, request.good_class):
        raise OnboardError(f"{data_dir}: {'; '.join(problems)}, e.g. good parts and one defect type")
    if request.good_class is not None and request.good_class not in classes:
        raise OnboardError(
            f"--good-class {request.good_class!r} is not a class of {data_dir}; choose one of {', '.join(classes)}"
        )
    if request.pretrained_weights:  # later runs (started by sensors) work in another folder
        request = dataclasses.replace(request, pretrained_weights=str(Path(request.pretrained_weights).expanduser().resolve()))
    request = _preflight(request, data_dir, classes)
    try:
        checks.check_good_class_named(classes, request.good_class, request.no_good_class, request.task)
    except checks.PreflightError as exc:
        raise OnboardError(str(exc)) from exc
    home = mfg_home()
    spec = VariantSpec(
        line=request.line,
        variant=request.variant,
        task=request.task,
        classes=classes,
        good_class=request.good_class,
        label_format=request.label_format,
    )
    try:
        existing = load_variant(request.line, request.variant, home)
    except LookupError:
        existing = None
    if existing is not None:
        spec = _same_variant(existing, spec)
    instance = get_instance(home)
    landing_dir = home / "landing" / request.line / request.variant
    run_config = _run_config(request)
    if existing is not None and not request.force and (landing_dir / f"onboard-{_listing_hash(data_dir)}" / MARKER).exists():
        from mfg_assets.onboard_unchanged import unchanged_report, unchanged_version

        same = unchanged_version(request.line, request.variant, landing_dir, _chosen_options(run_config), home)
        if same is not None:
            return unchanged_report(same, request.report_json)
    batch_dir = land_batch(data_dir, landing_dir)
    if existing is None:  # registered once its data landed: a failed copy leaves no half-registered variant
        save_variant(spec, home)
    echo(f"landed {data_dir} as batch {batch_dir.name} in {landing_dir}")
    key = partition_key(request.line, request.variant)
    from mfg_assets.definitions import defs
    from mfg_assets.partitions import line_variant_partitions

    if key not in instance.get_dynamic_partitions(line_variant_partitions.name):
        instance.add_dynamic_partitions(line_variant_partitions.name, [key])
    for run_id in fail_abandoned_runs(instance):
        echo(f"run {run_id} was left unfinished by a process that is gone; marked failed")
    from mfg_assets.jobs import job_for_task

    job_name = job_for_task(spec.task)
    job = defs.resolve_job_def(job_name)
    echo(f"running {job_name} for partition {key} (Dagster home {instance.root_directory})")
    result = job.execute_in_process(
        run_config=run_config, instance=instance, partition_key=key, raise_on_error=False, tags=run_tags()
    )
    if not result.success:
        if interrupted(result):
            raise KeyboardInterrupt  # the CLI says in one line what was kept
        summary = failure_summary(result)
        refused = _write_refusal(request, result, started, summary, batch_dir)
        where = f"\nthe validation report (with the refusal) is at {refused}" if refused else ""
        raise OnboardError(f"run {result.run_id} for {key} did not finish:\n{summary}{where}")
    # Kept once a model came of them (a refused or failed try leaves the variant's last good options):
    # the runs sensors start for the variant (a new batch, a retrain) use them.
    chosen = _chosen_options(run_config)
    saved = save_run_config(request.line, request.variant, chosen, home)
    echo(f"saved the options of this onboard for the variant's later runs (new batches, retrains): {saved}")
    report = _write_report(request, result, started, batch_dir)
    from mfg_assets.onboard_unchanged import remember_onboarded

    remember_onboarded(request.line, request.variant, report["model_version"], home)
    return report


def _materialized(result: Any, asset: str) -> dict[str, Any] | None:
    """The metadata of ``asset``'s materialization in this run, or None if it did not materialize."""
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        if materialization.asset_key.to_user_string() == asset:
            return {key: getattr(value, "value", value) for key, value in materialization.metadata.items()}
    return None


def _write_refusal(request: OnboardRequest, result: Any, started: float, summary: str, batch: Path) -> str | None:
    """When the run stopped after the validation report (the release check refused the model, or a
    later step failed), still write the report JSON with the refusal, so the user sees what fell short."""
    metadata = _materialized(result, "validation_report")
    if metadata is None or not request.report_json:
        return None if metadata is None else str(metadata.get("report_html"))
    full = json.loads(Path(str(metadata["report_json"])).read_text())
    report = _summary(request, full, result, started, batch)
    report.update(
        registered=False,
        model_version=None,
        refusal={"reason": summary, "release": full.get("release")},
        report_html=str(metadata.get("report_html")),
        report_json_full=str(metadata.get("report_json")),
    )
    _write_json(request.report_json, report)
    return str(metadata.get("report_html"))


def _summary(request: OnboardRequest, full: dict[str, Any], result: Any, started: float, batch: Path) -> dict[str, Any]:
    """What a plant engineer asks first, from the full report JSON.

    ``batch`` is the landing batch folder this onboard copied ``request.data_dir`` into. The images
    that set the threshold get the file they would open to review: their path in the user's own
    folder (``source_path``: this onboard's folder, or the one an earlier onboard of the variant
    landed, while the file there still holds the image), else the landed copy (``landed_path``),
    next to the ``rel_path`` the lineage knows them by.
    """
    test = full["test"]
    report: dict[str, Any] = {
        "task": request.task,
        "line": request.line,
        "variant": request.variant,
        "model_id": full["model_id"],
        "dataset_version": full["dataset_version"],
        "run_id": result.run_id,
        "train_seconds": round(float(full["training"]["train_seconds"]), 2),
        "total_seconds": round(time.monotonic() - started, 2),
        "test": {
            key: test[key]
            for key in (
                "accuracy", "false_reject_rate", "escape_rate", "n_images",  # every task
                "false_reject_rate_ci95", "escape_rate_ci95", "decision",  # with a good class: intervals, counts
                "per_class", "confusion_matrix",  # classify
                "image_auroc", "pixel_auroc", "pro", "per_type", "n_masked",  # anomaly
                "map50", "map50_95", "per_class_ap", "n_boxes",  # detect
            )
            if key in test
        },
        "threshold": full["threshold"]["threshold"] if full["threshold"] else None,
        "threshold_calibration": full["threshold"],
        "training": {k: full["training"].get(k) for k in ("arch", "image_size", "resize", "best_epoch", "settings", "init")},
        "release": full.get("release"),
        "notes": full["notes"],
    }
    for key in ("backbone", "hpo", "cv", "threshold_rule", "threshold_set_by", "grouping"):
        if key in full:
            report[key] = full[key]
    if report.get("threshold_set_by"):
        report["threshold_set_by"] = [_with_source_path(row, request.data_dir, batch) for row in report["threshold_set_by"]]
    return report


def _with_source_path(row: dict[str, Any], data_dir: Path, batch: Path) -> dict[str, Any]:
    """``row`` with ``source_path`` (the user's file) or ``landed_path`` (the landed copy) of its
    ``rel_path`` (``<batch>/<path in the batch>``), each only while the file there still holds the
    image (its ``sha256``: plants reuse file names); unchanged when neither does."""
    landed_batch, _, rel_path = str(row.get("rel_path", "")).partition("/")
    inside = PurePosixPath(rel_path)
    if landed_batch in ("", ".", "..") or not inside.parts or inside.is_absolute() or ".." in inside.parts:
        return row  # not a path inside a batch: name nothing rather than a file elsewhere
    earlier = batch.parent / landed_batch
    source = data_dir.resolve() if landed_batch == batch.name else landed_source(earlier)
    for key, base in (("source_path", source), ("landed_path", earlier)):
        if base is not None and _holds(base / inside, row.get("sha256")):
            return {**row, key: str(base / inside)}
    return row


def _holds(path: Path, sha256: str | None) -> bool:
    """Whether ``path`` is a file with the image's content (any file when the row has no hash)."""
    from resources.artifact_store import sha256_file

    try:
        return path.is_file() and (not sha256 or sha256_file(path) == sha256)
    except OSError:
        return False


def _write_json(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=True, default=str))


def _write_report(request: OnboardRequest, result: Any, started: float, batch: Path) -> dict[str, Any]:
    from resources.artifact_store import ArtifactStore

    store = ArtifactStore()
    registered = result.output_for_node("registered_model")
    report_handle = result.output_for_node("validation_report")
    exported = result.output_for_node("exported_model")
    full = json.loads(store.read_bytes(report_handle.json_artifact))
    package = store.path(exported.package)
    report = _summary(request, full, result, started, batch)
    report.update(
        registered=True,
        model_version=registered.version,
        exports={fmt: str(package / rel) for fmt, rel in exported.files.items()},
        parity=exported.parity,
        latency_ms=exported.latency_ms,
        int8_test_accuracy=exported.int8_test_accuracy,
        int8=exported.int8,
        report_html=str(store.path(report_handle.html_artifact)),
        report_json_full=str(store.path(report_handle.json_artifact)),
    )
    if request.report_json:
        _write_json(request.report_json, report)
    return report
