"""The deployable package of an anomaly detector: one ONNX and one OpenVINO graph (image in, map and
score out), the device's self-test and a manifest, checked for parity with the fitted detector.

The anomaly task's counterpart of ``resources.classify.package``: the ``exported_model`` asset stores
the folder this writes. No INT8 model yet: quantising the memory-bank search is untried, so the
package says so rather than shipping one unmeasured.
"""

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_sync.contract import SELFTEST_FILE
from edge_sync.inference import ModelFormat
from resources.artifact_store import sha256_file

if TYPE_CHECKING:
    from resources.anomaly.export import DetectorParity
    from resources.anomaly.network import PatchCoreNet

__all__ = ["DETECTOR_PACKAGE_FILES", "DetectorPackageBuild", "build_detector_package"]

DETECTOR_PACKAGE_FILES = {"onnx": "model.onnx", "openvino": "openvino/model.xml"}
_SELFTEST_IMAGES = 8
INT8_NOTE = (
    "no INT8 model: quantising the detector's backbone convolutions (the search kept in float) dropped magnetic tile's "
    "image AUROC from 0.94 to 0.50-0.74 and was slower than FP32 (bench/anomaly_int8.py, BENCHMARKS.md); devices run FP32"
)


@dataclass(frozen=True)
class DetectorPackageBuild:
    files: dict[str, str]  # format -> path inside the package
    file_sha256: dict[str, str]
    parity: list["DetectorParity"]
    latency_ms: dict[str, float]

    @property
    def parity_passed(self) -> bool:
        return all(p.passed for p in self.parity)

    def parity_summary(self) -> dict[str, Any]:
        from resources.anomaly.export import SCORE_TOLERANCE

        return {
            "passed": self.parity_passed,
            "tolerance": SCORE_TOLERANCE,
            "max_abs_diff": max(p.max_score_difference for p in self.parity),
            "max_relative_diff": max(p.relative_difference for p in self.parity),
            "runtimes": {p.format: p.as_dict() for p in self.parity},
        }


def _torch_ms_per_image(net: "PatchCoreNet", images: np.ndarray) -> float:
    from resources.anomaly.detector import score_images

    score_images(net, images[:8], keep_maps=False)  # warm-up at the timed batch size, as the runtimes get one
    started = time.perf_counter()
    for start in range(0, len(images), 8):  # the runtimes' batches
        score_images(net, images[start : start + 8], keep_maps=True)
    return 1000 * (time.perf_counter() - started) / len(images)


def build_detector_package(
    net: "PatchCoreNet",
    package: Path,
    *,
    parity_images: np.ndarray,
    threshold: float | None,
    manifest: Mapping[str, Any],
    num_threads: int = 2,
) -> DetectorPackageBuild:
    """Export ``net`` into the empty folder ``package``, compare both runtimes with torch on
    ``parity_images`` (map, score and the decision at ``threshold``) and write the self-test
    (the device must reproduce these torch scores before it activates the model)."""
    from resources.anomaly.detector import score_images
    from resources.anomaly.export import check_detector_parity, export_detector

    size = int(net.settings.image_size)
    onnx_path, xml_path = export_detector(
        net, size, package / DETECTOR_PACKAGE_FILES["onnx"], package / DETECTOR_PACKAGE_FILES["openvino"]
    )
    exported = {ModelFormat.ONNX: onnx_path, ModelFormat.OPENVINO: xml_path}
    parity = check_detector_parity(net, exported, parity_images, threshold=threshold, num_threads=num_threads)
    latency = {"torch": _torch_ms_per_image(net, parity_images), **{p.format: p.ms_per_image for p in parity}}
    selftest = parity_images[: min(_SELFTEST_IMAGES, len(parity_images))]
    _, scores = score_images(net, selftest, keep_maps=False)
    np.savez(package / SELFTEST_FILE, images=selftest, scores=scores.astype(np.float32))
    files = {fmt.value: path.relative_to(package).as_posix() for fmt, path in exported.items()}
    file_hashes = {p.relative_to(package).as_posix(): sha256_file(p) for p in sorted(package.rglob("*")) if p.is_file()}
    (package / "manifest.json").write_text(
        json.dumps({**manifest, "int8": None, "int8_note": INT8_NOTE, "files": files, "sha256": file_hashes}, indent=2, sort_keys=True)
    )
    return DetectorPackageBuild(files=files, file_sha256=file_hashes, parity=parity, latency_ms=latency)
