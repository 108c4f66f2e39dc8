"""A signed hold order: the agent stops deciding with the model rolled back and says it holds.

Through the real server app: the first canary of a line (no fleet model) is put on hold; before,
the server answered 204 and the device went on deciding with the rolled-back model.
"""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from edge_sync.agent import AgentConfig, EdgeAgent
from edge_sync.agent.errors import AgentError
from edge_sync.contract import HoldOrder, Ring, load_private_key, sign_hold
from edge_sync.server import create_app
from edge_sync.server_state import ServerState
from tests.edge_sync.test_agent import Artifacts, FakeClock, _package, _signed, _write_image, artifacts

__all__ = ["artifacts"]


def _order(line: str = "line1") -> HoldOrder:
    return HoldOrder(
        order_id=f"{line}-hold-1", line=line, reason="canary v1 rolled back", rolled_back_version="v1",
        created_at=datetime.now(UTC),
    )


@pytest.fixture
def canary_only(artifacts: Artifacts, tmp_path: Path) -> tuple[ServerState, EdgeAgent, Path]:
    state = ServerState(tmp_path / "server")
    token = state.register_device("dev-1", "line1", canary=True)
    package = tmp_path / "package"
    package.mkdir()
    for name, data in _package(artifacts).items():
        (package / name).write_bytes(data)
    state.publish(_signed(artifacts, "v1", ring=Ring.CANARY, devices=("dev-1",)), package)
    camera = tmp_path / "camera"
    camera.mkdir()
    config = AgentConfig(
        device_id="dev-1", server_url="http://testserver", token=token, camera_dir=camera,
        state_dir=tmp_path / "agent", public_key_path=artifacts.public_key, num_threads=1,
    )
    agent = EdgeAgent(config, client=TestClient(create_app(state)), clock=FakeClock())
    return state, agent, camera


def test_a_hold_order_stops_the_model_and_the_device_reports_it(canary_only, artifacts: Artifacts) -> None:
    state, agent, camera = canary_only
    assert agent.sync_once().status == "activated" and agent.active_version == "v1"
    _write_image(camera / "a.png", 0)
    assert len(agent.inspect_pending()) == 1

    state.hold(sign_hold(_order(), load_private_key(artifacts.private_key)))
    assert "canary" not in state.deployments("line1")

    outcome = agent.sync_once()
    assert outcome.status == "hold" and outcome.model_version is None
    assert "manual inspection" in outcome.detail and agent.active_version is None
    _write_image(camera / "b.png", 1)
    assert agent.inspect_pending() == [] and (camera / "b.png").exists()  # waits for a model, undecided
    # the window of v1 was closed at the switch, and the device reports that it holds
    assert agent.sync_once().status == "hold"
    [seen] = state.device_status("line1")
    assert seen["running"] == "hold:line1-hold-1"
    record = json.loads((agent.config.state_dir / "active.json").read_text())
    assert record["active"] is None and record["hold"].startswith("line1-hold-1:")
    with pytest.raises(AgentError, match="on hold"):
        agent.rollback()

    # a restart keeps holding; a new deployment ends the hold on server and device
    restarted = EdgeAgent(agent.config, client=TestClient(create_app(state)), clock=FakeClock())
    assert restarted.active_version is None
    package = Path(state.package_dir("v1"))
    state.publish(_signed(artifacts, "v2", ring=Ring.FLEET), package)
    assert state.hold_for("line1") is None
    assert restarted.sync_once().status == "activated" and restarted.active_version == "v2"
    assert [r["event"] for r in state.history("line1")] == ["publish", "hold", "publish", "end_hold"]


def test_a_forged_hold_order_is_refused_and_the_model_keeps_running(canary_only, artifacts: Artifacts) -> None:
    state, agent, _ = canary_only
    assert agent.sync_once().status == "activated"
    state.hold(sign_hold(_order(), load_private_key(artifacts.other_private_key)))
    outcome = agent.sync_once()
    assert outcome.status == "refused" and "does not verify" in outcome.detail
    assert agent.active_version == "v1"
