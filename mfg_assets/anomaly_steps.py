"""The anomaly task's part of the shared assets: its recipe, its fit, its report and its package.

``hyperparameter_search``, ``trained_model``, ``validation_report`` and ``exported_model`` are one
graph for every task; where their work differs wholly (a detector is fitted on good images, not
trained; its report has maps and masks; its package outputs a map and a score), they call the
function here for a variant whose engine is anomaly detection (``resources.tasks.AnomalyEngine``).
What is shared (handles, lineage, report storage, the release and parity checks) stays in the
assets. The numerical work lives in ``resources.anomaly``; these functions are its Dagster glue.
"""

import hashlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dagster as dg
import numpy as np
import pandas as pd

from mfg_assets.common import blocking_check_result, record_lineage
from mfg_assets.datasets import load_dataset_items, load_split_images, split_groups
from mfg_assets.handle_store import store_handle
from mfg_assets.handles import AugmentedSet, DatasetVersion, ExportedModel, TrainedModel, TrainingRecipe, ValidationReport
from resources.anomaly.feature_source import feature_source_hashes, resolve_feature_source
from resources.artifact_store import ArtifactStore
from resources.lineage import LineageStore
from resources.registry import ModelRegistry
from resources.storage.code_version import code_version
from resources.storage.scratch import scratch_dir
from resources.trainers import AnomalyTrainer

if TYPE_CHECKING:
    from mfg_assets.export import ExportConfig
    from mfg_assets.search import RecipeConfig
    from mfg_assets.validation import ValidationConfig

__all__ = ["anomaly_export", "anomaly_recipe", "anomaly_report", "fit_anomaly_model", "split_masks"]

_PARITY_IMAGES = 16


def anomaly_recipe(
    context: dg.AssetExecutionContext,
    config: "RecipeConfig",
    dataset: DatasetVersion,
    augmented: AugmentedSet,
    registry: ModelRegistry,
    store: ArtifactStore,
    lineage: LineageStore,
) -> dg.Output[TrainingRecipe]:
    """The detector's settings: the defaults, the feature source and ``config.anomaly`` overrides.

    The features come from a bundled backbone (``--backbone``), a local weights file (``--arch`` and
    ``--pretrained-weights``, e.g. a WideResNet-50) or the body of a classifier the plant registered
    for another variant (``--init-from``); the source is built once here, so a missing file or a
    foreign architecture fails before any image is embedded."""
    from pydantic import ValidationError

    from resources.anomaly.detector import GRAPH_OWNED_SETTINGS, AnomalyError, AnomalySettings, check_backbone
    from resources.classify.backbones import BackboneError
    from resources.classify.model_init import WeightsError

    if config.hpo_trials > 0 or config.hpo_minutes is not None:
        raise dg.Failure(
            "--hpo-trials / --hpo-minutes: not available for the anomaly task in this release (the detector is fitted, "
            "not trained); set detector settings with RecipeConfig.anomaly"
        )
    for fixed in GRAPH_OWNED_SETTINGS:
        if fixed in config.anomaly:
            raise dg.Failure(
                f"RecipeConfig.anomaly sets {fixed!r}; set it where every task sets it (--backbone, --arch, "
                "--pretrained-weights, --init-from, --image-size, AugmentConfig.resize, --seed), so the data and the "
                "detector agree"
            )
    try:
        source = resolve_feature_source(
            backbone=config.backbone,
            arch=config.arch,
            pretrained_weights=config.pretrained_weights,
            init_from=config.init_from,
            registry=registry,
            store=store,
        )
        settings = AnomalySettings.model_validate(
            {**source, **config.anomaly, "image_size": augmented.image_size, "resize": augmented.resize, "seed": config.seed}
        )
        provenance = check_backbone(settings)
    except (WeightsError, AnomalyError, BackboneError) as exc:
        raise dg.Failure(str(exc)) from exc
    except ValidationError as exc:
        raise dg.Failure(f"anomaly detector settings are invalid: {exc}") from exc
    dumped = settings.model_dump(mode="json")
    source_hashes = feature_source_hashes(provenance)
    body = json.dumps(
        {"dataset": dataset.id, "augmented_set": augmented.id, "settings": dumped, "feature_source": source_hashes},
        sort_keys=True,
    )
    recipe_id = f"recipe:{hashlib.sha256(body.encode()).hexdigest()}"
    record_lineage(
        context,
        lineage,
        output_id=recipe_id,
        input_ids=[augmented.id, dataset.id],
        parameters={"settings": dumped, "searched": False, "search": None, "task": "anomaly", "init_from": config.init_from},
        input_hashes=source_hashes,
    )
    handle = TrainingRecipe(
        id=recipe_id,
        dataset_id=dataset.id,
        augmented_set_id=augmented.id,
        settings=dumped,
        searched=False,
        search=None,
        best_checkpoint=None,
        best_history=None,
        best_epoch=None,
        plots={},
        init_from=config.init_from,
    )
    return dg.Output(
        handle,
        metadata={
            "recipe_id": recipe_id,
            "searched": False,
            "settings": dg.MetadataValue.json(dumped),
            "feature_source": dg.MetadataValue.json(provenance),
        },
    )


