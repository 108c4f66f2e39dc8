"""The sync server's HTTP contract, in process (TestClient, no sockets) and once for real (uvicorn on
127.0.0.1 in a subprocess, stopped with SIGINT)."""

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from edge_sync.contract import Ring, SignedManifest, generate_keypair, load_public_key, verify_manifest
from edge_sync.server import create_app
from edge_sync.server_state import ServerState
from tests.edge_sync.test_server_state import make_package, make_signed, make_window

REPO = Path(__file__).resolve().parents[2]
VERSION = "line1-bracket-a-v1"


class Fleet:
    """A state with two lines, one device on each, and one fleet deployment per line."""

    def __init__(self, tmp_path: Path) -> None:
        self.private, self.public = tmp_path / "keys" / "k.pem", tmp_path / "keys" / "k.pub.pem"
        generate_keypair(self.private, self.public)
        self.state = ServerState(tmp_path / "state")
        self.token = self.state.register_device("cam-01", "line1")
        self.other_token = self.state.register_device("cam-09", "line2")
        self.package = make_package(tmp_path / "pkg1", seed=1, sizes=(300_000, 2100, 300, 4096, 700))
        self.state.publish(make_signed(self.package, self.private, version=VERSION), self.package)
        other = make_package(tmp_path / "pkg2", seed=2)
        self.state.publish(make_signed(other, self.private, line="line2", version="line2-v1"), other)

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return Fleet(tmp_path)


@pytest.fixture
def client(fleet: Fleet) -> TestClient:
    return TestClient(create_app(fleet.state))


