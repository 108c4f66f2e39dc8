"""Export a fitted detector as one graph (backbone, memory-bank search, map smoothing) and prove it.

The whole :class:`~resources.anomaly.network.PatchCoreNet` goes into one self-contained ONNX file,
input ``images`` [batch, 3, S, S] (0..255 RGB), outputs ``anomaly_map`` [batch, 1, S, S] and
``score`` [batch], and from it an OpenVINO IR with FP32 weights, by the classifier's exporter
(:mod:`resources.classify.exporter`). The device then needs pixels only.

Parity (blocking: :func:`require_detector_parity` raises, so nothing that fails it is shipped): on the given images, every runtime's scores and maps must match torch's within
:data:`SCORE_TOLERANCE` of the largest torch score (relative, because a score is a distance in the
backbone's feature units, whose scale depends on the backbone), and where a threshold is given the
reject decision must agree on every image except where torch itself scores the image within that
tolerance of the threshold (a tie at this precision, decided by rounding).

Measured on magnetic tile (BENCHMARKS.md, 3 seeds, 32 test images, FP32 everywhere): ONNX Runtime
1.2e-5 to 1.7e-5 of the largest score, OpenVINO 1.8e-5 to 4.1e-5 (the bank search is a 10,000-column
GEMM whose summation order differs by runtime). 1e-4 leaves 2.5x room over the worst of them; a
detector with another memory bank is far outside it (``tests/resources/anomaly/test_export.py``).
"""

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_sync.inference import ModelFormat, load_predictor
from resources.classify.exporter import ExportError, export_onnx, export_openvino

if TYPE_CHECKING:
    from resources.anomaly.network import PatchCoreNet

__all__ = [
    "DETECTOR_OUTPUTS",
    "SCORE_TOLERANCE",
    "DetectorParity",
    "check_detector_parity",
    "export_detector",
    "require_detector_parity",
]

logger = logging.getLogger(__name__)

DETECTOR_OUTPUTS = {"anomaly_map": 4, "score": 1}
SCORE_TOLERANCE = 1e-4
"""Largest accepted |score_torch - score_runtime| (and map difference) relative to the largest torch score."""


def export_detector(net: "PatchCoreNet", image_size: int, onnx_path: Path, xml_path: Path) -> tuple[Path, Path]:
    """Write the detector as ONNX and as an OpenVINO IR (FP32); both carry pre- and post-processing."""
    if net.memory_bank.shape[0] == 0:
        raise ExportError("the detector's memory bank is empty: fit it on good images before exporting")
    onnx_file = export_onnx(net, image_size, onnx_path, outputs=DETECTOR_OUTPUTS)
    return onnx_file, export_openvino(onnx_file, xml_path)


@dataclass(frozen=True)
class DetectorParity:
    """How one runtime's outputs compare with torch's on the parity images."""

    format: str
    max_score_difference: float
    max_map_difference: float
    relative_difference: float
    decisions_differing: int
    passed: bool
    ms_per_image: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_detector_parity(
    net: "PatchCoreNet",
    files: dict[ModelFormat, Path],
    images: np.ndarray,
    threshold: float | None = None,
    tolerance: float = SCORE_TOLERANCE,
    num_threads: int = 2,
) -> list[DetectorParity]:
    """Compare each exported file's map and score with torch's on ``images`` (uint8 N×S×S×3)."""
    from resources.anomaly.detector import score_images

    if len(images) == 0:
        raise ExportError("parity needs at least one image; pass validation or training images")
    torch_maps, torch_scores = score_images(net, images)
    scale = max(float(np.abs(torch_scores).max()), 1e-12)
    results = []
    for fmt, path in files.items():
        predictor = load_predictor(path, fmt, num_threads=num_threads)
        predictor.outputs(images[:8])  # warm-up at the timed batch size: the first call of a shape compiles and allocates
        maps, scores, seconds = [], [], 0.0
        for start in range(0, len(images), 8):
            started = time.perf_counter()
            outputs = predictor.outputs(images[start : start + 8])
            seconds += time.perf_counter() - started
            maps.append(outputs["anomaly_map"][:, 0])
            scores.append(outputs["score"])
        runtime_maps, runtime_scores = np.concatenate(maps), np.concatenate(scores)
        score_difference = float(np.abs(runtime_scores - torch_scores).max())
        map_difference = float(np.abs(runtime_maps - torch_maps).max())
        relative = max(score_difference, map_difference) / scale
        differing = 0
        if threshold is not None:
            disagree = (runtime_scores >= threshold) != (torch_scores >= threshold)
            tie = np.abs(torch_scores - threshold) <= tolerance * scale
            differing = int((disagree & ~tie).sum())
        parity = DetectorParity(
            format=ModelFormat(fmt).value,
            max_score_difference=score_difference,
            max_map_difference=map_difference,
            relative_difference=relative,
            decisions_differing=differing,
            passed=relative <= tolerance and differing == 0,
            ms_per_image=1000 * seconds / len(images),
        )
        logger.info("detector parity %s: %s", parity.format, parity.as_dict())
        results.append(parity)
    return results


def require_detector_parity(results: list[DetectorParity]) -> None:
    """Raise :class:`ExportError` naming every runtime that does not reproduce the torch detector."""
    failed = [r for r in results if not r.passed]
    if failed:
        details = "; ".join(
            f"{r.format}: largest difference {r.relative_difference:.2e} of the largest score "
            f"(tolerance {SCORE_TOLERANCE:g}), {r.decisions_differing} decision(s) differ"
            for r in failed
        )
        raise ExportError(
            f"the exported detector does not reproduce the fitted one ({details}); do not deploy it: re-export "
            "from the same checkpoint, and check the runtime runs in FP32"
        )
