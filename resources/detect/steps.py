"""The detection engine's steps: recipe, fit, report sections and package.

Every step works in the model's input space: the dataset's images fitted to ``image_size`` the way
the device fits camera images (letterbox or squash, ``edge_sync.contract.imaging``), with the label
boxes moved by the same transform. So what the report measures is what the device will see, and the
exported graph's boxes need no conversion on the line.
"""

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from resources.detect.yolo_errors import DetectorConfigError
from resources.engine_io import EngineMachine, Evaluation, FitOutcome, ModelRecord, RecipeOutcome, RecipeRecord, TaskData

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_MODEL",
    "check_detector_options",
    "defect_classes",
    "detector_recipe",
    "evaluate_detector",
    "fit_detector",
    "input_boxes",
]

DEFAULT_EPOCHS = 11
"""Epochs when --epochs is not given: NEU-DET's 1,079 training images at 192 px take 26 minutes for the
default detector on 2 CPU cores (BENCHMARKS.md), so the whole onboard stays near 30 minutes."""
DEFAULT_MODEL = "mobilenetv2-yolo26n"
"""The default detector, chosen from the NEU-DET figures (BENCHMARKS.md, 2026-12-07): the bundled ImageNet
body reached test mAP50 0.43 in 27 minutes where YOLO11n from scratch reached 0.30 in 12 (and 0.27 on
validation at the point where the MobileNetV2 detector had 0.39)."""
SCORE_FLOOR = 1e-3
"""The lowest box score the detector reports (``predict_boxes``' conf); a threshold never goes below it."""
_TASK_SETTINGS = ("model", "batch", "patience", "optimizer", "lr0")
_NOT_FOR_DETECT = ("arch", "pretrained_weights", "init_from")


def defect_classes(classes: Sequence[str], good_class: str | None) -> tuple[str, ...]:
    """The classes boxes can have, in the variant's order: the device decoder's class ids index them."""
    return tuple(c for c in classes if c != good_class)


def _settings(options: Mapping[str, Any], image_size: int) -> dict[str, Any]:
    """DetectorSettings' fields from RecipeConfig's options (``task_settings`` for the detector's own)."""
    given = dict(options.get("task_settings") or {})
    unknown = sorted(set(given) - set(_TASK_SETTINGS))
    if unknown:
        raise DetectorConfigError(
            f"--task-settings {', '.join(unknown)}: not a detector setting; the detector takes {', '.join(_TASK_SETTINGS)} "
            "there, and --epochs, --image-size and --seed as every task does"
        )
    refused = [name for name in _NOT_FOR_DETECT if options.get(name)]
    if refused:
        raise DetectorConfigError(
            f"--{refused[0].replace('_', '-')}: not for --task detect in this release; choose the detector with "
            "--task-settings '{\"model\": \"yolo26n.yaml\"}' (or 'mobilenetv2-yolo26n' for the bundled ImageNet body)"
        )
    fields: dict[str, Any] = {
        "model": DEFAULT_MODEL,
        "epochs": options.get("epochs") or DEFAULT_EPOCHS,
        "image_size": image_size,
        "seed": int(options.get("seed") or 0),
        **given,
    }
    if options.get("learning_rate") and "lr0" not in given:
        fields["lr0"] = options["learning_rate"]
    return fields


def check_detector_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Refuse a detector that cannot be built (unknown model, a setting it lacks) before data lands."""
    from pydantic import ValidationError

    from resources.detect.yolo_train import DetectorSettings
    from resources.preflight import PreflightError

    try:
        DetectorSettings.model_validate(_settings(options, int(options.get("image_size") or 320)))
    except (DetectorConfigError, ValidationError) as exc:
        raise PreflightError(f"detector options are invalid: {exc}") from exc
    return {}


def detector_recipe(options: Mapping[str, Any], data: TaskData) -> RecipeOutcome:
    """The detector's settings, recorded as they will be trained (no search in this release)."""
    from pydantic import ValidationError

    from resources.detect.yolo_train import DetectorSettings

    try:
        settings = DetectorSettings.model_validate(_settings(options, data.augmented_size))
    except ValidationError as exc:
        raise DetectorConfigError(f"detector settings are invalid: {exc}") from exc
    dumped = {**settings.model_dump(mode="json", exclude={"num_threads", "device"}), "resize": data.augmented_resize}
    return RecipeOutcome(
        settings=dumped,
        id_fields={"settings": dumped},
        lineage_parameters={"settings": dumped, "searched": False, "search": None},
    )


