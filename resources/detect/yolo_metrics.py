"""Detection metrics: COCO mAP per class through faster-coco-eval, and the image-level defect score.

Why faster-coco-eval (1.8.0): it is the COCO evaluation (same matching, 101-point interpolated
precision, crowd and area rules) reimplemented in C++, maintained, a single wheel with only numpy as
dependency, and ultralytics' own choice for COCO-style numbers. Its figures are therefore comparable
with published mAP50 / mAP50-95, unlike ultralytics' trainer metrics (its own interpolation).

Conventions: predictions are what :func:`resources.detect.yolo_predict.predict_boxes` returns, one
(K, 6) ``x_min, y_min, x_max, y_max, score, class_id`` array per image; ground truth is a
:class:`BoxSet` in the same image order or one (K, 5) ``x_min, y_min, x_max, y_max, class_id`` array
per image, all in the same pixels. COCO's ``maxDets`` is raised from 100 to the largest number of
predictions on one image, so no prediction the device would see is ignored. A class without any
ground-truth box has no AP (NaN) and is left out of the means, as in COCO; a class with boxes and no
correct prediction has AP 0.

Image-level defect score: every class is a defect, so an image's score is its highest box score and
an image without a box scores 0 (a good part). Thresholding it gives the accept/reject decision the
platform's shared calibration (false-reject rate, escape rate) works on.
"""

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from resources.detect.boxes import BoxSet
from resources.detect.yolo_errors import DetectorDataError

__all__ = ["detection_metrics", "image_defect_scores", "image_has_defect"]


def detection_metrics(
    predictions: Sequence[np.ndarray],
    ground_truth: BoxSet | Sequence[np.ndarray],
    class_names: Sequence[str],
) -> dict[str, Any]:
    """``{"map50", "map50_95", "per_class": {name: {"ap50", "ap50_95", "n_boxes"}}, "n_images", "n_boxes",
    "n_predictions"}``; mAPs are means over the classes that have ground-truth boxes (NaN if none has)."""
    from faster_coco_eval import COCO, COCOeval_faster

    names = tuple(class_names)
    truth = _truth_arrays(ground_truth, names)
    if len(predictions) != len(truth):
        raise DetectorDataError(f"{len(predictions)} prediction arrays for {len(truth)} ground-truth images; "
                                "pass one array per image, in the same order")
    preds = [_prediction_array(p, n, len(names)) for n, p in enumerate(predictions)]
    sizes = _image_sizes(ground_truth, truth, preds)
    gt = {
        "images": [{"id": n + 1, "width": w, "height": h} for n, (w, h) in enumerate(sizes)],
        "annotations": [
            {"id": k + 1, "image_id": image_id, "category_id": int(box[4]) + 1, "bbox": _xywh(box),
             "area": float(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)), "iscrowd": 0}
            for k, (image_id, box) in enumerate((n + 1, box) for n, boxes in enumerate(truth) for box in boxes)
        ],
        "categories": [{"id": c + 1, "name": name} for c, name in enumerate(names)],
    }
    detections = [
        {"image_id": n + 1, "category_id": int(box[5]) + 1, "bbox": _xywh(box), "score": float(box[4])}
        for n, boxes in enumerate(preds) for box in boxes
    ]
    counts = np.bincount(np.concatenate([t[:, 4].astype(int) for t in truth] or [np.zeros(0, int)]),
                         minlength=len(names))
    precision = np.full((10, 101, len(names)), -1.0)
    if detections and gt["annotations"]:
        coco_gt = COCO(gt)
        evaluation = COCOeval_faster(coco_gt, coco_gt.loadRes(detections), "bbox", print_function=lambda *_: None)
        evaluation.params.maxDets = [1, 10, max(100, max(len(p) for p in preds))]
        evaluation.evaluate()
        evaluation.accumulate()
        precision = np.asarray(evaluation.eval["precision"])[:, :, :, 0, -1]  # all areas, most detections
    per_class: dict[str, dict[str, float | int]] = {}
    for c, name in enumerate(names):
        if counts[c] == 0:
            per_class[name] = {"ap50": math.nan, "ap50_95": math.nan, "n_boxes": 0}
            continue
        curve = np.where(precision[:, :, c] < 0, 0.0, precision[:, :, c])  # -1: no prediction of a class with boxes
        per_class[name] = {"ap50": float(curve[0].mean()), "ap50_95": float(curve.mean()), "n_boxes": int(counts[c])}
    present = [v for v in per_class.values() if v["n_boxes"]]
    return {
        "map50": float(np.mean([v["ap50"] for v in present])) if present else math.nan,
        "map50_95": float(np.mean([v["ap50_95"] for v in present])) if present else math.nan,
        "per_class": per_class,
        "n_images": len(truth),
        "n_boxes": int(counts.sum()),
        "n_predictions": int(sum(len(p) for p in preds)),
    }


