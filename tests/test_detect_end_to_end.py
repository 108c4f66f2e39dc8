"""Object detection through the one graph, on a generated line with boxes in YOLO format: ingest (a bad
label line quarantined, its image set aside), box labels in ``label_boxes``, a split stratified on the
classes present, a real YOLO epoch offline, the report with mAP50 / mAP50-95 per class and the
decision rates, ONNX + OpenVINO export with box parity, registration, and one edge round trip (signed
package, the device's self-test of the boxes, decisions, a metric window), through the ``mfgv``
commands a user runs."""

import json
from pathlib import Path

import dagster as dg
import pytest

from resources.lineage import LineageStore
from resources.registry import ModelRegistry
from tests.edge_round_trip import edge_round_trip
from tests.processes import mfgv

pytestmark = pytest.mark.e2e

LENIENT = ["--min-accuracy", "0", "--max-test-escape-rate", "1"]  # two epochs on 40 images learn little


def test_detect_onboard_export_register_and_edge_round_trip(mfg_home: Path, tmp_path: Path) -> None:
    data = tmp_path / "line"
    done = mfgv(mfg_home, "sample-line", str(data), "--seed", "5", "--images-per-class", "8", "--good-images", "16",
                "--image-size", "96", "--boxes", "yolo")
    assert done.returncode == 0, done.stderr[-3000:]
    victim = sorted((data / "labels").glob("*.txt"))[-1]
    victim.write_text("7 0.5 0.5 0.2 0.2\n")  # a class id with no name: its image is set aside

    report_path = tmp_path / "report.json"
    done = mfgv(mfg_home, "onboard", str(data), "--task", "detect", "--format", "yolo", "--line", "line4",
                "--variant", "plate", "--epochs", "2", "--report-json", str(report_path), *LENIENT)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(report_path.read_text())
    test = report["test"]
    assert report["task"] == "detect" and report["model_version"] == "line4-plate-v1"
    assert 0.0 <= test["map50"] <= 1.0 and 0.0 <= test["map50_95"] <= test["map50"] + 1e-9
    assert set(test["per_class_ap"]) == {"scratch", "dent", "stain"}
    assert test["escape_rate_ci95"][0] <= test["escape_rate"] <= test["escape_rate_ci95"][1]
    assert report["parity"]["passed"] is True and set(report["exports"]) == {"onnx", "openvino"}
    manifest = json.loads((Path(report["exports"]["onnx"]).parent / "manifest.json").read_text())
    assert manifest["task"] == "detect" and "selftest.npz" in manifest["sha256"]
    assert manifest["output"]["defect_classes"] == ["dent", "scratch", "stain"]
    html = Path(report["report_html"]).read_text()
    assert "data:image/png;base64," in html

    lineage = LineageStore()
    quarantine = lineage.read_table("quarantine")
    bad = quarantine[quarantine["reason"] == "bad_box_label"]
    assert len(bad) == 1 and victim.stem in bad["rel_path"].iloc[0] and "line 1" in bad["detail"].iloc[0]
    items = lineage.read_table("dataset_items", "dataset_id = ?", [report["dataset_version"]])
    assert victim.stem not in " ".join(items["rel_path"]) and len(items) == 16 + 3 * 8 - 1
    assert {"dent", "scratch", "stain", "good"} <= set(items.loc[items["split"] == "test", "label"]) | set(
        items.loc[items["split"] == "val", "label"]
    )
    boxes = lineage.read_table("label_boxes")
    assert len(boxes) > 0 and set(boxes["class_name"]) == {"dent", "scratch", "stain"}
    lineage_rows = lineage.read_table("lineage")
    trained = lineage_rows[lineage_rows["asset"] == "trained_model"]
    assert json.loads(trained["parameters"].iloc[-1])["device"] == "cpu"
    version = ModelRegistry().get("line4-plate-v1")
    assert version.task == "detect" and version.metrics["test_map50"] == pytest.approx(test["map50"])
    with dg.DagsterInstance.from_config(str(mfg_home / "dagster")) as instance:
        assert [r.dagster_run.job_name for r in instance.get_run_records()] == ["detect_job"]

    decisions, windows = edge_round_trip(
        mfg_home, tmp_path, line="line4", variant="plate", device="cam-9", images=sorted((data / "images").iterdir())[:5]
    )
    assert len(decisions) == 5 and {d["verdict"] for d in decisions} <= {"pass", "reject"}
    assert all(0.0 <= d["defect_score"] <= 1.0 for d in decisions)
    assert sum(w["inspected"] for w in windows) == 5
    counted = sum(d.get("counts", {}).get("boxes", 0) for d in decisions)  # boxes over the threshold, per image
    assert sum(w.get("counters", {}).get("boxes", 0) for w in windows) == counted
