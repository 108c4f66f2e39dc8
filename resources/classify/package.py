"""The deployable package of a classifier: ONNX, OpenVINO IR and INT8 ONNX, the self-test and a manifest.

The ``exported_model`` asset hands over the trained module and the images, and stores the folder
this writes; everything between (export, parity with torch, INT8 test accuracy, latency, the
device's self-test, the file hashes) lives here, so the asset stays a thin step and another task's
engine can bring its own package builder.
"""

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_sync.failpoints import failpoint
from resources.artifact_store import sha256_file

if TYPE_CHECKING:
    import torch

    from resources.classify.parity import ParityResult

__all__ = ["PACKAGE_FILES", "PackageBuild", "build_package"]

logger = logging.getLogger(__name__)

PACKAGE_FILES = {"onnx": "model.onnx", "openvino": "openvino/model.xml", "onnx_int8": "model_int8.onnx"}
_SELFTEST_IMAGES = 8
_LATENCY_IMAGES = 8


@dataclass(frozen=True)
class PackageBuild:
    """What :func:`build_package` wrote into its folder and measured on the way."""

    files: dict[str, str]  # format -> path inside the package
    file_sha256: dict[str, str]  # every file of the package -> sha256
    parity: "ParityResult"
    latency_ms: dict[str, float]
    int8_test_accuracy: float | None
    int8: dict[str, Any] | None  # Int8Choice.summary(): float convolutions, held-out disagreement, tries

    def parity_summary(self) -> dict[str, Any]:
        return {
            "passed": self.parity.passed,
            "tolerance": self.parity.tolerance,
            "n_images": self.parity.n_images,
            "max_abs_diff": max(r.max_abs_diff for r in self.parity.runtimes),
            "runtimes": {
                r.format: {"max_abs_diff": r.max_abs_diff, "decision_agreement": r.decision_agreement}
                for r in self.parity.runtimes
            },
        }


def build_package(
    model: "torch.nn.Module",
    package: Path,
    *,
    image_size: int,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    calibration_images: np.ndarray | None,
    holdout_images: np.ndarray | None,
    parity_tolerance: float,
    int8_max_disagreement: float,
    latency_repeats: int,
    manifest: Mapping[str, Any],
) -> PackageBuild:
    """Export ``model`` into the empty folder ``package`` and check the exports against it.

    ``calibration_images`` None: no INT8 model. ``holdout_images`` (validation, never test) are what the
    INT8 model must decide like the FP32 one on (:mod:`resources.classify.int8_precision`); None: the
    calibration images stand in. ``manifest`` holds what the package's ``manifest.json`` says besides
    the files and their hashes (model id, classes, good class, threshold, input spec, code version).
    """
    from edge_sync.inference import load_predictor
    from resources.classify.exporter import ExportFormat, export_onnx, export_openvino
    from resources.classify.int8_precision import quantize_within_tolerance
    from resources.classify.model import predict_proba
    from resources.classify.parity import check_parity, measure_latency, predict_in_batches

    onnx_path = export_onnx(model, image_size, package / PACKAGE_FILES["onnx"])
    failpoint("export.after_onnx")
    xml_path = export_openvino(onnx_path, package / PACKAGE_FILES["openvino"])
    exported = {ExportFormat.ONNX: onnx_path, ExportFormat.OPENVINO: xml_path}
    parity = check_parity(model, exported, test_images, tolerance=parity_tolerance)
    int8_accuracy, int8_summary = None, None
    if calibration_images is not None:
        classes, good_class = list(manifest["classes"]), manifest.get("good_class")
        if holdout_images is None:
            logger.warning(
                "no validation images for the INT8 precision search of %s; comparing INT8 with FP32 on the "
                "calibration (training) images instead",
                onnx_path,
            )
        choice = quantize_within_tolerance(
            onnx_path,
            calibration_images,
            calibration_images if holdout_images is None else holdout_images,
            package / PACKAGE_FILES["onnx_int8"],
            holdout="calibration" if holdout_images is None else "val",
            good_index=classes.index(good_class) if good_class in classes else None,
            threshold=manifest.get("threshold"),
            max_disagreement=int8_max_disagreement,
        )
        exported[ExportFormat.ONNX_INT8] = choice.path
        int8_summary = choice.summary()
        int8_probs = predict_in_batches(load_predictor(choice.path, ExportFormat.ONNX_INT8), test_images)
        int8_accuracy = float((int8_probs.argmax(1) == test_labels).mean())
    latency = measure_latency(
        model, exported, test_images[: max(1, min(_LATENCY_IMAGES, len(test_images)))], repeats=latency_repeats
    )
    # The device's self-test: it must reproduce these torch probabilities before activating the model.
    selftest_images = test_images[: min(_SELFTEST_IMAGES, len(test_images))]
    np.savez(
        package / "selftest.npz",
        images=selftest_images,
        probabilities=predict_proba(model, selftest_images).astype(np.float32),
    )
    files = {fmt.value: path.relative_to(package).as_posix() for fmt, path in exported.items()}
    file_hashes = {p.relative_to(package).as_posix(): sha256_file(p) for p in sorted(package.rglob("*")) if p.is_file()}
    # The package says whether its INT8 model met the precision search's tolerance: whoever deploys
    # ``onnx_int8`` from it later reads that here, not only in the export's log.
    int8_keys = ("float_convs", "total_convs", "within_tolerance", "holdout_disagreement", "max_disagreement")
    int8_manifest = {} if int8_summary is None else {"int8": {k: int8_summary[k] for k in int8_keys}}
    (package / "manifest.json").write_text(
        json.dumps({**manifest, **int8_manifest, "files": files, "sha256": file_hashes}, indent=2, sort_keys=True)
    )
    return PackageBuild(
        files=files,
        file_sha256=file_hashes,
        parity=parity,
        latency_ms={k: float(v) for k, v in latency.items()},
        int8_test_accuracy=int8_accuracy,
        int8=int8_summary,
    )
