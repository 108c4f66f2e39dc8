"""Export a trained detector, post-processing included, to ONNX and OpenVINO IR (and optionally INT8).

What is exported is :class:`resources.detect.engine_parts.yolo_graph.DetectionGraph`: input ``images``
float32 [1, 3, S, S] RGB 0..255 (what ``edge_sync.contract.imaging`` delivers), output ``detections``
[1, max_det, 6] ``x_min, y_min, x_max, y_max, score, class_id``, top-k (YOLO26) or NMS (YOLO11/v8)
inside the graph. The batch is fixed at 1: a device inspects one image at a time, and the NMS path
loops over the batch in Python, which tracing unrolls.

* ONNX through the TorchScript exporter (``dynamo=False``): torchvision's ``nms`` has an ONNX symbolic
  there (``NonMaxSuppression``); one self-contained file (the model is far below the 2 GB protobuf
  limit), checked with ``onnx.checker`` and for its input/output shapes, written under a temporary
  name and renamed.
* OpenVINO IR through ``openvino.convert_model`` of that ONNX file and ``save_model(...,
  compress_to_fp16=False)`` (FP16 weights moved classifier logits by ~1e-3 here). openvino's
  telemetry is blocked before it is imported (``resources.settings``), so nothing is sent and
  nothing is written to ``~/intel``.
* INT8 (optional): ONNX Runtime static QDQ quantisation of the convolutions only; the decode,
  top-k and NMS stay in float so boxes and scores keep their meaning. Judge it by its mAP loss
  (``yolo_metrics``), not by parity. Measured once here (models trained 25 epochs on 48 generated
  64 px images, 16 test images, 32 calibration images): mAP50 FP32 → INT8 YOLO11n 0.75 → 0.76,
  YOLO26n 0.57 → 0.72 (noise of a tiny test set), MobileNetV2-YOLO26n 0.84 → 0.60 (its depthwise
  convolutions quantise badly per tensor); no speed-up at 64 px (ONNX Runtime 2.2–2.6 ms FP32 vs
  2.1–3.7 ms INT8). Optional, per model, never the default.

Parity and latency: :mod:`resources.detect.yolo_parity`.
"""

import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from resources.detect.yolo_env import prepare_ultralytics
from resources.detect.yolo_errors import DetectorExportError
from resources.detect.yolo_predict import LoadedDetector, build_graph, check_images, load_detector

__all__ = [
    "DEFAULT_OPSET",
    "DetectorExport",
    "export_detector",
    "export_detector_onnx",
    "export_detector_openvino",
    "quantize_detector_int8",
]

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17


@dataclass(frozen=True)
class DetectorExport:
    """The files of one export and the graph's fixed parameters (a manifest records them)."""

    onnx: Path
    openvino: Path
    image_size: int
    max_det: int
    iou: float
    end_to_end: bool
    class_names: tuple[str, ...]


def export_detector(
    checkpoint: bytes | Path | LoadedDetector,
    out_dir: Path,
    *,
    max_det: int = 300,
    iou: float = 0.7,
    opset: int = DEFAULT_OPSET,
) -> DetectorExport:
    """Write ``detector.onnx`` and ``detector.xml``/``.bin`` into ``out_dir``."""
    detector = checkpoint if isinstance(checkpoint, LoadedDetector) else load_detector(checkpoint)
    out_dir = Path(out_dir)
    onnx_path = export_detector_onnx(detector, out_dir / "detector.onnx", max_det=max_det, iou=iou, opset=opset)
    xml_path = export_detector_openvino(onnx_path, out_dir / "detector.xml")
    return DetectorExport(onnx=onnx_path, openvino=xml_path, image_size=detector.image_size, max_det=max_det,
                          iou=iou, end_to_end=detector.end_to_end, class_names=detector.class_names)


