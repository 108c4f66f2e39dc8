"""Operator feedback images: the agent labels and queues them, uploads them to the real sync server app
(``create_app`` behind a ``TestClient``), and the server stores each (device, sha256) once.

The model package is the one ``test_agent`` builds (a tiny exported resnet10t, classes good/defect).
"""

import base64
import hashlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from edge_sync.agent import AgentConfig, EdgeAgent
from edge_sync.server import create_app
from edge_sync.server_state import ServerState
from tests.edge_sync.test_agent import START, Artifacts, FakeClock, _package, _signed, _write_image, artifacts

__all__ = ["artifacts"]  # the module-scoped package fixture, re-exported so pytest finds it here

SERVER = "http://testserver"


class Setup:
    """A real server state with line1's v1 deployed, one registered device, and its folders."""

    def __init__(self, art: Artifacts, tmp_path: Path) -> None:
        self.art = art
        self.state = ServerState(tmp_path / "server")
        self.token = self.state.register_device("dev-1", "line1")
        self.other_token = self.state.register_device("dev-2", "line1")
        package = tmp_path / "package"
        package.mkdir()
        for name, data in _package(art).items():
            (package / name).write_bytes(data)
        self.state.publish(_signed(art, "v1"), package)
        self.camera = tmp_path / "camera"
        self.camera.mkdir()
        self.agent_state = tmp_path / "agent"
        self.clock = FakeClock()
        self.client = TestClient(create_app(self.state))

    def agent(self, client: httpx.Client | None = None) -> EdgeAgent:
        config = AgentConfig(
            device_id="dev-1",
            server_url=SERVER,
            token=self.token,
            camera_dir=self.camera,
            state_dir=self.agent_state,
            public_key_path=self.art.public_key,
            num_threads=1,
        )
        return EdgeAgent(config, client=client or self.client, clock=self.clock)

    def queued(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted((self.agent_state / "feedback_outbox").glob("*.json"))]


@pytest.fixture
def setup(artifacts: Artifacts, tmp_path: Path) -> Setup:
    return Setup(artifacts, tmp_path)


def _upload(data: bytes, **fields: object) -> dict:
    body: dict[str, object] = {
        "device_id": "dev-1",
        "line": "line1",
        "model_version": "v1",
        "image": "a.png",
        "sha256": hashlib.sha256(data).hexdigest(),
        "label": "defect",
        "verdict": "escape",
        "labelled_at": START.isoformat(),
        "image_base64": base64.b64encode(data).decode(),
    }
    body.update(fields)
    return body


# ------------------------------------------------------------------------------------------ agent


def test_labelled_feedback_flows_from_agent_to_server(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    agent = setup.agent()
    assert agent.sync_once().status == "activated"
    _write_image(setup.camera / "a.png", 1)
    _write_image(setup.camera / "b.png", 2)
    assert len(agent.inspect_pending()) == 2
    # x.png: a processed image whose decision says "defect", so confirmed_defect takes that label
    _write_image(setup.camera / "processed" / "x.png", 3)
    with (setup.agent_state / "decisions.jsonl").open("a") as log:
        log.write(json.dumps({"image": "x.png", "model_version": "v1", "predicted_class": "defect"}) + "\n")
    (setup.agent_state / "feedback.csv").write_text(
        "image,verdict,label\n"
        "a.png,false_reject\n"  # -> good (the manifest's good class)
        "b.png,escape,defect\n"  # -> defect (given)
        "x.png,confirmed_defect\n"  # -> defect (predicted)
        "b.png,escape,scratch\n"  # not a class: rejected
        "a.png,escape\n"  # escape without label: counted, not sent
        "gone.png,false_reject\n"  # image missing: counted, error logged
    )

    with caplog.at_level(logging.ERROR, logger="edge_sync.agent"):
        counted = agent.apply_feedback()

    assert counted == 5
    assert (setup.agent_state / "feedback_rejected.csv").read_text() == "b.png,escape,scratch\n"
    problems = (setup.agent_state / "feedback_problems.log").read_text()
    assert "'scratch' is not a class" in problems and "escape needs the defect class" in problems
    assert any("gone.png" in r.getMessage() and "not found" in r.getMessage() for r in caplog.records)
    queued = {item["image"]: item for item in setup.queued()}
    assert {name: item["label"] for name, item in queued.items()} == {"a.png": "good", "b.png": "defect", "x.png": "defect"}
    a_bytes = (setup.camera / "processed" / "a.png").read_bytes()
    assert queued["a.png"]["sha256"] == hashlib.sha256(a_bytes).hexdigest()
    assert (queued["a.png"]["device_id"], queued["a.png"]["line"], queued["a.png"]["model_version"]) == (
        "dev-1",
        "line1",
        "v1",
    )

    assert agent.flush_feedback() == 3
    assert setup.queued() == []
    stored = setup.state.feedback("line1")
    assert sorted((r["image"], r["label"], r["verdict"]) for r in stored) == [
        ("a.png", "good", "false_reject"),
        ("b.png", "defect", "escape"),
        ("x.png", "defect", "confirmed_defect"),
    ]
    a_record = next(r for r in stored if r["image"] == "a.png")
    assert Path(a_record["path"]).read_bytes() == a_bytes
    assert Path(a_record["path"]).name == f"{a_record['sha256']}.png"

    # A label appended later for an already counted pair sends the image without counting it again.
    with (setup.agent_state / "feedback.csv").open("a") as handle:
        handle.write("a.png,escape,defect\n")
    assert agent.apply_feedback() == 0
    assert [item["image"] for item in setup.queued()] == ["a.png"]
    assert agent.flush_feedback() == 1  # the same sha256 from the same device: stored once (200)
    assert len(setup.state.feedback("line1")) == 3


def test_feedback_waits_in_the_outbox_while_the_server_is_down(setup: Setup) -> None:
    agent = setup.agent()
    agent.sync_once()
    _write_image(setup.camera / "a.png", 1)
    agent.inspect_pending()
    (setup.agent_state / "feedback.csv").write_text("a.png,false_reject\n")
    agent.apply_feedback()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    down = setup.agent(client=httpx.Client(transport=httpx.MockTransport(refuse)))
    assert down.flush_feedback() == 0
    unavailable = setup.agent(client=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(503))))
    assert unavailable.flush_feedback() == 0
    assert len(setup.queued()) == 1 and setup.state.feedback("line1") == []

    assert setup.agent().flush_feedback() == 1
    assert setup.queued() == [] and len(setup.state.feedback("line1")) == 1


