"""Load a trained detector checkpoint and predict boxes, through the same graph that is exported.

:func:`predict_boxes` runs :class:`resources.detect.engine_parts.yolo_graph.DetectionGraph`, the module
that ``yolo_export`` writes to ONNX and OpenVINO: validation metrics are measured on exactly the
post-processing a device runs, not on ultralytics' own predictor (whose NMS is not in the export).

Checkpoints are ultralytics ``.pt`` files, a pickled model: ``torch.load(weights_only=False)`` runs
code from the file, so only checkpoints this platform wrote (content-addressed in its artifact store)
may be loaded here, never a file from elsewhere.
"""

import importlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from resources.detect.yolo_env import prepare_ultralytics
from resources.detect.yolo_errors import DetectorConfigError, DetectorDataError

if TYPE_CHECKING:
    import torch

__all__ = ["LoadedDetector", "build_graph", "check_images", "load_detector", "predict_boxes"]

logger = logging.getLogger(__name__)

_BATCH = 16


@dataclass(frozen=True)
class LoadedDetector:
    """A checkpoint's model (float32, eval, BatchNorm fused) and what it was trained for."""

    model: "torch.nn.Module"
    class_names: tuple[str, ...]
    image_size: int
    end_to_end: bool
    """NMS-free one-to-one head selected (YOLO26); otherwise the graph adds NMS."""


def load_detector(checkpoint: bytes | Path) -> LoadedDetector:
    """Load a ``best.pt`` (bytes or path) written by :func:`resources.detect.yolo_train.train_detector`."""
    prepare_ultralytics()
    import torch

    source: Any = io.BytesIO(checkpoint) if isinstance(checkpoint, bytes | bytearray) else Path(checkpoint)
    try:
        importlib.import_module("ultralytics.nn.tasks")  # the pickle refers to its classes

        content = torch.load(source, map_location="cpu", weights_only=False)
    except Exception as exc:  # pickle, zip and torch errors for a file that is not a checkpoint
        raise DetectorConfigError(f"checkpoint cannot be loaded ({type(exc).__name__}: {exc}); pass the bytes "
                                  "train_detector returned") from exc
    model = None
    if isinstance(content, dict):
        model = content.get("ema") if content.get("ema") is not None else content.get("model")
    layers = getattr(model, "model", None)
    head = layers[-1] if isinstance(layers, torch.nn.Sequential) and len(layers) else None
    if model is None or head is None or not hasattr(head, "nc") or not hasattr(model, "names"):
        raise DetectorConfigError("checkpoint holds no ultralytics detection model ('model'/'ema' entry); "
                                  "pass the bytes train_detector returned")
    model = model.float().eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    # YOLO26 trains two heads: one-to-many (needs NMS; ultralytics' default at predict time) and
    # one-to-one (NMS-free). The platform deploys the NMS-free one: select it before fusing, which
    # then drops the other branch.
    end_to_end = getattr(head, "one2one_cv2", None) is not None
    if end_to_end:
        model.end2end = True
    model = model.fuse(verbose=False)
    names = model.names
    class_names = tuple(str(names[key]) for key in sorted(names)) if isinstance(names, dict) else tuple(names)
    args = content.get("train_args") or {}
    image_size = int(args.get("imgsz") or 640)
    return LoadedDetector(model=model, class_names=class_names, image_size=image_size, end_to_end=end_to_end)


def build_graph(detector: LoadedDetector, *, max_det: int = 300, iou: float = 0.7) -> "torch.nn.Module":
    """The deployable module (0..255 RGB NCHW float32 in, (N, max_det, 6) out) around a copy of the model.

    ``iou`` is the NMS overlap threshold for YOLO11/v8 heads; NMS-free heads ignore it.
    """
    import copy

    from resources.detect.engine_parts.yolo_graph import DetectionGraph

    if not 1 <= max_det <= 10000:
        raise DetectorConfigError(f"max_det must be 1..10000 detections per image, got {max_det}")
    if not 0.0 < iou <= 1.0:
        raise DetectorConfigError(f"iou must be in (0, 1], got {iou}")
    graph = DetectionGraph(copy.deepcopy(detector.model), end_to_end=detector.end_to_end, max_det=max_det, iou=iou)
    return graph.eval()


def check_images(images: np.ndarray) -> np.ndarray:
    """``images`` as uint8 N×S×S×3 RGB with S a multiple of 32, or a :class:`DetectorDataError`."""
    array = np.asarray(images)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[3] != 3 or array.shape[1] != array.shape[2]:
        raise DetectorDataError(
            f"images: expected uint8 N×S×S×3 RGB at the model's size, got {array.dtype} {array.shape}; "
            "resize/letterbox them first (edge_sync.contract.imaging does it for devices)"
        )
    if array.shape[1] % 32:
        raise DetectorDataError(f"images: side {array.shape[1]} is not a multiple of 32 (the detector's stride)")
    return array


def predict_boxes(
    checkpoint: bytes | Path | LoadedDetector,
    images: np.ndarray,
    conf: float = 0.001,
    iou: float = 0.7,
    max_det: int = 300,
) -> list[np.ndarray]:
    """One (K, 6) float32 array per image: ``x_min, y_min, x_max, y_max, score, class_id`` in the input's
    pixels, score ≥ ``conf``, sorted by score. ``conf=0.001`` keeps the low scores mAP needs."""
    import torch

    detector = checkpoint if isinstance(checkpoint, LoadedDetector) else load_detector(checkpoint)
    array = check_images(images)
    graph = build_graph(detector, max_det=max_det, iou=iou)
    results: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, len(array), _BATCH):
            batch = torch.from_numpy(np.ascontiguousarray(array[start:start + _BATCH].transpose(0, 3, 1, 2))).float()
            for detections in graph(batch).numpy():
                results.append(np.ascontiguousarray(detections[detections[:, 4] >= conf], dtype=np.float32))
    return results