def _training_boxes(group: "pd.DataFrame", columns: list[str]) -> "pd.DataFrame":
    """An image's boxes to learn from: the reviewers' consensus where several drew, else all (one reviewer)."""
    from resources.detect.agreement import CONSENSUS_REVIEWER

    agreed = group[group["reviewer"] == CONSENSUS_REVIEWER] if "reviewer" in group else group.iloc[0:0]
    chosen = agreed if not agreed.empty else group
    return chosen.drop_duplicates(["class_name", *columns])


def input_boxes(data: TaskData, rows: "pd.DataFrame", size: int, resize: str) -> list[np.ndarray]:
    """Per split row, its label boxes as (K, 5) float32 ``x_min, y_min, x_max, y_max, class_id`` in
    the fitted input's pixels (the letterbox or squash the device applies)."""
    from edge_sync.contract.imaging import letterbox_box

    names = defect_classes(data.classes, data.good_class)
    index = {name: i for i, name in enumerate(names)}
    table = data.geometry("label_boxes")
    columns = ["x_min", "y_min", "x_max", "y_max"]
    by_image = {sha: _training_boxes(group, columns) for sha, group in table.groupby("image_sha256")} if not table.empty else {}
    out = []
    for sha in rows["sha256"]:
        group = by_image.get(sha)
        if group is None or group.empty:
            out.append(np.zeros((0, 5), dtype=np.float32))
            continue
        width, height = float(group["image_width"].iloc[0]), float(group["image_height"].iloc[0])
        if resize == "squash":
            left, top, new_w, new_h = 0, 0, size, size
        else:
            left, top, new_w, new_h = letterbox_box(int(width), int(height), size, size)
        sx, sy = new_w / width, new_h / height
        boxes = np.stack(
            [
                left + group["x_min"].to_numpy(float) * sx,
                top + group["y_min"].to_numpy(float) * sy,
                left + group["x_max"].to_numpy(float) * sx,
                top + group["y_max"].to_numpy(float) * sy,
                group["class_name"].map(index).to_numpy(float),
            ],
            axis=1,
        )
        out.append(boxes.astype(np.float32))
    return out


