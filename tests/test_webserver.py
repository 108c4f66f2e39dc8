"""Starts the real Dagster webserver on 127.0.0.1 with the workspace and asks GraphQL for the assets."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mfg_assets.instance import prepare_home
from tests.mfg_assets.test_definitions import EXPECTED_ASSETS

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_webserver_serves_the_asset_graph(mfg_home: Path) -> None:
    prepare_home(mfg_home)  # Dagster home with telemetry off, as `make ui` does
    port = _free_port()
    webserver = Path(sys.executable).parent / "dagster-webserver"
    process = subprocess.Popen(
        [str(webserver), "-h", "127.0.0.1", "-p", str(port), "-w", str(REPO / "workspace.yaml")],
        cwd=REPO,
        env={**os.environ, "MFG_HOME": str(mfg_home), "DAGSTER_HOME": str(mfg_home / "dagster")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, stopped with SIGINT below
    )
    try:
        deadline = time.monotonic() + 120
        payload = None
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"dagster-webserver exited early: {process.stderr.read().decode()[-3000:]}")
            try:
                payload = _graphql(port, "{ assetNodes { assetKey { path } } }")
                if payload.get("data", {}).get("assetNodes"):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(1)
        assert payload is not None, "the webserver never answered on its GraphQL endpoint"
        keys = {"/".join(node["assetKey"]["path"]) for node in payload["data"]["assetNodes"]}
        assert keys == EXPECTED_ASSETS
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