def test_refused_feedback_is_moved_aside(setup: Setup) -> None:
    agent = setup.agent()
    agent.sync_once()
    _write_image(setup.camera / "a.png", 1)
    agent.inspect_pending()
    (setup.agent_state / "feedback.csv").write_text("a.png,false_reject\n")
    agent.apply_feedback()
    (image,) = [p for p in (setup.agent_state / "feedback_outbox").iterdir() if p.suffix == ".png"]
    image.write_bytes(b"tampered")  # the declared sha256 no longer matches: the server answers 422

    assert agent.flush_feedback() == 0
    assert setup.queued() == []
    assert len(list((setup.agent_state / "feedback_outbox" / "rejected").glob("*.json"))) == 1


# ------------------------------------------------------------------------------------------ server


def test_server_stores_each_image_once_per_device(setup: Setup) -> None:
    data = b"\x89PNG fake image bytes"
    auth = {"Authorization": f"Bearer {setup.token}"}

    first = setup.client.post("/v1/feedback", json=_upload(data), headers=auth)
    again = setup.client.post("/v1/feedback", json=_upload(data, label="good", verdict="false_reject"), headers=auth)
    other = setup.client.post(
        "/v1/feedback", json=_upload(data, device_id="dev-2"), headers={"Authorization": f"Bearer {setup.other_token}"}
    )

    assert (first.status_code, first.json()) == (201, {"stored": True})
    assert (again.status_code, again.json()) == (200, {"stored": False, "duplicate": True})
    assert other.status_code == 201
    records = setup.state.feedback("line1")
    assert sorted(r["device_id"] for r in records) == ["dev-1", "dev-2"]
    assert all(r["label"] == "defect" for r in records)  # the first upload wins
    sha = hashlib.sha256(data).hexdigest()
    assert (setup.state.root / "feedback" / "line1" / "dev-1" / f"{sha}.png").read_bytes() == data
    later = datetime.now(UTC).replace(year=2100)
    assert setup.state.feedback("line1", since=later) == []


def test_server_feedback_needs_the_devices_own_token(setup: Setup) -> None:
    data = b"image"
    for headers in ({}, {"Authorization": "Bearer nope"}):
        assert setup.client.post("/v1/feedback", json=_upload(data), headers=headers).status_code == 401
    as_other = setup.client.post(
        "/v1/feedback", json=_upload(data), headers={"Authorization": f"Bearer {setup.other_token}"}
    )
    assert as_other.status_code == 403 and "own feedback" in as_other.json()["detail"]
    assert setup.state.feedback("line1") == []


def test_server_rejects_a_wrong_sha256_bad_fields_and_oversized_images(setup: Setup) -> None:
    auth = {"Authorization": f"Bearer {setup.token}"}
    mismatch = setup.client.post("/v1/feedback", json=_upload(b"image", sha256="0" * 64), headers=auth)
    assert mismatch.status_code == 422 and "sha256" in mismatch.json()["detail"]
    for bad in ({"label": "../etc"}, {"image": "a.exe"}, {"image_base64": "%%%"}, {"verdict": "maybe"}):
        assert setup.client.post("/v1/feedback", json=_upload(b"image", **bad), headers=auth).status_code == 422, bad

    small = TestClient(create_app(setup.state, max_feedback_bytes=1000))
    too_big = small.post("/v1/feedback", json=_upload(b"x" * 200_000), headers=auth)
    assert too_big.status_code == 413 and "limit" in too_big.json()["detail"]
    just_over = small.post("/v1/feedback", json=_upload(b"x" * 1001), headers=auth)  # passes the body check
    assert just_over.status_code == 413
    assert small.post("/v1/feedback", json=_upload(b"x" * 1000), headers=auth).status_code == 201
    assert len(setup.state.feedback("line1")) == 1