def fit_anomaly_model(
    context: dg.AssetExecutionContext,
    dataset: DatasetVersion,
    augmented: AugmentedSet,
    recipe: TrainingRecipe,
    trainer: AnomalyTrainer,
    store: ArtifactStore,
    lineage: LineageStore,
) -> dg.Output[TrainedModel]:
    """The detector fitted on the training split's good images (the split holds nothing else)."""
    from mfg_assets.augment import load_augmented_arrays
    from resources.anomaly.detector import AnomalyError, AnomalySettings

    settings = AnomalySettings.model_validate(recipe.settings)
    arrays = load_augmented_arrays(store, augmented)
    images, labels = arrays["train_images"], arrays["train_labels"]
    good_index = list(dataset.classes).index(dataset.good_class)
    if (labels != good_index).any():
        raise dg.Failure(
            f"dataset {dataset.id}: {int((labels != good_index).sum())} training images are not {dataset.good_class!r}; "
            "an anomaly variant's split keeps defects out of train: re-materialize dataset_version"
        )
    context.log.info(f"fitting the {settings.backbone_label()} PatchCore detector on {len(images)} good images at {settings.image_size} px")
    try:
        result = trainer.fit(images, settings)
    except AnomalyError as exc:
        raise dg.Failure(str(exc)) from exc
    named = _named_training_images(lineage, dataset, result.suspicious_training_images, len(images))
    flagged = [entry for entry in named if entry.get("flagged")]
    if flagged:
        context.log.warning(
            f"{len(flagged)} training image(s) score like defects among the good ones (robust z > 5): "
            f"{', '.join(e.get('rel_path', str(e['index'])) for e in flagged[:5])}"
            f"{' and more' if len(flagged) > 5 else ''}; check them for defects, withdraw or relabel them, and refit"
        )
    checkpoint = store.put_bytes(result.checkpoint, kind="checkpoints", suffix=".pt")
    model_id = f"model:{checkpoint.sha256}"
    init = dict(result.backbone)
    record_lineage(
        context,
        lineage,
        output_id=model_id,
        input_ids=[recipe.id, augmented.id, dataset.id],
        parameters={**settings.model_dump(mode="json"), "init": init, "bank_size": result.bank_size},
        input_hashes={
            augmented.id: augmented.artifact.sha256,
            **feature_source_hashes(init),
        },
    )
    fit = {
        "n_images": result.n_images,
        "n_patches": result.n_patches,
        "bank_size": result.bank_size,
        "fit_seconds": result.fit_seconds,
        "contamination_check": result.contamination_check,
        "suspicious_training_images": named,
    }
    handle = TrainedModel(
        id=model_id,
        dataset_id=dataset.id,
        augmented_set_id=augmented.id,
        checkpoint=checkpoint,
        arch=f"patchcore/{settings.backbone_label()}",
        classes=dataset.classes,
        image_size=settings.image_size,
        resize=settings.resize,
        recipe_id=recipe.id,
        init=init,
        train_seconds=result.fit_seconds,
        best_epoch=0,
        settings={**settings.model_dump(mode="json"), "fit": fit},
        history=(),
    )
    return dg.Output(
        handle,
        metadata={
            "model_id": model_id,
            "train_seconds": round(result.fit_seconds, 2),
            "bank_size": result.bank_size,
            "n_patches": result.n_patches,
            "n_training_images": result.n_images,
            "flagged_training_images": len(flagged),
            "suspicious_training_images": dg.MetadataValue.json(named),
            "init": dg.MetadataValue.json(init),
            "checkpoint_bytes": checkpoint.n_bytes,
        },
    )


