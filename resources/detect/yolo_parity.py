"""Prove an exported detector is the torch model: same boxes, same scores, per runtime; and time them.

Detections are a set, not a tensor: two runtimes may list equal-scored boxes in another order, and a
score that differs in the 7th digit may flip which of two near-equal candidates survives a top-k or
``max_det`` cut. So parity is judged on matched boxes, not element-wise:

* per image, every torch box with score ≥ ``score_threshold`` must have a runtime box of the same
  class with IoU ≥ ``iou_match`` (0.9) and |Δscore| ≤ ``score_tolerance``, and vice versa (one-to-one,
  the closest score among the overlapping candidates); so the counts over the threshold are equal;
* a box may go unmatched only where a tie decided it: its score lies within ``score_tolerance`` of a
  cut (the threshold, or the lowest score either side returned: the edge of a top-k), or the other
  side kept a box of the same class and score (within the tolerance) that overlaps it by more than
  the NMS threshold (NMS met equal scores in another order and kept the other one; an untrained
  YOLO11 has many exactly equal scores and shows this on OpenVINO).

Measured here (2-core x86_64 without bf16 support, torch 2.14.1, onnxruntime 1.32.0, openvino 2026.4.1,
OpenVINO pinned to f32 as ``edge_sync.inference`` does), YOLO26n / YOLO11n / MobileNetV2-YOLO26n trained
25 epochs on 48 generated 64 px images (mAP50 0.57 / 0.75 / 0.84), 16 test images, every box ≥ 0.001
(up to 1344 boxes): all matched, none at a cut; largest |Δscore| 4e-7 / 6e-7 / 1e-6 (ONNX Runtime and
OpenVINO alike), largest corner difference 8e-5 px. :data:`SCORE_TOLERANCE` = 1e-4 is about 100× the
worst of those, yet an IR saved with FP16 weights (OpenVINO's default) moved scores by 2e-4 / 2e-4 /
3.4e-3 and failed on every model. (bf16 could not be tried: this CPU has none.) Latency is the median
of single-image runs after warm-up, per runtime, with the threads a device uses (2).
"""

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from resources.detect.iou import iou_matrix
from resources.detect.yolo_env import prepare_ultralytics
from resources.detect.yolo_errors import DetectorExportError
from resources.detect.yolo_predict import LoadedDetector, build_graph, check_images

if TYPE_CHECKING:
    from edge_sync.inference import Predictor

__all__ = ["SCORE_TOLERANCE", "DetectionParity", "RuntimeParity", "check_detector_parity", "measure_detector_latency"]

SCORE_TOLERANCE = 1e-4
IOU_MATCH = 0.9


@dataclass(frozen=True)
class RuntimeParity:
    """One runtime against torch, summed over the images."""

    runtime: str
    torch_boxes: int
    runtime_boxes: int
    matched: int
    unmatched: int
    """boxes over the threshold, away from any cut, without a partner: must be 0."""
    excused: int
    """boxes without a partner where a tie decided (see the module docstring)."""
    max_score_diff: float
    max_corner_diff_px: float
    min_iou: float

    @property
    def passed(self) -> bool:
        return self.unmatched == 0


@dataclass(frozen=True)
class DetectionParity:
    score_threshold: float
    score_tolerance: float
    iou_match: float
    runtimes: tuple[RuntimeParity, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.runtimes)

    def summary(self) -> str:
        parts = [f"{r.runtime}: {r.matched} matched, {r.unmatched} unmatched, {r.excused} at a cut, max Δscore "
                 f"{r.max_score_diff:.1e}, max Δcorner {r.max_corner_diff_px:.1e} px" for r in self.runtimes]
        return "; ".join(parts)


def check_detector_parity(
    detector: LoadedDetector,
    exports: dict[str, Path],
    images: np.ndarray,
    *,
    max_det: int = 300,
    iou: float = 0.7,
    score_threshold: float = 0.25,
    score_tolerance: float = SCORE_TOLERANCE,
    iou_match: float = IOU_MATCH,
) -> DetectionParity:
    """Compare torch with each runtime in ``exports`` ({"onnx": path, "openvino": xml}) on ``images``.

    ``max_det``/``iou`` must be those the files were exported with. Raises
    :class:`DetectorExportError` when a runtime cannot load its file; returns the report otherwise
    (callers decide, ``report.passed``).
    """
    import torch

    array = check_images(images)
    graph = build_graph(detector, max_det=max_det, iou=iou)
    with torch.inference_mode():
        reference = [graph(_tensor(image))[0].numpy() for image in array]
    results = []
    for runtime, path in exports.items():
        predictor = _load(runtime, path)
        outputs = [_run(predictor, image) for image in array]
        results.append(_compare(runtime, reference, outputs, score_threshold, score_tolerance, iou_match, iou))
    return DetectionParity(score_threshold, score_tolerance, iou_match, tuple(results))