def image_defect_scores(predictions: Sequence[np.ndarray]) -> np.ndarray:
    """Per image, the highest box score (any class is a defect); 0.0 for an image without a box."""
    return np.array([float(np.asarray(p)[:, 4].max()) if len(p) else 0.0 for p in predictions], dtype=np.float64)


def image_has_defect(ground_truth: BoxSet | Sequence[np.ndarray]) -> np.ndarray:
    """Per image, whether it has at least one ground-truth box (the label the defect score predicts)."""
    if isinstance(ground_truth, BoxSet):
        return np.array([bool(ground_truth.boxes_for(info.path)) for info in ground_truth.images])
    return np.array([len(np.asarray(t)) > 0 for t in ground_truth])


def _truth_arrays(ground_truth: BoxSet | Sequence[np.ndarray], names: tuple[str, ...]) -> list[np.ndarray]:
    if isinstance(ground_truth, BoxSet):
        arrays = []
        for info in ground_truth.images:
            rows = []
            for box in ground_truth.boxes_for(info.path):
                if box.class_name not in names:
                    raise DetectorDataError(f"{box.where}: class {box.class_name!r} is not in class_names {list(names)}")
                rows.append([box.x_min, box.y_min, box.x_max, box.y_max, names.index(box.class_name)])
            arrays.append(np.asarray(rows, dtype=np.float64).reshape(-1, 5))
        return arrays
    arrays = []
    for n, raw in enumerate(ground_truth):
        array = np.asarray(raw, dtype=np.float64)
        array = array.reshape(0, 5) if array.size == 0 else array
        if array.ndim != 2 or array.shape[1] != 5:
            raise DetectorDataError(f"ground truth of image {n}: expected (K, 5) x_min, y_min, x_max, y_max, class_id; "
                                    f"got {array.shape}")
        _check_class_ids(array[:, 4], len(names), f"ground truth of image {n}")
        arrays.append(array)
    return arrays


def _prediction_array(raw: np.ndarray, n: int, num_classes: int) -> np.ndarray:
    array = np.asarray(raw, dtype=np.float64)
    array = array.reshape(0, 6) if array.size == 0 else array
    if array.ndim != 2 or array.shape[1] != 6:
        raise DetectorDataError(f"predictions of image {n}: expected (K, 6) x_min, y_min, x_max, y_max, score, class_id; "
                                f"got {array.shape}")
    _check_class_ids(array[:, 5], num_classes, f"predictions of image {n}")
    return array


def _check_class_ids(ids: np.ndarray, num_classes: int, where: str) -> None:
    bad = ids[(ids < 0) | (ids >= num_classes) | (ids != np.round(ids))]
    if len(bad):
        raise DetectorDataError(f"{where}: class ids {sorted(set(bad.tolist()))[:5]} outside 0..{num_classes - 1}; "
                                "check class_names")


def _image_sizes(
    ground_truth: BoxSet | Sequence[np.ndarray], truth: list[np.ndarray], preds: list[np.ndarray]
) -> list[tuple[int, int]]:
    """Image sizes for COCO's image records (only informative for boxes: areas come from the boxes)."""
    if isinstance(ground_truth, BoxSet):
        return [(info.width, info.height) for info in ground_truth.images]
    sizes = []
    for t, p in zip(truth, preds, strict=True):
        extent = np.concatenate([t[:, :4], p[:, :4]]) if len(t) or len(p) else np.ones((1, 4))
        sizes.append((max(1, math.ceil(extent[:, 2].max())), max(1, math.ceil(extent[:, 3].max()))))
    return sizes


def _xywh(box: np.ndarray) -> list[float]:
    return [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]
