"""kill -9 at the worst moments, then the same command again: same versions, nothing twice, nothing half.

Each crash is a real ``SIGKILL`` of a real ``mfgv`` process, sent by the process itself at a named
point (``edge_sync.failpoints``: ``MFG_FAILPOINTS``), so the test knows where it died: ingest between
a batch's rows and its commit, training after the first epoch, export with the ONNX file written and
the rest of the package not, and the edge agent with the first block of a package file on disk.
After each, the rerun must finish as if nothing had happened: the dataset version the killed run
had made, model version v1 (the killed runs consumed no number), one row per image, no
in-progress file left anywhere under MFG_HOME, every stored artifact whole, and the dead runs
marked failed in Dagster with the reason.
"""

import json
import os
import shutil
import signal
from pathlib import Path

import dagster as dg
import pytest

from edge_sync.durable import sha256_file
from resources.artifact_store import ArtifactStore
from resources.lineage import LineageStore
from resources.registry import ModelRegistry
from resources.storage.scratch import PREFIX
from tests.processes import free_port, mfgv, start_edge_server

pytestmark = pytest.mark.e2e

FAST = ["--epochs", "8", "--image-size", "64", "--min-accuracy", "0", "--max-test-escape-rate", "1"]
LINE, VARIANT = "line1", "bracket-a"


def _onboard(home: Path, data: Path, report: Path, failpoint: str | None = None):
    env = {"MFG_FAILPOINTS": failpoint} if failpoint else None
    return mfgv(home, "onboard", str(data), "--line", LINE, "--variant", VARIANT, "--good-class", "good",
                "--report-json", str(report), *FAST, env=env)


def _killed_at(done, failpoint: str) -> None:
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr[-3000:])
    assert f"failpoint {failpoint}:" in done.stderr, done.stderr[-3000:]


def _in_progress(home: Path) -> list[Path]:
    return [p for p in home.rglob(f"{PREFIX}*")]


def _assert_every_artifact_whole(home: Path) -> None:
    """Each stored file hashes to its own name (content-addressed), so none is half-written."""
    store = ArtifactStore()
    checked = 0
    for kind in ("images", "checkpoints", "reports", "augmented"):
        for path in (store.root_path() / kind).rglob("*"):
            if path.is_file():
                assert sha256_file(path) == path.name.split(".")[0], path
                checked += 1
    assert checked > 60


def test_a_killed_onboard_reruns_to_the_same_versions_with_nothing_twice(
    mfg_home: Path, tiny_line: Path, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    # 1. Killed inside ingest: the batch's image rows are written, its commit row is not.
    _killed_at(_onboard(mfg_home, tiny_line, report, "ingest.before_batch_commit"), "ingest.before_batch_commit")
    lineage = LineageStore()
    assert len(lineage.read_table("images")) == 60 and lineage.read_table("image_batches").empty

    # 2. Killed after the first training epoch: ingest, labels and split are done by then.
    _killed_at(_onboard(mfg_home, tiny_line, report, "train.after_epoch"), "train.after_epoch")
    images = lineage.read_table("images")
    assert len(images) == 60 and not images.duplicated(["batch", "rel_path"]).any()
    assert (images["duplicate_of"] == "").all()  # the rerun's rows are not "duplicates" of the dead run's
    datasets = lineage.read_table("lineage", "asset = ?", ["dataset_version"])
    assert len(datasets) == 1
    dataset_id = datasets["output_id"].iloc[0]
    assert ModelRegistry().list_versions() == []

    # 3. Killed during export: the ONNX file is written in the package being built, nothing else.
    _killed_at(_onboard(mfg_home, tiny_line, report, "export.after_onnx"), "export.after_onnx")
    half_built = _in_progress(mfg_home / "artifacts")
    assert any((p / "model.onnx").is_file() for p in half_built if p.is_dir()), half_built
    assert not (ArtifactStore().root_path() / "packages").exists()
    assert ModelRegistry().list_versions() == []

    # 4. The same command, uninterrupted.
    done = _onboard(mfg_home, tiny_line, report)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(report.read_text())
    assert result["model_version"] == f"{LINE}-{VARIANT}-v1"
    assert result["dataset_version"] == dataset_id
    assert [v.version for v in ModelRegistry().list_versions()] == [f"{LINE}-{VARIANT}-v1"]
    assert _in_progress(mfg_home) == []
    _assert_every_artifact_whole(mfg_home)
    images = lineage.read_table("images")
    assert len(images) == 60 and not images.duplicated(["batch", "rel_path"]).any()
    assert len(lineage.read_table("image_batches")) == 1
    assert not lineage.read_table("labels").duplicated(["annotation_set_id", "sha256", "reviewer"]).any()
    assert len(lineage.read_table("dataset_items", "dataset_id = ?", [dataset_id])) == 60
    assert len(lineage.read_table("model_registry")) == 1
    assert len(list((ArtifactStore().root_path() / "packages").iterdir())) == 1
    assert "marked failed" in done.stdout
    with dg.DagsterInstance.from_config(str(mfg_home / "dagster")) as instance:
        statuses = sorted(r.dagster_run.status.value for r in instance.get_run_records())
        assert statuses == ["FAILURE", "FAILURE", "FAILURE", "SUCCESS"]
        failed = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
        for record in failed:
            messages = [e.message for e in instance.all_logs(record.dagster_run.run_id) if e.message]
            assert any("ended without finishing it" in m for m in messages), messages[-3:]

    # 5. The agent killed with part of the package on disk: the next sync resumes and activates it.
    _agent_killed_mid_download_resumes(mfg_home, tiny_line, tmp_path)


def _agent_killed_mid_download_resumes(home: Path, line_dir: Path, tmp_path: Path) -> None:
    added = mfgv(home, "edge-device", "add", "cam1", "--line", LINE, "--canary")
    assert added.returncode == 0, added.stderr
    token = next(line.split()[-1] for line in added.stdout.splitlines() if line.startswith("token"))
    deployed = mfgv(home, "deploy", "--line", LINE, "--variant", VARIANT, "--ring", "canary")
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    port = free_port()
    server = start_edge_server(home, port)
    state = tmp_path / "agent"
    camera = tmp_path / "camera"
    shutil.copytree(line_dir / "good", camera)
    agent = ["edge-agent", "--device", "cam1", "--server", f"http://127.0.0.1:{port}", "--camera-dir", str(camera),
             "--token", token, "--state-dir", str(state), "--once"]
    try:
        killed = mfgv(home, *agent, env={"MFG_FAILPOINTS": "agent.download.after_chunk"})
        _killed_at(killed, "agent.download.after_chunk")
        partial = state / "models" / f"{LINE}-{VARIANT}-v1.partial"
        assert partial.is_dir() and not (state / "active.json").exists()

        resumed = mfgv(home, *agent)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=30)
    active = json.loads((state / "active.json").read_text())
    assert active["active"] == f"{LINE}-{VARIANT}-v1"
    assert not partial.exists()
    installed = state / "models" / f"{LINE}-{VARIANT}-v1"
    manifest = json.loads(json.loads((installed / "signed_manifest.json").read_text())["manifest_json"])
    for item in manifest["files"]:  # every file whole, as the signed manifest lists it
        assert sha256_file(installed / "package" / item["path"]) == item["sha256"], item["path"]
    assert not list(state.rglob("*.part"))
    decisions = (state / "decisions.jsonl").read_text().splitlines()
    assert len(decisions) == len(list((line_dir / "good").iterdir()))