def split_masks(
    lineage: LineageStore, store: ArtifactStore, dataset: DatasetVersion, rows: pd.DataFrame, size: int, resize: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(masks bool N×S×S, which rows have a mask, content region N×S×S) for a split's rows."""
    from mfg_assets.annotations import load_label_masks
    from mfg_assets.ingest import load_image_table
    from resources.anomaly.layout import content_region, fit_mask

    table = load_label_masks(lineage, dataset.annotation_set_id) if dataset.annotation_set_id else pd.DataFrame()
    by_image = {} if table.empty else table.drop_duplicates("image_sha256").set_index("image_sha256").to_dict("index")
    sizes = load_image_table(lineage, dataset.partition).drop_duplicates("sha256").set_index("sha256")[["width", "height"]]
    masks = np.zeros((len(rows), size, size), dtype=bool)
    valid = np.zeros((len(rows), size, size), dtype=bool)
    has_mask = np.zeros(len(rows), dtype=bool)
    for index, sha in enumerate(rows["sha256"]):
        width, height = (int(v) for v in sizes.loc[sha])
        valid[index] = content_region(width, height, size, resize)
        if sha in by_image:
            masks[index] = fit_mask(store.path(by_image[sha]["mask_artifact"]), (width, height), size, resize)
            has_mask[index] = True
    return masks, has_mask, valid


def _named_training_images(lineage: LineageStore, dataset: DatasetVersion, entries: list[dict], n_images: int) -> list[dict]:
    """The detector's suspicious training images with the file each is (``rel_path``, ``artifact``):
    the fit's images are the train split's rows in ``load_split_images`` order (no augmented copies
    for this task), so position ``index`` is row ``index``."""
    rows = load_dataset_items(lineage, dataset.id)
    rows = rows[rows["split"] == "train"].reset_index(drop=True)
    if len(rows) != n_images:  # not the rows the fit saw: name nothing rather than the wrong file
        return list(entries)
    return [
        {**entry, "rel_path": f"{rows.at[entry['index'], 'batch']}/{rows.at[entry['index'], 'rel_path']}",
         "artifact": str(rows.at[entry["index"], "artifact"])}
        for entry in entries
    ]


def anomaly_report(
    context: dg.AssetExecutionContext,
    config: "ValidationConfig",
    model: TrainedModel,
    dataset: DatasetVersion,
    trainer: AnomalyTrainer,
    store: ArtifactStore,
    lineage: LineageStore,
) -> tuple[dict[str, Any], list[np.ndarray], pd.DataFrame]:
    """(the report, the gallery's overlay images, the test rows): threshold from validation, figures on test."""
    from mfg_assets.validation import report_frame
    from resources.anomaly.calibration import choose_threshold
    from resources.anomaly.evaluation import anomaly_split_section, map_overlay, worst_anomaly_errors

    size, resize = model.image_size, model.resize
    classes, good = list(dataset.classes), str(dataset.good_class)
    val_images, val_labels, val_rows = load_split_images(lineage, store, dataset, "val", size, resize)
    test_images, test_labels, test_rows = load_split_images(lineage, store, dataset, "test", size, resize)
    checkpoint = store.read_bytes(model.checkpoint)
    _, val_scores = trainer.score(checkpoint, val_images, keep_maps=False)
    test_maps, test_scores = trainer.score(checkpoint, test_images, keep_maps=True)
    val_defect = val_labels != classes.index(good)
    val_groups = split_groups(val_rows)
    try:
        chosen = choose_threshold(
            val_scores, val_defect, target_false_reject_rate=config.target_false_reject_rate, groups=val_groups
        )
    except ValueError as exc:
        raise dg.Failure(f"threshold calibration: {exc}") from exc
    threshold = float(chosen.calibration.threshold)
    masks, has_mask, valid = split_masks(lineage, store, dataset, test_rows, size, resize)
    test = anomaly_split_section(
        y_true=test_labels, scores=test_scores, classes=classes, good_class=good, threshold=threshold,
        maps=test_maps, masks=masks, has_mask=has_mask, valid=valid, groups=split_groups(test_rows),
    )
    val = anomaly_split_section(
        y_true=val_labels, scores=val_scores, classes=classes, good_class=good, threshold=threshold, groups=val_groups
    )
    errors = worst_anomaly_errors(test_labels, test_scores, classes, good, threshold, k=config.gallery_size)
    good_test = test_labels == classes.index(good)
    floor = float(np.median(test_maps[good_test])) if good_test.any() else 0.0  # where good parts' maps sit
    gallery = [
        map_overlay(
            test_images[e["index"]], test_maps[e["index"]], threshold, floor, masks[e["index"]] if has_mask[e["index"]] else None
        )
        for e in errors
    ]
    notes = [
        f"Threshold rule: {chosen.rule} ({chosen.calibration.method}).",
        "Gallery: anomaly maps in red over the image (none at the good test parts' median map value, full at the "
        "threshold), true defect outlines in green.",
    ]
    report = report_frame(
        model=model,
        dataset=dataset,
        partition=dataset.partition,
        config=config,
        notes=notes,
        threshold=chosen.as_dict(),
        threshold_rule=chosen.rule,
        score_label="anomaly score (the detector's distance to good parts)",
        val=val,
        test=test,
        worst_errors=errors,
        training={
            "settings": {k: v for k, v in model.settings.items() if k != "fit"},
            "fit": dict(model.settings.get("fit") or {}),
        },
    )
    context.log.info(
        f"anomaly test: image AUROC {test['image_auroc']}, pixel AUROC {test['pixel_auroc']}, PRO {test['pro']}, "
        f"threshold {threshold:.6g} ({chosen.rule})"
    )
    return report, gallery, test_rows


def anomaly_export(
    context: dg.AssetExecutionContext,
    config: "ExportConfig",
    model: TrainedModel,
    report: ValidationReport,
    dataset: DatasetVersion,
    store: ArtifactStore,
    lineage: LineageStore,
    num_threads: int,
) -> Iterator[dg.Output[ExportedModel] | dg.AssetCheckResult]:
    """The detector as one ONNX and one OpenVINO graph (map + score), parity-checked; no INT8 yet."""
    from resources.anomaly.detector import load_detector
    from resources.anomaly.package import INT8_NOTE, build_detector_package

    net = load_detector(store.read_bytes(model.checkpoint))
    size, resize = model.image_size, model.resize
    test_images, _, _ = load_split_images(lineage, store, dataset, "test", size, resize)
    manifest = {
        "task": "anomaly",
        "model_id": model.id,
        "dataset_version": dataset.id,
        "classes": list(model.classes),
        "good_class": dataset.good_class,
        "threshold": report.threshold,
        "input": {"name": "images", "layout": "NCHW", "dtype": "float32", "range": [0, 255], "channels": "RGB", "height": size, "width": size, "resize": resize},
        "output": {"names": ["anomaly_map", "score"], "decision": "reject when score >= threshold"},
        "code_version": code_version(),
    }
    with scratch_dir(store.root_path(), "export") as tmp:
        build = build_detector_package(
            net, tmp, parity_images=test_images[:_PARITY_IMAGES], threshold=report.threshold, manifest=manifest, num_threads=num_threads
        )
        stored = store.put_tree(tmp, kind="packages")
    export_id = f"export:{stored.sha256}"
    record_lineage(
        context,
        lineage,
        output_id=export_id,
        input_ids=[model.id, report.id],
        parameters={**config.model_dump(), "task": "anomaly", "int8": False},
        input_hashes={model.id: model.checkpoint.sha256},
    )
    summary = build.parity_summary()
    handle = ExportedModel(
        id=export_id,
        model_id=model.id,
        package=stored,
        files=build.files,
        file_sha256=build.file_sha256,
        input_size=size,
        resize=resize,
        parity_passed=build.parity_passed,
        parity=summary,
        latency_ms=build.latency_ms,
        int8_test_accuracy=None,
        int8=None,
    )
    store_handle(lineage, handle, context.partition_key)
    shown = ", ".join(f"{fmt} {ms:.1f}" for fmt, ms in build.latency_ms.items() if isinstance(ms, int | float))
    context.log.info(f"exported {', '.join(build.files)} to {store.path(stored)}; ms per image: {shown}")
    yield dg.Output(
        handle,
        metadata={
            "export_id": export_id,
            "package": dg.MetadataValue.path(str(store.path(stored))),
            "parity_max_relative_diff": summary["max_relative_diff"],
            **{f"latency_ms_{k}": float(v) for k, v in build.latency_ms.items()},
            "int8": INT8_NOTE,
        },
    )
    failed = [p for p in build.parity if not p.passed]
    yield blocking_check_result(
        "exported_model",
        "exports_match_trained_model",
        passed=not failed,
        description=(
            f"ONNX Runtime and OpenVINO reproduce the detector's maps and scores within {summary['tolerance']:g} of the "
            f"largest score on {min(_PARITY_IMAGES, len(test_images))} test images, and decide alike at the threshold"
            if not failed
            else "; ".join(
                f"{p.format}: relative difference {p.relative_difference:.2e}, {p.decisions_differing} decision(s) differ"
                for p in failed
            )
            + " — do not deploy: re-export from the same checkpoint and check the runtime runs in FP32"
        ),
        metadata={"max_relative_diff": summary["max_relative_diff"]},
    )
    yield dg.AssetCheckResult(
        asset_key="exported_model", check_name="int8_keeps_accuracy", passed=True, description=INT8_NOTE
    )
