"""The anomaly engine's steps: its recipe, its fit, its report sections, its package, its device fields.

The numerical work lives in this package's other modules (``detector``, ``evaluation``,
``calibration``, ``package``); these functions put it into the engine's outcome types
(``resources.engine_io``) for the shared assets to store, record and check.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from resources.engine_io import EngineMachine, Evaluation, ExportOutcome, FitOutcome, ModelRecord, RecipeOutcome, RecipeRecord, TaskData
from resources.errors import MfgVisionError

__all__ = ["detector_evaluation", "detector_package", "detector_recipe", "fit_on_good_parts"]

_PARITY_IMAGES = 16


class DetectorStepError(MfgVisionError, ValueError):
    """A step of the detector cannot go on with this data or these settings; the message says why."""


def detector_recipe(options: Mapping[str, Any], data: TaskData) -> RecipeOutcome:
    """The detector's settings: the defaults, the feature source and ``task_settings`` overrides.

    The features come from a bundled backbone (``backbone``), a local weights file (``arch`` and
    ``pretrained_weights``, e.g. a WideResNet-50) or the body of a classifier the plant registered
    for another variant (``init_from``); the source is built once here, so a missing file or a
    foreign architecture fails before any image is embedded."""
    from pydantic import ValidationError

    from resources.anomaly.detector import GRAPH_OWNED_SETTINGS, AnomalySettings, check_backbone
    from resources.anomaly.feature_source import feature_source_hashes, resolve_feature_source

    overrides = dict(options.get("task_settings") or {})
    for fixed in GRAPH_OWNED_SETTINGS:
        if fixed in overrides:
            raise DetectorStepError(
                f"RecipeConfig.task_settings sets {fixed!r}; set it where every task sets it (--backbone, --arch, "
                "--pretrained-weights, --init-from, --image-size, AugmentConfig.resize, --seed), so the data and the "
                "detector agree"
            )
    source = resolve_feature_source(
        backbone=options["backbone"],
        arch=options.get("arch"),
        pretrained_weights=options.get("pretrained_weights"),
        init_from=options.get("init_from"),
        registry=data.registry,
        store=data.store,
    )
    try:
        settings = AnomalySettings.model_validate(
            {**source, **overrides, "image_size": data.augmented_size, "resize": data.augmented_resize, "seed": options["seed"]}
        )
    except ValidationError as exc:
        raise DetectorStepError(f"anomaly detector settings are invalid: {exc}") from exc
    provenance = check_backbone(settings)
    dumped = settings.model_dump(mode="json")
    source_hashes = feature_source_hashes(provenance)
    return RecipeOutcome(
        settings=dumped,
        id_fields={"settings": dumped, "feature_source": source_hashes},
        lineage_parameters={
            "settings": dumped, "searched": False, "search": None, "task": "anomaly", "init_from": options.get("init_from")
        },
        input_hashes=source_hashes,
        metadata={"feature_source": provenance},
        init_from=options.get("init_from"),
    )


def fit_on_good_parts(recipe: RecipeRecord, data: TaskData, machine: EngineMachine) -> FitOutcome:
    """The detector fitted on the training split's good images (the split holds nothing else)."""
    from resources.anomaly.detector import AnomalySettings, fit_detector
    from resources.anomaly.feature_source import feature_source_hashes

    settings = AnomalySettings.model_validate(recipe.settings)
    arrays = data.augmented_arrays()
    images, labels = arrays["train_images"], arrays["train_labels"]
    good_index = list(data.classes).index(str(data.good_class))
    if (labels != good_index).any():
        raise DetectorStepError(
            f"dataset {data.dataset_id}: {int((labels != good_index).sum())} training images are not {data.good_class!r}; "
            "an anomaly variant's split keeps defects out of train: re-materialize dataset_version"
        )
    machine.log.info(
        f"fitting the {settings.backbone_label()} PatchCore detector on {len(images)} good images at {settings.image_size} px"
        + ("" if machine.device == "cpu" else " (on the CPU: the detector's fit does not use a GPU in this release)")
    )
    result = fit_detector(images, settings.model_copy(update={"num_threads": machine.num_threads}))
    named = _named_training_images(data, result.suspicious_training_images, len(images))
    flagged = [entry for entry in named if entry.get("flagged")]
    if flagged:
        machine.log.warning(
            f"{len(flagged)} training image(s) score like defects among the good ones (robust z > 5): "
            f"{', '.join(e.get('rel_path', str(e['index'])) for e in flagged[:5])}"
            f"{' and more' if len(flagged) > 5 else ''}; check them for defects, withdraw or relabel them, and refit"
        )
    init = dict(result.backbone)
    fit = {
        "n_images": result.n_images,
        "n_patches": result.n_patches,
        "bank_size": result.bank_size,
        "fit_seconds": result.fit_seconds,
        "contamination_check": result.contamination_check,
        "suspicious_training_images": named,
    }
    return FitOutcome(
        arch=f"patchcore/{settings.backbone_label()}",
        init=init,
        train_seconds=result.fit_seconds,
        best_epoch=0,
        settings={**settings.model_dump(mode="json"), "fit": fit},
        history=(),
        lineage_parameters={**settings.model_dump(mode="json"), "init": init, "bank_size": result.bank_size},
        input_hashes=feature_source_hashes(init),
        metadata={
            "bank_size": result.bank_size,
            "n_patches": result.n_patches,
            "n_training_images": result.n_images,
            "flagged_training_images": len(flagged),
            "suspicious_training_images": named,
        },
        checkpoint_bytes=result.checkpoint,
        device="cpu",
    )


