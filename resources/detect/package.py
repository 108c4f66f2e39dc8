"""The detection engine's package: ONNX and OpenVINO graphs with the box post-processing inside,
parity-checked against torch, with the self-test the device replays before it activates the model."""

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from resources.detect.steps import defect_classes
from resources.engine_io import EngineMachine, ExportOutcome, ModelRecord, TaskData

__all__ = ["detector_package"]

_PARITY_IMAGES = 8
_SELFTEST_IMAGES = 4


def detector_package(
    model: ModelRecord,
    threshold: float | None,
    data: TaskData,
    config: Any,
    out_dir: Path,
    package_manifest: dict[str, Any],
    machine: EngineMachine,
) -> ExportOutcome:
    """ONNX and OpenVINO graphs with the box post-processing inside, parity-checked against torch,
    with the self-test the device replays before it activates the model."""
    from edge_sync.contract import SELFTEST_FILE
    from resources.artifact_store import sha256_file
    from resources.detect.yolo_parity import SCORE_TOLERANCE, check_detector_parity, measure_detector_latency
    from resources.detect.yolo_export import export_detector
    from resources.detect.yolo_predict import build_graph, load_detector

    import torch

    detector = load_detector(data.store.read_bytes(model.checkpoint))
    images = data.split("test", model.image_size, model.resize).images[:_PARITY_IMAGES]

    export = export_detector(detector, out_dir)
    exports = {"onnx": export.onnx, "openvino": export.openvino}
    parity = check_detector_parity(detector, exports, images, score_threshold=threshold or 0.25)
    latency = measure_detector_latency(
        detector, exports, images[0], runs=config.latency_repeats, num_threads=machine.num_threads
    )
    graph = build_graph(detector, max_det=export.max_det, iou=export.iou)
    selftest = images[:_SELFTEST_IMAGES]
    with torch.inference_mode():
        expected = graph(torch.from_numpy(np.ascontiguousarray(selftest.transpose(0, 3, 1, 2))).float()).numpy()
    np.savez(out_dir / SELFTEST_FILE, images=selftest, detections=expected.astype(np.float32))
    files = {fmt: path.relative_to(out_dir).as_posix() for fmt, path in exports.items()}
    manifest = {
        "task": "detect",
        **package_manifest,
        "output": {
            "name": "detections",
            "layout": "x_min, y_min, x_max, y_max, score, class_id (defect classes, in order); zero rows pad",
            "defect_classes": list(defect_classes(data.classes, data.good_class)),
            "max_det": export.max_det,
            "iou": export.iou,
            "end_to_end": export.end_to_end,
            "decision": "reject when any box scores >= threshold",
        },
    }
    hashes = {p.relative_to(out_dir).as_posix(): sha256_file(p) for p in sorted(out_dir.rglob("*")) if p.is_file()}
    (out_dir / "manifest.json").write_text(
        json.dumps({**manifest, "int8": None, "files": files, "sha256": hashes}, indent=2, sort_keys=True)
    )
    runtimes = {r.runtime: r for r in parity.runtimes}
    max_diff = max((r.max_score_diff for r in parity.runtimes), default=0.0)
    return ExportOutcome(
        files=files,
        file_sha256=hashes,
        parity_passed=parity.passed,
        parity={"max_abs_diff": max_diff, "max_score_diff": max_diff, "score_tolerance": SCORE_TOLERANCE, "runtimes": {k: asdict(v) for k, v in runtimes.items()}},
        parity_description=(
            f"ONNX Runtime and OpenVINO reproduce the detector's boxes (IoU >= {parity.iou_match}, scores within "
            f"{parity.score_tolerance:g}) on {len(images)} test images: {parity.summary()}"
            if parity.passed
            else f"{parity.summary()} — do not deploy: re-export from the same checkpoint and check the runtime runs in FP32"
        ),
        parity_metadata={"max_score_diff": max_diff, "n_images": len(images)},
        latency_ms=latency,
        int8_note="no INT8 model: the detector's package is FP32 ONNX and OpenVINO in this release",
        metadata={"parity_max_score_diff": max_diff},
        lineage_parameters={"task": "detect", "int8": False, "max_det": export.max_det, "iou": export.iou},
    )