def fit_detector(recipe: RecipeRecord, data: TaskData, machine: EngineMachine) -> FitOutcome:
    """Train the detector on the training split, choosing its best epoch on validation."""
    from resources.detect.yolo_data import write_yolo_dataset
    from resources.detect.yolo_train import DetectorSettings, train_detector
    from resources.storage.scratch import scratch_dir

    size, resize = int(recipe.settings["image_size"]), str(recipe.settings["resize"])
    settings = DetectorSettings.model_validate(
        {k: v for k, v in recipe.settings.items() if k != "resize"} | {"num_threads": machine.num_threads, "device": machine.device}
    )
    names = defect_classes(data.classes, data.good_class)
    splits = {}
    for split in ("train", "val"):
        part = data.split(split, size, resize)
        splits[split] = list(zip(part.images, input_boxes(data, part.rows, size, resize), strict=True))
    n_boxes = sum(len(boxes) for _, boxes in splits["train"])
    machine.log.info(
        f"training {settings.model} at {size} px on {len(splits['train'])} images ({n_boxes} boxes), "
        f"{len(splits['val'])} validation images, {len(names)} defect classes ({machine.device})"
    )

    def log_epoch(record: dict[str, float]) -> None:
        shown = ("train/box_loss", "train/cls_loss", "map50", "map50_95")  # the full record is in the model's history
        machine.log.info(
            f"epoch {int(record.get('epoch', 0))}/{settings.epochs}: "
            + " ".join(f"{k.removeprefix('train/')}={record[k]:.4f}" for k in shown if isinstance(record.get(k), float))
            + f" ({float(record.get('seconds', 0.0)):.0f}s)"
        )

    with scratch_dir(data.store.root_path(), "detect-train") as work:
        data_yaml = write_yolo_dataset(work / "data", splits, names)
        result = train_detector(data_yaml, work / "run", settings, on_epoch=log_epoch)
    init = {"source": "scratch", "model": result.model}
    if result.backbone is not None:
        init = {"source": "backbone", "model": result.model, **result.backbone.model_dump(mode="json")}
    dumped = dict(recipe.settings)
    history = tuple(dict(r) for r in result.history)
    best = history[result.best_epoch - 1] if history else {}
    return FitOutcome(
        arch=result.model,
        init=init,
        train_seconds=result.seconds,
        best_epoch=result.best_epoch,
        settings=dumped,
        history=history,
        lineage_parameters={**dumped, "init": init},
        metadata={
            "best_epoch": result.best_epoch,
            "val_map50": float(best.get("map50", float("nan"))),
            "val_map50_95": float(best.get("map50_95", float("nan"))),
            "history": list(history),
        },
        checkpoint_bytes=result.checkpoint,
        device=machine.device,
    )


def _section(
    data: TaskData, split: Any, boxes: list[np.ndarray], predictions: list[np.ndarray], threshold: float
) -> dict[str, Any]:
    """One split's figures: mAP per class and the image-level decision at ``threshold``."""
    from resources.detect.yolo_metrics import detection_metrics, image_defect_scores
    from resources.reporting.metrics import RATE_KEYS, decision_rates, roc_points

    classes, good = list(data.classes), str(data.good_class)
    scores = image_defect_scores(predictions)
    is_defect = split.labels != classes.index(good)
    maps = detection_metrics(predictions, [b for b in boxes], defect_classes(classes, good))
    decision = decision_rates(scores, is_defect, threshold, split.groups)
    rejected = scores >= threshold
    section = {
        "accuracy": float((rejected == is_defect).mean()) if len(scores) else None,
        "map50": _finite(maps["map50"]),
        "map50_95": _finite(maps["map50_95"]),
        "per_class_ap": {
            name: {k: _finite(v) if isinstance(v, float) else v for k, v in figures.items()}
            for name, figures in maps["per_class"].items()
        },
        "n_images": int(len(scores)),
        "n_defect": int(is_defect.sum()),
        "n_good": int((~is_defect).sum()),
        "n_boxes": int(sum(len(b) for b in boxes)),
        "decision": decision,
        "roc": roc_points(scores, is_defect),
        "defect_scores": [round(float(v), 6) for v in scores],
        "is_defect": [bool(v) for v in is_defect],
    }
    section.update({key: decision[key] for key in RATE_KEYS})
    return section


def _finite(value: Any) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 6)