def _named_training_images(data: TaskData, entries: list[dict], n_images: int) -> list[dict]:
    """The detector's suspicious training images with the file each is (``rel_path``, ``artifact``):
    the fit's images are the train split's rows in split order (no augmented copies for this task),
    so position ``index`` is row ``index``."""
    rows = data.items()
    rows = rows[rows["split"] == "train"].reset_index(drop=True)
    if len(rows) != n_images:  # not the rows the fit saw: name nothing rather than the wrong file
        return list(entries)
    return [
        {**entry, "rel_path": f"{rows.at[entry['index'], 'batch']}/{rows.at[entry['index'], 'rel_path']}",
         "artifact": str(rows.at[entry["index"], "artifact"])}
        for entry in entries
    ]


def _score(machine: EngineMachine, checkpoint: bytes, images: np.ndarray, keep_maps: bool) -> tuple[np.ndarray | None, np.ndarray]:
    """Anomaly maps (or None) and image scores of a checkpoint's detector, with the machine's threads."""
    import torch

    from resources.anomaly.detector import load_detector, score_images

    previous = torch.get_num_threads()
    torch.set_num_threads(machine.num_threads)
    try:
        return score_images(load_detector(checkpoint), images, keep_maps=keep_maps)
    finally:
        torch.set_num_threads(previous)