def measure_detector_latency(
    detector: LoadedDetector,
    exports: dict[str, Path],
    image: np.ndarray,
    *,
    runs: int = 20,
    warmup: int = 3,
    num_threads: int = 2,
    max_det: int = 300,
    iou: float = 0.7,
) -> dict[str, float]:
    """Median milliseconds of ``runs`` single-image inferences for torch and each runtime in ``exports``."""
    import torch

    single = check_images(image if np.asarray(image).ndim == 4 else np.asarray(image)[None])[:1]
    graph = build_graph(detector, max_det=max_det, iou=iou)
    threads = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        tensor = _tensor(single[0])
        with torch.inference_mode():
            latency = {"torch": _median_ms(lambda: graph(tensor), runs, warmup)}
    finally:
        torch.set_num_threads(threads)
    for runtime, path in exports.items():
        predictor = _load(runtime, path, num_threads)
        latency[runtime] = _median_ms(lambda: predictor.outputs(single), runs, warmup)
    return latency


def _tensor(image: np.ndarray) -> "object":
    import torch

    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32))


def _load(runtime: str, path: Path, num_threads: int = 2) -> "Predictor":
    prepare_ultralytics()  # the offline and no-telemetry switches, before onnxruntime/openvino import
    from edge_sync.inference import InferenceError, load_predictor

    try:
        return load_predictor(Path(path), runtime, num_threads=num_threads)
    except InferenceError as exc:
        raise DetectorExportError(f"{runtime} export {path} cannot be loaded: {exc}") from exc


def _run(predictor: "Predictor", image: np.ndarray) -> np.ndarray:
    outputs = predictor.outputs(image[None])
    if "detections" not in outputs:
        raise DetectorExportError(f"{predictor}: no 'detections' output (got {sorted(outputs)}); re-export it")
    return outputs["detections"][0]


def _median_ms(call: "object", runs: int, warmup: int) -> float:
    for _ in range(warmup):
        call()  # type: ignore[operator]
    times = []
    for _ in range(max(1, runs)):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


def _compare(
    runtime: str,
    reference: list[np.ndarray],
    outputs: list[np.ndarray],
    threshold: float,
    tolerance: float,
    iou_match: float,
    nms_iou: float,
) -> RuntimeParity:
    totals = {"torch": 0, "runtime": 0, "matched": 0, "unmatched": 0, "excused": 0}
    score_diffs: list[float] = [0.0]
    corner_diffs: list[float] = [0.0]
    ious: list[float] = [1.0]
    for ref, out in zip(reference, outputs, strict=True):
        if out.shape != ref.shape:
            raise DetectorExportError(f"{runtime}: detections of shape {out.shape}, torch gives {ref.shape}; re-export")
        cut = max([threshold, *(float(d[d[:, 4] > 0, 4].min()) for d in (ref, out) if (d[:, 4] > 0).any())])
        a, b = ref[ref[:, 4] >= threshold], out[out[:, 4] >= threshold]
        totals["torch"] += len(a)
        totals["runtime"] += len(b)
        overlap = iou_matrix(a[:, :4], b[:, :4]) if len(a) and len(b) else np.zeros((len(a), len(b)))
        close = (np.abs(a[:, None, 4] - b[None, :, 4]) <= tolerance) & (a[:, None, 5] == b[None, :, 5])
        taken = np.zeros(len(b), dtype=bool)
        unmatched_a: list[int] = []
        for i in np.argsort(-a[:, 4], kind="stable"):
            candidates = np.flatnonzero((overlap[i] >= iou_match) & close[i] & ~taken)
            if not len(candidates):
                unmatched_a.append(int(i))
                continue
            j = candidates[np.argmin(np.abs(b[candidates, 4] - a[i, 4]))]
            taken[j] = True
            totals["matched"] += 1
            score_diffs.append(abs(float(b[j, 4] - a[i, 4])))
            corner_diffs.append(float(np.abs(b[j, :4] - a[i, :4]).max()))
            ious.append(float(overlap[i, j]))
        tie = (overlap > nms_iou - 1e-6) & close  # the other side kept a tied, overlapping box instead
        for i in unmatched_a:
            totals["excused" if a[i, 4] <= cut + tolerance or tie[i].any() else "unmatched"] += 1
        for j in np.flatnonzero(~taken):
            totals["excused" if b[j, 4] <= cut + tolerance or tie[:, j].any() else "unmatched"] += 1
    return RuntimeParity(runtime, totals["torch"], totals["runtime"], totals["matched"], totals["unmatched"],
                         totals["excused"], max(score_diffs), max(corner_diffs), min(ious))
