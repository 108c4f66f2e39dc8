"""The real graph on a tiny generated line: ingest, labels, split, augmentation, real training (one
epoch), validation, real ONNX/OpenVINO/INT8 export with the parity check, registration, lineage —
through the ``mfgv`` command a user runs, against a Dagster instance under MFG_HOME."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from resources.lineage import LineageStore
from resources.registry import ModelRegistry
from resources.reporting.intervals import rate_interval
from tests.processes import free_port, mfgv, start_edge_server

pytestmark = pytest.mark.e2e

FAST = ["--epochs", "8", "--image-size", "64", "--min-accuracy", "0", "--max-test-escape-rate", "1"]


def _mfgv(home: Path, *args: str) -> subprocess.CompletedProcess:
    return mfgv(home, *args)


def test_onboard_runs_the_real_graph_and_new_batches_extend_it(mfg_home: Path, tiny_line: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    done = _mfgv(
        mfg_home, "onboard", str(tiny_line), "--task", "classify", "--format", "folders", "--line", "line1",
        "--variant", "bracket-a", "--good-class", "good", "--report-json", str(report_path), *FAST,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    printed = done.stdout + done.stderr  # progress and a closing summary, not library chatter
    for noise in ("great_expectations", "Replaced initializer", "BetaWarning", "alembic", "dagster - DEBUG", "Traceback"):
        assert noise not in printed, noise
    assert len(printed.splitlines()) < 80, printed[-3000:]
    assert "trained_model: done in" in printed and "model version      line1-bracket-a-v1" in done.stdout
    report = json.loads(report_path.read_text())
    for key in ("task", "line", "variant", "model_version", "dataset_version", "train_seconds", "total_seconds",
                "threshold", "exports", "parity", "report_html"):
        assert key in report, key
    assert report["model_version"] == "line1-bracket-a-v1"
    matrix = report["test"]["confusion_matrix"]
    assert sum(map(sum, matrix)) == report["test"]["n_images"] > 0
    assert report["test"]["accuracy"] == pytest.approx(sum(matrix[i][i] for i in range(len(matrix))) / report["test"]["n_images"])
    assert set(report["test"]["per_class"]) == {"good", "scratch", "dent", "stain", "missing_hole"}
    assert report["test"]["false_reject_rate"] is not None and report["test"]["escape_rate"] is not None
    decision = report["test"]["decision"]  # each rate with the exact interval of its own counts, in near-duplicate groups
    assert decision["interval_basis"] == "near-duplicate groups"
    assert 1 <= decision["n_defect_effective"] <= decision["n_defect_groups"] <= decision["n_defect"]
    assert 1 <= decision["n_good_effective"] <= decision["n_good_groups"] <= decision["n_good"]
    assert report["test"]["escape_rate_ci95"] == pytest.approx(
        rate_interval(decision["escapes"], decision["n_defect"], effective_total=decision["n_defect_effective"]), abs=1e-3
    )
    assert report["test"]["false_reject_rate_ci95"] == pytest.approx(
        rate_interval(decision["false_rejects"], decision["n_good"], effective_total=decision["n_good_effective"]), abs=1e-3
    )
    assert "95 % CI" in done.stdout
    assert report["parity"]["passed"] is True
    assert report["parity"]["max_abs_diff"] <= report["parity"]["tolerance"]
    for fmt in ("onnx", "openvino", "onnx_int8"):
        assert Path(report["exports"][fmt]).is_file(), fmt
    assert Path(report["exports"]["openvino"]).with_suffix(".bin").is_file()
    package = Path(report["exports"]["onnx"]).parent
    manifest = json.loads((package / "manifest.json").read_text())
    assert set(manifest["sha256"]) >= {"model.onnx", "openvino/model.xml", "openvino/model.bin", "selftest.npz"}
    # INT8 precision was chosen on validation images, and what stayed in float is recorded
    assert manifest["int8"]["float_convs"] == report["int8"]["float_convs"]
    assert manifest["int8"]["within_tolerance"] == report["int8"]["within_tolerance"]  # deploy reads it
    assert report["int8"]["tries"][0]["float_convs"] == 0
    assert report["int8"]["n_holdout"] > 0
    html = Path(report["report_html"]).read_text()
    assert "data:image/png;base64," in html
    assert report["model_version"] in html  # the model by its version name, not by its hash
    # The images that set the threshold are named by the file in the user's folder, to open and review
    set_by = report["threshold_set_by"]
    assert set_by and all(Path(row["source_path"]).is_file() for row in set_by)
    assert all(Path(row["source_path"]).is_relative_to(tiny_line.resolve()) for row in set_by)
    assert all(row["source_path"].endswith(row["rel_path"].partition("/")[2]) for row in set_by)

    version = ModelRegistry().get("line1-bracket-a-v1")
    assert version.status.value == "candidate"
    assert version.dataset_version == report["dataset_version"]

    lineage = _mfgv(mfg_home, "lineage", "line1-bracket-a-v1", "--full")
    assert lineage.returncode == 0, lineage.stderr
    items = LineageStore().read_table("dataset_items", "dataset_id = ?", [report["dataset_version"]])
    assert len(items) == 60
    for sha in items["sha256"]:
        assert sha in lineage.stdout
    for asset in ("registered_model", "exported_model", "validation_report", "trained_model", "augmented_set",
                  "dataset_version", "annotations", "raw_images"):
        assert f"{asset}:" in lineage.stdout, asset
    short = _mfgv(mfg_home, "lineage", "line1-bracket-a-v1")  # the default: the tree and counts, not every image
    assert short.returncode == 0 and len(short.stdout.splitlines()) < 60 and items["sha256"].iloc[0] not in short.stdout
    assert "--full" in short.stdout
    unknown = _mfgv(mfg_home, "lineage", "line1-bracket-a-v9")
    assert unknown.returncode == 2 and "registered versions: line1-bracket-a-v1" in unknown.stderr
    models = _mfgv(mfg_home, "models")
    assert models.stdout.splitlines()[0].split()[:3] == ["version", "status", "task"]
    assert "line1-bracket-a-v1" in models.stdout and f"{100 * report['test']['accuracy']:.2f} %" in models.stdout

    with dg.DagsterInstance.from_config(str(mfg_home / "dagster")) as instance:
        runs = instance.get_run_records()
        assert len(runs) == 1 and runs[0].dagster_run.job_name == "classify_job"
        event = instance.get_latest_materialization_event(dg.AssetKey("registered_model"))
        assert event is not None and event.dagster_event.partition == "line1.bracket-a"
        validation = instance.get_latest_materialization_event(dg.AssetKey("validation_report"))
        shown = validation.asset_materialization.metadata
        assert "accuracy [line1.bracket-a]" in shown and "accuracy" not in shown  # one plot line per product
        assert shown["lineage output"].value.startswith("report:") and "code version" in shown

    # The same command again: nothing changed, so nothing is trained; the registered version is named.
    same = _mfgv(
        mfg_home, "onboard", str(tiny_line), "--task", "classify", "--format", "folders", "--line", "line1",
        "--variant", "bracket-a", "--good-class", "good", "--report-json", str(tmp_path / "again.json"), *FAST,
    )
    assert same.returncode == 0, same.stderr[-3000:]
    assert "nothing changed since line1-bracket-a-v1" in same.stdout and "--force" in same.stdout
    assert json.loads((tmp_path / "again.json").read_text())["model_version"] == "line1-bracket-a-v1"

    # A second batch of the same variant lands (with a corrupt file): it extends the data.
    batch = mfg_home / "landing" / "line1" / "bracket-a" / "b2"
    shutil.copytree(tiny_line / "good", batch / "good", ignore=shutil.ignore_patterns("*_0000[0-5].png"))
    generated = sorted((batch / "good").iterdir())[0]
    variant = generated.read_bytes()
    (batch / "good" / "extra.png").write_bytes(variant[: len(variant) // 2])  # truncated
    (batch / "_READY").write_text("")
    # ... and the retrain starts from the registered v1 (--init-from), recorded as such
    rerun = _mfgv(mfg_home, "onboard", str(tiny_line), "--line", "line1", "--variant", "bracket-a",
                  "--good-class", "good", "--init-from", "line1-bracket-a-v1", *FAST)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    v2 = ModelRegistry().get("line1-bracket-a-v2")
    v1 = ModelRegistry().get("line1-bracket-a-v1")
    assert v1.parameters["init"]["source"] == "backbone" and v1.parameters["init"]["name"] == "mobilenetv2_100"
    assert v2.parameters["init"]["source"] == "registered_model"
    assert v2.parameters["init"]["checkpoint_sha256"] == v1.checkpoint_sha256
    assert v2.parameters["init"]["head_transferred"] is True
    images = LineageStore().read_table("images", "partition = ?", ["line1.bracket-a"])
    assert set(images["batch"]) >= {"b2"} and len(set(images["batch"])) == 2
    assert images["sha256"].nunique() == 60  # b2 only repeats images: deduplicated, nothing lost
    quarantine = LineageStore().read_table("quarantine")
    assert list(quarantine["rel_path"]) == ["good/extra.png"]
    assert quarantine["reason"].iloc[0] == "truncated"
    assert (mfg_home / "quarantine" / "line1" / "bracket-a" / "b2" / "good" / "extra.png").exists()

    # The registered model goes to the edge: a real sync server, a real agent, signed and verified.
    _edge_round_trip(mfg_home, tiny_line, tmp_path)


def _edge_round_trip(home: Path, line_dir: Path, tmp_path: Path) -> None:
    import signal
    import time

    from edge_sync.server_state import ServerState

    canary = _mfgv(home, "edge-device", "add", "cam-canary", "--line", "line1", "--canary")
    assert canary.returncode == 0, canary.stderr
    token = next(line.split()[-1] for line in canary.stdout.splitlines() if line.startswith("token"))
    deployed = _mfgv(home, "deploy", "--line", "line1", "--variant", "bracket-a", "--ring", "canary")
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    assert "canary" in ServerState(home / "edge").deployments("line1")

    port = free_port()
    server = start_edge_server(home, port)
    try:
        camera = tmp_path / "camera"
        shutil.copytree(line_dir / "good", camera)
        agent = _mfgv(home, "edge-agent", "--device", "cam-canary", "--server", f"http://127.0.0.1:{port}",
                      "--camera-dir", str(camera), "--token", token, "--state-dir", str(tmp_path / "agent"),
                      "--once", "--window-seconds", "0.01")
        assert agent.returncode == 0, agent.stderr[-3000:]
        time.sleep(0.2)  # the window (0.01 s) is now due: a second pass, as after a restart, closes and uploads it
        agent = _mfgv(home, "edge-agent", "--device", "cam-canary", "--server", f"http://127.0.0.1:{port}",
                      "--camera-dir", str(camera), "--token", token, "--state-dir", str(tmp_path / "agent"),
                      "--once", "--window-seconds", "0.01")
        assert agent.returncode == 0, agent.stderr[-3000:]
        active = json.loads((tmp_path / "agent" / "active.json").read_text())
        assert "line1-bracket-a-v2" in json.dumps(active)  # the newest registered version
        windows = ServerState(home / "edge").windows("line1")
        assert sum(w["inspected"] for w in windows) == 12, agent.stderr[-3000:]
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=30)

    # Promoted by hand as the edge sensor would: the fleet gets the canary's own version and format
    other = _mfgv(home, "promote", "--line", "line1", "--variant", "bracket-b")
    assert other.returncode == 2 and "not a model of variant bracket-b" in other.stderr
    promoted = _mfgv(home, "promote", "--line", "line1", "--variant", "bracket-a")
    assert promoted.returncode == 0, promoted.stderr[-3000:]
    live = {ring: json.loads(signed.manifest_json) for ring, signed in ServerState(home / "edge").deployments("line1").items()}
    assert list(live) == ["fleet"]  # the canary has done its job: its devices follow the fleet
    assert (live["fleet"]["model_version"], live["fleet"]["model_format"]) == ("line1-bracket-a-v2", "onnx")
    again = _mfgv(home, "promote", "--line", "line1", "--variant", "bracket-a")
    assert again.returncode == 2 and "line line1 has no live canary to promote" in again.stderr

    assert _mfgv(home, "deploy", "--line", "line1", "--variant", "bracket-a", "--ring", "canary").returncode == 0
    rolled = _mfgv(home, "rollback", "--line", "line1")
    assert rolled.returncode == 0, rolled.stderr
    assert "ended canary" in rolled.stdout
    assert "canary" not in ServerState(home / "edge").deployments("line1")


def test_search_and_folds_run_through_the_graph_and_a_refused_model_still_gets_its_report(
    mfg_home: Path, tiny_line: Path, tmp_path: Path
) -> None:
    """--hpo-trials and --cv-folds on the real graph (real training), with a release bar no tiny model
    meets: the run is refused, nothing is registered, and the report JSON and HTML still say why."""
    report_path = tmp_path / "report.json"
    done = _mfgv(
        mfg_home, "onboard", str(tiny_line), "--line", "line1", "--variant", "searched", "--good-class", "good",
        "--report-json", str(report_path), "--epochs", "8", "--image-size", "64", "--hpo-trials", "2",
        "--cv-folds", "2", "--min-accuracy", "1.0",
    )
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert "meets_release_criteria" in done.stderr and "test accuracy" in done.stderr
    report = json.loads(report_path.read_text())
    assert report["registered"] is False and report["model_version"] is None
    assert report["release"]["passed"] is False
    assert any("test accuracy" in failure for failure in report["release"]["failures"])
    # the model is the search's best trial, backbone included (the search may pick either bundled one)
    assert report["backbone"]["name"] == report["hpo"]["best_params"].get("backbone", "mobilenetv2_100")
    assert len(report["backbone"]["sha256"]) == 64
    assert len(report["hpo"]["trials"]) == 2
    assert {"learning_rate", "weight_decay", "epochs"} <= set(report["hpo"]["best_params"])
    assert report["hpo"]["best_value"] == min(t["value"] for t in report["hpo"]["trials"] if t["value"] is not None)
    assert report["cv"]["folds"] == 2 and len(report["cv"]["per_fold"]) == 2
    accuracies = [fold["accuracy"] for fold in report["cv"]["per_fold"]]
    assert report["cv"]["accuracy_mean"] == pytest.approx(sum(accuracies) / 2)
    html = Path(report["report_html"]).read_text()
    assert "Refused" in html and "Hyperparameter search" in html and "Cross-validation" in html
    assert ModelRegistry().list_versions() == []
    # a refused try does not become the options the variant's later runs (sensors) use
    assert not (mfg_home / "variants" / "line1" / "run_configs" / "searched.json").exists()
    # every trial is in lineage with its parameters
    rows = LineageStore().read_table("lineage", "asset = ?", ["hyperparameter_search"])
    assert len(rows) == 1 and '"trials"' in rows["parameters"].iloc[0]


def test_a_line_without_a_good_class_trains_validates_and_registers(mfg_home: Path, tiny_line: Path, tmp_path: Path) -> None:
    """Without --good-class (NEU-style: every class is a defect type) there is no false-reject rate
    per epoch, per fold or at test; the run must still land a registered model and say why the
    rates are absent."""
    report_path = tmp_path / "report.json"
    done = _mfgv(
        mfg_home, "onboard", str(tiny_line), "--line", "line1", "--variant", "all-defects", "--no-good-class",
        "--report-json", str(report_path), "--cv-folds", "2", *FAST,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["registered"] is True and report["model_version"] == "line1-all-defects-v1"
    assert report["test"]["false_reject_rate"] is None and report["test"]["escape_rate"] is None
    assert report["cv"]["folds"] == 2 and report["cv"]["false_reject_rate_mean"] is None
    assert any("No class is marked good" in note for note in report["notes"])

    # A plant's classifier gives a detector for another variant its features (--init-from), through the graph.
    data = tmp_path / "anomaly-line"
    done = _mfgv(mfg_home, "sample-anomaly-line", str(data), "--seed", "5", "--train-good", "12", "--test-good", "6",
                 "--test-per-defect", "3", "--image-size", "64")
    assert done.returncode == 0, done.stderr[-3000:]
    anomaly_path = tmp_path / "anomaly.json"
    done = _mfgv(
        mfg_home, "onboard", str(data), "--task", "anomaly", "--format", "mvtec", "--line", "line1", "--variant", "cap-b",
        "--init-from", "line1-all-defects-v1", "--report-json", str(anomaly_path), "--min-accuracy", "0",
        "--max-test-escape-rate", "1",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    anomaly = json.loads(anomaly_path.read_text())
    classifier = ModelRegistry().get("line1-all-defects-v1")
    init = anomaly["training"]["init"]
    assert init["source"] == "registered_model" and init["checkpoint_sha256"] == classifier.checkpoint_sha256
    assert anomaly["training"]["arch"] == "patchcore/mobilenetv2_100-registered" and "backbone" not in anomaly
    assert anomaly["registered"] is True and anomaly["parity"]["passed"] is True
    [hashes] = LineageStore().read_table("lineage", "asset = ? AND output_id = ?", ["trained_model", anomaly["model_id"]])["input_hashes"]
    assert json.loads(hashes)["checkpoint:init_from"] == classifier.checkpoint_sha256