def _calibrate(scores: np.ndarray, is_defect: np.ndarray, max_escape_rate: float, groups: Any) -> dict[str, Any]:
    """The operating threshold on validation: the shared rule (highest threshold whose escapes stay
    within the budget, so the fewest false rejects) where validation has good and defective images;
    with defective images only (a dataset without box-free images, e.g. NEU-DET), the highest
    threshold within the budget, its false-reject rate unmeasured. Never below :data:`SCORE_FLOOR`:
    the rates are then measured again at the threshold that is used."""
    from resources.reporting.metrics import calibrate_threshold, decision_rates

    n_defect, n_good = int(is_defect.sum()), int((~is_defect).sum())
    if n_defect == 0:
        raise DetectorConfigError(
            f"threshold calibration: the validation split holds {n_good} images and none with a defect box; add "
            "labelled defect images (a few of each class) so the threshold can be set"
        )
    if n_good:
        calibration = asdict(calibrate_threshold(scores, is_defect, max_escape_rate=max_escape_rate))
    else:
        ranked = np.sort(scores[is_defect])
        allowed = int(np.floor(max_escape_rate * n_defect + 1e-9))
        calibration = {
            "threshold": float(ranked[min(allowed, n_defect - 1)]),
            "escape_rate": None,
            "false_reject_rate": None,
            "max_escape_rate": max_escape_rate,
            "n_good": 0,
            "n_defect": n_defect,
            "method": "defect images only (validation has no box-free image): the highest threshold whose escapes stay "
            "within the budget; the false-reject rate is not measured",
        }
    if calibration["threshold"] < SCORE_FLOOR:
        calibration["method"] += (
            f"; raised from {calibration['threshold']:.3g} to {SCORE_FLOOR}, the lowest score the detector reports "
            "(an image with no box at all passes)"
        )
        calibration["threshold"] = SCORE_FLOOR
    rates = decision_rates(scores, is_defect, calibration["threshold"], groups)
    calibration["escape_rate"], calibration["false_reject_rate"] = rates["escape_rate"], rates["false_reject_rate"]
    return calibration


def evaluate_detector(model: ModelRecord, data: TaskData, config: Any, machine: EngineMachine) -> Evaluation:
    """Boxes on validation and test; the image-level threshold from validation (zero escapes unless
    an escape budget is set), mAP and the decision rates on both."""
    from resources.detect.gallery import draw_boxes
    from resources.detect.yolo_metrics import image_defect_scores
    from resources.detect.yolo_predict import load_detector, predict_boxes
    from resources.reporting.decisions import worst_decisions

    size, resize = model.image_size, model.resize
    detector = load_detector(data.store.read_bytes(model.checkpoint))
    val, test = data.split("val", size, resize), data.split("test", size, resize)
    val_pred, test_pred = predict_boxes(detector, val.images), predict_boxes(detector, test.images)
    val_boxes, test_boxes = input_boxes(data, val.rows, size, resize), input_boxes(data, test.rows, size, resize)
    classes, good = list(data.classes), str(data.good_class)
    val_scores = image_defect_scores(val_pred)
    calibration = _calibrate(val_scores, val.labels != classes.index(good), config.max_escape_rate, val.groups)
    notes = [
        "An image is rejected when any defect box scores at or over the threshold; its defect score is its highest "
        "box score. mAP is COCO's (faster-coco-eval), in the model's input pixels.",
        "Gallery: label boxes in green, the model's boxes at or over the threshold in red.",
        f"Threshold: {calibration['method']}.",
    ]
    threshold = float(calibration["threshold"])
    test_section = _section(data, test, test_boxes, test_pred, threshold)
    errors = worst_decisions(test.labels, image_defect_scores(test_pred), classes, good, threshold, k=config.gallery_size)
    gallery = [draw_boxes(test.images[e["index"]], test_boxes[e["index"]], test_pred[e["index"]], threshold) for e in errors]
    machine.log.info(
        f"detection test: mAP50 {test_section['map50']}, mAP50-95 {test_section['map50_95']}, threshold {threshold:.4g}"
    )
    return Evaluation(
        sections={
            "threshold": calibration,
            "threshold_rule": "zero_escapes" if not config.max_escape_rate else "escape_budget",
            "score_label": "defect score (the highest box score of the image)",
            "val": _section(data, val, val_boxes, val_pred, threshold),
            "test": test_section,
            "worst_errors": errors,
        },
        notes=notes,
        training={"settings": model.settings, "best_epoch": model.best_epoch, "history": list(model.history)},
        gallery=gallery,
        test_rows=test.rows,
    )