def export_detector_onnx(
    detector: LoadedDetector,
    path: Path,
    *,
    max_det: int = 300,
    iou: float = 0.7,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export the deployable graph of ``detector`` at its training size to ONE ONNX file at ``path``."""
    prepare_ultralytics()
    import onnx
    import torch

    from resources.detect.engine_parts.yolo_graph import INPUT_NAME, OUTPUT_NAME

    if opset < 17:
        raise DetectorExportError(f"opset {opset}: the platform exports detectors with opset >= 17")
    size = detector.image_size
    graph = build_graph(detector, max_det=max_det, iou=iou)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    example = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 255
    started = time.perf_counter()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about Python ints taken from shapes: static by design
            graph(example)  # builds the head's anchor grid for this size before tracing
            torch.onnx.export(graph, (example,), str(tmp), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              opset_version=opset, dynamo=False, do_constant_folding=True)
        if Path(f"{tmp}.data").exists() or any(path.parent.glob(f"{tmp.name}*.data")):
            raise DetectorExportError(f"{path}: the exporter wrote weights to a side file; expected one file")
        onnx.checker.check_model(str(tmp), full_check=True)
        _check_onnx_io(tmp, size, max_det)
        os.replace(tmp, path)
    except DetectorExportError:
        raise
    except Exception as exc:  # torch.onnx and onnx raise many unrelated types
        raise DetectorExportError(
            f"{path}: ONNX export of the {size}×{size} detector failed: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("exported detector ONNX %s (%d px, max_det %d, opset %d, %.1f MB) in %.1f s", path, size, max_det,
                opset, path.stat().st_size / 1e6, time.perf_counter() - started)
    return path


def export_detector_openvino(onnx_path: Path, xml_path: Path) -> Path:
    """Convert the ONNX export to an OpenVINO IR with FP32 weights (``.bin`` beside ``xml_path``)."""
    onnx_path, xml_path = Path(onnx_path), Path(xml_path)
    if not onnx_path.is_file():
        raise DetectorExportError(f"{onnx_path}: ONNX file not found; run export_detector_onnx first")
    if xml_path.suffix.lower() != ".xml":
        raise DetectorExportError(f"{xml_path}: an OpenVINO IR path must end in .xml (the .bin goes beside it)")
    prepare_ultralytics()  # blocks openvino-telemetry before openvino is imported
    import openvino as ov

    xml_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=False)
    except Exception as exc:  # openvino raises RuntimeError subclasses with the converter's text
        raise DetectorExportError(f"{onnx_path}: OpenVINO conversion to {xml_path} failed: {exc}") from exc
    if not xml_path.with_suffix(".bin").is_file():
        raise DetectorExportError(f"{xml_path}: OpenVINO wrote no weights file beside it")
    return xml_path


def quantize_detector_int8(onnx_path: Path, calibration_images: np.ndarray, out_path: Path) -> Path:
    """Static QDQ INT8 ONNX for ONNX Runtime: convolutions only, per-channel weights, MinMax ranges
    from up to 32 calibration images (uint8 N×S×S×3 at the model's size, one per calibration step).

    Decode, top-k and NMS stay in float; box coordinates and scores therefore keep their scale."""
    prepare_ultralytics()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from resources.detect.engine_parts.yolo_graph import INPUT_NAME

    images = check_images(calibration_images)
    if len(images) == 0:
        raise DetectorExportError("quantize_detector_int8: no calibration images; pass 8 to 32 training images")
    picked = images[np.linspace(0, len(images) - 1, num=min(32, len(images))).round().astype(int)]

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter(picked)

        def get_next(self) -> dict[str, np.ndarray] | None:
            image = next(self._items, None)
            if image is None:
                return None
            return {INPUT_NAME: np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)}

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    try:
        quantize_static(str(onnx_path), str(tmp), _Reader(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["Conv"], per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
        os.replace(tmp, out_path)
    except Exception as exc:  # onnxruntime.quantization raises many types
        raise DetectorExportError(f"{onnx_path}: INT8 quantisation failed: {type(exc).__name__}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


def _check_onnx_io(path: Path, size: int, max_det: int) -> None:
    """The file must take one [1, 3, S, S] float input and give one [1, ?, 6] output."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def dims(value: onnx.ValueInfoProto) -> list[int | str]:
        return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value.type.tensor_type.shape.dim]

    inputs, outputs = list(model.graph.input), list(model.graph.output)
    if len(inputs) != 1 or dims(inputs[0]) != [1, 3, size, size]:
        raise DetectorExportError(f"{path}: expected one input [1, 3, {size}, {size}], got {[dims(i) for i in inputs]}")
    if len(outputs) != 1 or len(dims(outputs[0])) != 3 or dims(outputs[0])[2] != 6:
        raise DetectorExportError(f"{path}: expected one output [1, {max_det}, 6], got {[dims(o) for o in outputs]}")
