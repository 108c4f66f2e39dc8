"""The agent against the real sync server app (``create_app`` behind a ``TestClient``), not a fake.

The fault-injection tests of ``test_agent`` (cut transfers, wrong ETags) use a scripted server; these
run the same protocol end to end against the server's own code, so the two sides cannot drift.
"""

import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from edge_sync.agent import AgentConfig, EdgeAgent
from edge_sync.server import create_app
from edge_sync.server_state import ServerState
from tests.edge_sync.test_agent import Artifacts, FakeClock, _package, _signed, _write_image, artifacts

__all__ = ["artifacts"]  # the module-scoped package fixture, re-exported so pytest finds it here


class Line:
    """A real server state with line1's v1 published and one registered device."""

    def __init__(self, art: Artifacts, tmp_path: Path) -> None:
        self.art = art
        self.state = ServerState(tmp_path / "server")
        self.token = self.state.register_device("dev-1", "line1")
        self.package = tmp_path / "package"
        self.package.mkdir()
        for name, data in _package(art).items():
            (self.package / name).write_bytes(data)
        self.state.publish(_signed(art, "v1"), self.package)
        self.camera = tmp_path / "camera"
        self.camera.mkdir()
        self.agent_dir = tmp_path / "agent"
        self.clock = FakeClock()

        self.exchanges: list[tuple[str | None, int]] = []  # (Range sent, status answered) per package GET

    def _record(self, response) -> None:
        if "/v1/packages/" in response.request.url.path:
            self.exchanges.append((response.request.headers.get("range"), response.status_code))

    def agent(self, token: str | None = None) -> EdgeAgent:
        client = TestClient(create_app(self.state))
        client.event_hooks = {"request": [], "response": [self._record]}
        config = AgentConfig(
            device_id="dev-1", server_url="http://testserver", token=token or self.token, camera_dir=self.camera,
            state_dir=self.agent_dir, public_key_path=self.art.public_key, num_threads=1, window_seconds=60,
        )
        return EdgeAgent(config, client=client, clock=self.clock)


@pytest.fixture
def line(artifacts: Artifacts, tmp_path: Path) -> Line:
    return Line(artifacts, tmp_path)


def test_sync_inspect_and_upload_through_the_real_server(line: Line) -> None:
    agent = line.agent()
    outcome = agent.sync_once()
    assert outcome.status == "activated" and agent.active_version == "v1", outcome.detail
    for i in range(3):
        _write_image(line.camera / f"p{i}.png", i)
    decisions = agent.inspect_pending()
    assert [d.image for d in decisions] == ["p0.png", "p1.png", "p2.png"]
    line.clock.advance(61)
    window = agent.close_window_if_due()
    assert window is not None and window.inspected == 3

    assert agent.flush_outbox() == 1
    [stored] = line.state.windows("line1")
    assert stored["window_id"] == window.window_id and stored["inspected"] == 3
    assert stored["input_brightness_histogram"] == list(window.input_brightness_histogram)
    assert agent.flush_outbox() == 0 and agent.sync_once().status == "up_to_date"


def test_a_partial_download_resumes_with_a_range_request_the_server_answers(line: Line) -> None:
    model = line.art.model
    part = line.agent_dir / "models" / "v1.partial" / "package" / "model.onnx.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(model[: len(model) // 2])  # what an interrupted sync left behind

    outcome = line.agent().sync_once()

    assert outcome.status == "activated", outcome.detail
    assert (line.agent_dir / "models" / "v1" / "package" / "model.onnx").read_bytes() == model
    assert (f"bytes={len(model) // 2}-", 206) in line.exchanges


def test_a_package_altered_on_the_server_is_refused_and_nothing_runs(line: Line) -> None:
    stored = line.state.package_dir("v1") / "model.onnx"
    data = stored.read_bytes()
    stored.write_bytes(data[:-16] + bytes(16))  # same size, other bytes

    outcome = line.agent().sync_once()

    assert outcome.status == "refused" and "sha256" in outcome.detail
    assert not (line.agent_dir / "active.json").exists()


def test_a_revoked_token_keeps_windows_and_refuses_sync(line: Line) -> None:
    agent = line.agent()
    assert agent.sync_once().status == "activated"
    _write_image(line.camera / "p.png", 1)
    agent.inspect_pending()
    line.clock.advance(61)
    agent.close_window_if_due()
    line.state.register_device("dev-1", "line1")  # re-registration revokes the old token

    assert agent.flush_outbox() == 0
    assert len(list((line.agent_dir / "outbox").glob("*.json"))) == 1
    refused = agent.sync_once()
    assert refused.status == "refused" and "does not accept this device's token" in refused.detail
    assert json.loads((line.agent_dir / "active.json").read_text())["active"] == "v1"
