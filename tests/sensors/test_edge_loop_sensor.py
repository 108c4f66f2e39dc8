"""edge_loop_sensor against a real sync-server state and warehouse: metrics in, run requests out."""

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from edge_sync.contract import DeploymentManifest, InputSpec, MetricWindow, ModelFile, Ring
from mfg_assets.edge_metrics import edge_metrics
from resources.edge import EdgePolicy, EdgeSync
from resources.lineage import LineageStore
from mfg_assets.deployment import promotion_config
from sensors.edge import edge_loop_sensor


def _publish_canary(edge: EdgeSync, tmp_path: Path, deployed_at: datetime, model_format: str = "onnx", **row: object) -> str:
    package = tmp_path / "package"
    package.mkdir()
    files = {"model.onnx": b"model bytes", "selftest.npz": b"self-test bytes"}
    for name, data in files.items():
        (package / name).write_bytes(data)
    manifest = DeploymentManifest(
        deployment_id="line1-a-v2-canary-1", line="line1", model_version="line1-a-v2", model_format=model_format,
        model_path="model.onnx",
        files=tuple(ModelFile(path=n, sha256=hashlib.sha256(d).hexdigest(), n_bytes=len(d)) for n, d in files.items()),
        input=InputSpec(height=32, width=32), classes=("bad", "good"), good_class="good", threshold=0.5,
        dataset_version="dataset:x", ring=Ring.CANARY, devices=("dev1",), created_at=deployed_at,
    )
    edge.server_state().publish(edge.sign(manifest), package)
    LineageStore().append_table("deployments", [{
        "deployment_id": manifest.deployment_id, "line": "line1", "variant": "a", "model_version": "line1-a-v2",
        "ring": "canary", "model_format": model_format, "devices": json.dumps(["dev1"]), "deployed_at": deployed_at.isoformat(),
        "partition": "line1.a", "baseline_scores": json.dumps([10] * 20), "baseline_brightness": json.dumps([5] * 16),
        "signature_key_id": "k", "run_id": "r", **row,
    }])
    return manifest.deployment_id


def _spread(total: int, bins: int) -> tuple[int, ...]:
    """``total`` images over ``bins`` as evenly as counts allow (a window's histograms add up to inspected)."""
    return tuple(total // bins + (1 if i < total % bins else 0) for i in range(bins))


def _upload(edge: EdgeSync, token_device, start: datetime, **counts) -> None:
    window = MetricWindow(
        window_id=f"dev1-{start:%H%M%S}", device_id="dev1", line="line1", model_version="line1-a-v2",
        started_at=start, ended_at=start + timedelta(minutes=1),
        score_histogram=_spread(counts["inspected"], 20), input_brightness_histogram=_spread(counts["inspected"], 16), **counts,
    )
    edge.server_state().record_window(window, token_device, datetime.now(UTC))


def test_sensor_promotes_a_healthy_canary_once_evidence_is_in(mfg_home: Path, tmp_path: Path) -> None:
    edge = EdgeSync()
    state = edge.server_state()
    token = state.register_device("dev1", "line1", canary=True)
    device = state.authenticate(token)
    deployed_at = datetime.now(UTC) - timedelta(seconds=5)
    # An INT8 canary deployed with its shortfall accepted by a person
    deployment_id = _publish_canary(edge, tmp_path, deployed_at, "onnx_int8", int8_shortfall_accepted=True)
    resources = {"edge": edge, "lineage": LineageStore(), "edge_policy": EdgePolicy()}
    with dg.instance_for_test() as instance:
        _upload(edge, device, deployed_at, inspected=40, rejected=2, confirmed_defects=2, false_rejects=0, escapes_found=0)
        assert dg.materialize([edge_metrics], instance=instance, resources=resources).success
        waiting = edge_loop_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert waiting.run_requests == []  # 40 parts: not enough evidence yet

        _upload(edge, device, deployed_at + timedelta(minutes=2), inspected=120, rejected=6, confirmed_defects=6,
                false_rejects=0, escapes_found=0)
        assert dg.materialize([edge_metrics], instance=instance, resources=resources).success
        result = edge_loop_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        [request] = result.run_requests
        assert request.job_name == "deploy_job"
        assert request.run_key == f"promote:{deployment_id}"
        # The fleet gets what the canary ran: the same file, refused unless this canary is still live with the
        # registered version (mfg_assets.deployment.promotion_refusal)
        assert request.run_config["ops"]["deployment"]["config"] == {
            "ring": "fleet", "model_format": "onnx_int8", "canary_devices": [], "accept_int8_shortfall": True,
            "promote_canary": deployment_id,
        }
        assert request.partition_key == "line1.a"


def test_a_promotion_from_a_row_written_before_shortfalls_were_recorded_accepts_none(mfg_home: Path, tmp_path: Path) -> None:
    edge = EdgeSync()
    deployment_id = _publish_canary(edge, tmp_path, datetime.now(UTC), "onnx_int8")
    partition, config = promotion_config(LineageStore(), deployment_id)
    assert partition == "line1.a"
    assert (config.ring, config.model_format, config.accept_int8_shortfall) == ("fleet", "onnx_int8", False)
    assert config.promote_canary == deployment_id