def _window_json(device_id: str = "cam-01", line: str = "line1", window_id: str = "w-0001", **update: object) -> dict:
    payload = make_window(device_id, line, window_id).model_dump(mode="json")
    payload.update(update)
    return payload


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_manifest_needs_a_known_token(client: TestClient, fleet: Fleet) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {fleet.token}"}):
        response = client.get("/v1/manifest", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert "token" in response.json()["detail"]


def test_manifest_is_the_signed_deployment_or_204(client: TestClient, fleet: Fleet) -> None:
    response = client.get("/v1/manifest", headers=fleet.auth())
    assert response.status_code == 200
    manifest = verify_manifest(SignedManifest.model_validate(response.json()), load_public_key(fleet.public))
    assert (manifest.line, manifest.model_version) == ("line1", VERSION)

    idle = fleet.state.register_device("cam-02", "line3")
    response = client.get("/v1/manifest", headers=fleet.auth(idle))
    assert response.status_code == 204 and response.content == b""


def test_canary_device_gets_the_canary_manifest(client: TestClient, fleet: Fleet, tmp_path: Path) -> None:
    canary_token = fleet.state.register_device("cam-02", "line1", canary=True)
    v2 = make_package(tmp_path / "v2", seed=5)
    fleet.state.publish(make_signed(v2, fleet.private, version="line1-bracket-a-v2", ring=Ring.CANARY), v2)

    def version(token: str) -> str:
        return json.loads(client.get("/v1/manifest", headers=fleet.auth(token)).json()["manifest_json"])["model_version"]

    assert version(canary_token) == "line1-bracket-a-v2"
    assert version(fleet.token) == VERSION


def test_package_download_resumes_with_ranges(client: TestClient, fleet: Fleet) -> None:
    original = (fleet.package / "model.onnx").read_bytes()
    url = f"/v1/packages/{VERSION}/model.onnx"
    full = client.get(url, headers=fleet.auth())
    assert full.status_code == 200 and full.content == original
    assert full.headers["etag"] == f'"{hashlib.sha256(original).hexdigest()}"'
    assert full.headers["accept-ranges"] == "bytes"

    # Interrupted after 100 000 bytes, resumed from there in two more pieces.
    first = client.get(url, headers={**fleet.auth(), "Range": "bytes=0-99999"})
    middle = client.get(url, headers={**fleet.auth(), "Range": "bytes=100000-199999"})
    rest = client.get(url, headers={**fleet.auth(), "Range": "bytes=200000-"})
    assert [r.status_code for r in (first, middle, rest)] == [206, 206, 206]
    assert first.headers["content-range"] == f"bytes 0-99999/{len(original)}"
    assert rest.headers["content-range"] == f"bytes 200000-{len(original) - 1}/{len(original)}"
    assert int(rest.headers["content-length"]) == len(original) - 200000
    assert first.content + middle.content + rest.content == original

    tail = client.get(url, headers={**fleet.auth(), "Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == original[-10:]
    past_end = client.get(url, headers={**fleet.auth(), "Range": "bytes=299990-400000"})
    assert past_end.status_code == 206 and past_end.content == original[299990:]
    nested = client.get(f"/v1/packages/{VERSION}/openvino/model.xml", headers=fleet.auth())
    assert nested.content == (fleet.package / "openvino/model.xml").read_bytes()


@pytest.mark.parametrize("header", [f"bytes={300_000}-", "bytes=500000-600000", "bytes=10-5", "bytes=abc", "items=0-1", "bytes=-0"])
def test_unsatisfiable_or_malformed_range_is_416(client: TestClient, fleet: Fleet, header: str) -> None:
    response = client.get(f"/v1/packages/{VERSION}/model.onnx", headers={**fleet.auth(), "Range": header})
    assert response.status_code == 416
    assert response.headers["content-range"] == "bytes */300000"
    assert "bytes=N-" in response.json()["detail"] or "file" in response.json()["detail"]


def test_packages_of_another_line_are_forbidden(client: TestClient, fleet: Fleet) -> None:
    response = client.get("/v1/packages/line2-v1/model.onnx", headers=fleet.auth())
    assert response.status_code == 403
    assert "GET /v1/manifest" in response.json()["detail"]
    assert client.get(f"/v1/packages/{VERSION}/model.onnx", headers=fleet.auth(fleet.other_token)).status_code == 403
    assert client.get(f"/v1/packages/{VERSION}/model.onnx").status_code == 401


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/packages/{VERSION}/..%2F..%2Fdevices.json",
        f"/v1/packages/{VERSION}/%2E%2E/%2E%2E/devices.json",
        f"/v1/packages/{VERSION}/index.json",
        f"/v1/packages/{VERSION}/%2Fetc%2Fpasswd",
        "/v1/packages/..%2F..%2Fdevices.json/x",
        "/v1/packages/%2E%2E/devices.json",
        f"/v1/packages/{VERSION}/missing.onnx",
    ],
)
def test_path_traversal_reaches_nothing(client: TestClient, fleet: Fleet, path: str) -> None:
    response = client.get(path, headers=fleet.auth())
    assert response.status_code in (403, 404)
    assert "token_sha256" not in response.text and "root:" not in response.text


def test_metric_upload_is_idempotent_and_records_skew(client: TestClient, fleet: Fleet) -> None:
    ended = datetime.now(UTC) - timedelta(seconds=120)
    payload = _window_json(ended_at=ended.isoformat(), started_at=(ended - timedelta(minutes=5)).isoformat())
    first = client.post("/v1/metrics", json=payload, headers=fleet.auth())
    assert (first.status_code, first.json()) == (201, {"stored": True})
    again = client.post("/v1/metrics", json=payload, headers=fleet.auth())
    assert (again.status_code, again.json()) == (200, {"stored": False, "duplicate": True})

    (stored,) = fleet.state.windows("line1")
    assert stored["inspected"] == 100
    assert 119 <= stored["clock_skew_seconds"] < 180


def test_invalid_or_foreign_windows_are_refused(client: TestClient, fleet: Fleet) -> None:
    bad = client.post("/v1/metrics", json=_window_json(score_histogram=[1, 2, 3]), headers=fleet.auth())
    assert bad.status_code == 422
    assert "score_histogram" in bad.json()["detail"] and bad.json()["errors"]
    negative = client.post("/v1/metrics", json=_window_json(inspected=-1), headers=fleet.auth())
    assert negative.status_code == 422
    foreign = client.post("/v1/metrics", json=_window_json(device_id="cam-09", line="line2"), headers=fleet.auth())
    assert foreign.status_code == 403 and "only its own" in foreign.json()["detail"]
    assert client.post("/v1/metrics", json=_window_json()).status_code == 401
    assert fleet.state.windows() == []


# ------------------------------------------------------------- the real server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_healthy(base: str, process: subprocess.Popen, deadline_s: float = 15.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering: {process.stderr.read()}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(f"server at {base} did not answer /healthz within {deadline_s} s")


def test_real_server_on_localhost(tmp_path: Path) -> None:
    """Platform and server share the state folder: a deployment published while the server runs is
    served at once; a download resumes; two simultaneous uploads of one window store it once."""
    fleet = Fleet(tmp_path)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_sync.server", "--state-dir", str(fleet.state.root), "--port", str(port), "--log-level", "warning"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_healthy(base, process)
        v2 = make_package(tmp_path / "v2", seed=7, sizes=(120_000, 10, 10, 10, 10))
        fleet.state.publish(make_signed(v2, fleet.private, version="line1-bracket-a-v2"), v2)

        with httpx.Client(base_url=base, headers=fleet.auth(), timeout=10.0) as device:
            signed = SignedManifest.model_validate(device.get("/v1/manifest").json())
            manifest = verify_manifest(signed, load_public_key(fleet.public))
            assert manifest.model_version == "line1-bracket-a-v2"

            url = f"/v1/packages/{manifest.model_version}/{manifest.model_path}"
            partial = b""
            with device.stream("GET", url) as response:  # the connection drops after 50 000 bytes
                for chunk in response.iter_bytes():
                    partial += chunk
                    if len(partial) >= 50_000:
                        break
            rest = device.get(url, headers={"Range": f"bytes={len(partial)}-"})
            assert rest.status_code == 206
            assert partial + rest.content == (v2 / "model.onnx").read_bytes()

        payload = _window_json(window_id="w-race")
        barrier = threading.Barrier(2)
        statuses: list[int] = []

        def upload() -> None:
            with httpx.Client(base_url=base, headers=fleet.auth(), timeout=10.0) as client:
                barrier.wait()
                statuses.append(client.post("/v1/metrics", json=payload).status_code)

        threads = [threading.Thread(target=upload) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=15)
        assert sorted(statuses) == [200, 201]
        assert len(fleet.state.windows("line1")) == 1
    finally:
        process.send_signal(signal.SIGINT)
        try:
            returncode = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
            raise
        stderr = process.stderr.read()
        process.stderr.close()
    assert returncode == 0, stderr