def _split_masks(data: TaskData, rows: pd.DataFrame, size: int, resize: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(masks bool N×S×S, which rows have a mask, content region N×S×S) for a split's rows."""
    from resources.data.mask_files import content_region, fit_mask

    masks = np.zeros((len(rows), size, size), dtype=bool)
    valid = np.zeros((len(rows), size, size), dtype=bool)
    has_mask = np.zeros(len(rows), dtype=bool)
    for index, (mask_path, width, height) in enumerate(data.label_mask_files(rows)):
        valid[index] = content_region(width, height, size, resize)
        if mask_path is not None:
            masks[index] = fit_mask(mask_path, (width, height), size, resize)
            has_mask[index] = True
    return masks, has_mask, valid


def detector_evaluation(model: ModelRecord, data: TaskData, config: Any, machine: EngineMachine) -> Evaluation:
    """Threshold from validation (good-only fallback at ``config.target_false_reject_rate``), figures on test."""
    from resources.anomaly.calibration import choose_threshold
    from resources.anomaly.evaluation import anomaly_split_section, map_overlay, worst_anomaly_errors
    from resources.data.images import load_rgb

    size, resize = model.image_size, model.resize
    classes, good = list(data.classes), str(data.good_class)
    val = data.split("val", size, resize)
    test = data.split("test", size, resize)
    checkpoint = data.store.read_bytes(model.checkpoint)
    _, val_scores = _score(machine, checkpoint, val.images, keep_maps=False)
    test_maps, test_scores = _score(machine, checkpoint, test.images, keep_maps=True)
    assert test_maps is not None  # keep_maps=True
    val_defect = val.labels != classes.index(good)
    try:
        chosen = choose_threshold(
            val_scores, val_defect, target_false_reject_rate=config.target_false_reject_rate, groups=val.groups
        )
    except ValueError as exc:
        raise DetectorStepError(f"threshold calibration: {exc}") from exc
    threshold = float(chosen.calibration.threshold)
    masks, has_mask, valid = _split_masks(data, test.rows, size, resize)
    test_section = anomaly_split_section(
        y_true=test.labels, scores=test_scores, classes=classes, good_class=good, threshold=threshold,
        maps=test_maps, masks=masks, has_mask=has_mask, valid=valid, groups=test.groups,
    )
    val_section = anomaly_split_section(
        y_true=val.labels, scores=val_scores, classes=classes, good_class=good, threshold=threshold, groups=val.groups
    )
    errors = worst_anomaly_errors(test.labels, test_scores, classes, good, threshold, k=config.gallery_size)
    good_test = test.labels == classes.index(good)
    floor = float(np.median(test_maps[good_test])) if good_test.any() else 0.0  # where good parts' maps sit
    gallery = [
        map_overlay(
            test.images[e["index"]], test_maps[e["index"]], threshold, floor, masks[e["index"]] if has_mask[e["index"]] else None
        )
        for e in errors
    ]
    machine.log.info(
        f"anomaly test: image AUROC {test_section['image_auroc']}, pixel AUROC {test_section['pixel_auroc']}, "
        f"PRO {test_section['pro']}, threshold {threshold:.6g} ({chosen.rule})"
    )
    fit = dict(model.settings.get("fit") or {})
    return Evaluation(
        sections={
            "threshold": chosen.as_dict(),
            "threshold_rule": chosen.rule,
            "score_label": "anomaly score (the detector's distance to good parts)",
            "val": val_section,
            "test": test_section,
            "worst_errors": errors,
        },
        notes=[
            f"Threshold rule: {chosen.rule} ({chosen.calibration.method}).",
            "Gallery: anomaly maps in red over the image (none at the good test parts' median map value, full at the "
            "threshold), true defect outlines in green.",
        ],
        training={"settings": {k: v for k, v in model.settings.items() if k != "fit"}, "fit": fit},
        gallery=gallery,
        test_rows=test.rows,
        suspicious_images=[
            load_rgb(data.store.path(entry["artifact"]))
            for entry in fit.get("suspicious_training_images") or []
            if entry.get("flagged") and entry.get("artifact")
        ],
    )


def detector_package(
    model: ModelRecord,
    threshold: float | None,
    data: TaskData,
    out_dir: Path,
    package_manifest: dict[str, Any],
    machine: EngineMachine,
) -> ExportOutcome:
    """The detector as one ONNX and one OpenVINO graph (map + score), parity-checked; no INT8 yet."""
    from resources.anomaly.detector import load_detector
    from resources.anomaly.package import INT8_NOTE, build_detector_package

    net = load_detector(data.store.read_bytes(model.checkpoint))
    test_images = data.split("test", model.image_size, model.resize).images
    manifest = {
        "task": "anomaly",
        **package_manifest,
        "output": {"names": ["anomaly_map", "score"], "decision": "reject when score >= threshold"},
    }
    build = build_detector_package(
        net, out_dir, parity_images=test_images[:_PARITY_IMAGES], threshold=threshold, manifest=manifest,
        num_threads=machine.num_threads,
    )
    summary = build.parity_summary()
    failed = [p for p in build.parity if not p.passed]
    description = (
        f"ONNX Runtime and OpenVINO reproduce the detector's maps and scores within {summary['tolerance']:g} of the "
        f"largest score on {min(_PARITY_IMAGES, len(test_images))} test images, and decide alike at the threshold"
        if not failed
        else "; ".join(
            f"{p.format}: relative difference {p.relative_difference:.2e}, {p.decisions_differing} decision(s) differ"
            for p in failed
        )
        + " — do not deploy: re-export from the same checkpoint and check the runtime runs in FP32"
    )
    return ExportOutcome(
        files=build.files,
        file_sha256=build.file_sha256,
        parity_passed=build.parity_passed,
        parity=summary,
        parity_description=description,
        parity_metadata={"max_relative_diff": summary["max_relative_diff"]},
        latency_ms=build.latency_ms,
        int8_note=INT8_NOTE,
        metadata={"parity_max_relative_diff": summary["max_relative_diff"], "int8": INT8_NOTE},
        lineage_parameters={"task": "anomaly", "int8": False},
    )
