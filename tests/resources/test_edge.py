"""rollback_line on a real sync-server state: end a canary, or put the fleet back on a version."""

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_sync.contract import DeploymentManifest, InputSpec, ModelFile, Ring, load_public_key, verify_manifest
from resources.edge import EdgeSync, rollback_line


def _publish(edge: EdgeSync, tmp_path: Path, version: str, ring: Ring, *, via_resource: bool = False) -> None:
    package = tmp_path / version
    package.mkdir(exist_ok=True)
    files = {"model.onnx": version.encode(), "selftest.npz": b"self-test of " + version.encode()}
    for name, data in files.items():
        (package / name).write_bytes(data)
    manifest = DeploymentManifest(
        deployment_id=f"{version}-{ring.value}", line="line1", model_version=version, model_format="onnx",
        model_path="model.onnx",
        files=tuple(ModelFile(path=n, sha256=hashlib.sha256(d).hexdigest(), n_bytes=len(d)) for n, d in files.items()),
        input=InputSpec(height=32, width=32), classes=("bad", "good"), dataset_version="dataset:x", ring=ring,
        devices=("dev1",) if ring is Ring.CANARY else (), created_at=datetime.now(UTC),
    )
    if via_resource:
        edge.publish(manifest, package)
    else:
        edge.server_state().publish(edge.sign(manifest), package)


def _fleet_version(edge: EdgeSync) -> str:
    signed = edge.server_state().deployments("line1")["fleet"]
    return verify_manifest(signed, load_public_key(edge.key_paths()[1])).model_version


def test_rollback_ends_a_canary_then_returns_the_fleet_to_earlier_versions(mfg_home: Path, tmp_path: Path) -> None:
    edge = EdgeSync()
    _publish(edge, tmp_path, "line1-a-v1", Ring.FLEET)
    _publish(edge, tmp_path, "line1-a-v2", Ring.FLEET)
    _publish(edge, tmp_path, "line1-a-v3", Ring.CANARY)

    assert "ended canary" in rollback_line(edge, "line1")
    assert "canary" not in edge.server_state().deployments("line1")

    assert "from line1-a-v2 to line1-a-v1" in rollback_line(edge, "line1")
    assert _fleet_version(edge) == "line1-a-v1"  # re-signed by the platform: devices verify it

    assert "to line1-a-v3" in rollback_line(edge, "line1", "line1-a-v3")  # a canary-only version, now fleet
    assert _fleet_version(edge) == "line1-a-v3"
    with pytest.raises(LookupError, match="never deployed"):
        rollback_line(edge, "line1", "line1-a-v9")


def test_edge_policy_defaults_are_the_health_thresholds() -> None:
    """One definition of the thresholds: the Dagster resource and the pure policy agree."""
    from dataclasses import asdict

    from resources.edge import EdgePolicy
    from sensors.policy import HealthThresholds

    assert EdgePolicy().model_dump() == asdict(HealthThresholds())
    assert EdgePolicy(min_inspected=7).thresholds() == HealthThresholds(min_inspected=7)


def test_publishing_the_canary_version_to_the_fleet_ends_the_canary_ring(mfg_home: Path, tmp_path: Path) -> None:
    edge = EdgeSync()
    _publish(edge, tmp_path, "line1-a-v1", Ring.FLEET, via_resource=True)
    _publish(edge, tmp_path, "line1-a-v2", Ring.CANARY, via_resource=True)
    _publish(edge, tmp_path, "line1-a-v3", Ring.FLEET, via_resource=True)  # another version: the canary goes on
    assert set(edge.server_state().deployments("line1")) == {"canary", "fleet"}

    _publish(edge, tmp_path, "line1-a-v2", Ring.FLEET, via_resource=True)  # the promotion

    assert set(edge.server_state().deployments("line1")) == {"fleet"} and _fleet_version(edge) == "line1-a-v2"


def test_rolling_back_the_first_canary_holds_the_line_and_a_second_rollback_says_so(mfg_home: Path, tmp_path: Path) -> None:
    """Before: 'canary devices run the fleet model again' with no fleet model, a 204, and the device
    kept deciding with the rolled-back model."""
    from edge_sync.contract import verify_hold

    edge = EdgeSync()
    state = edge.server_state()
    device = state.authenticate(state.register_device("dev1", "line1", canary=True))
    _publish(edge, tmp_path, "line1-a-v1", Ring.CANARY)

    said = rollback_line(edge, "line1")

    assert "no fleet model, so it is on hold" in said and "run the fleet model" not in said
    served = state.deployment_for(device)
    order = verify_hold(served, load_public_key(edge.key_paths()[1]))
    assert order.rolled_back_version == "line1-a-v1" and order.line == "line1"
    with pytest.raises(LookupError, match="on hold already"):
        rollback_line(edge, "line1")
    # an explicit version ends the hold: the fleet runs it
    assert "from no model (on hold) to line1-a-v1" in rollback_line(edge, "line1", "line1-a-v1")
    assert state.hold_for("line1") is None and _fleet_version(edge) == "line1-a-v1"
