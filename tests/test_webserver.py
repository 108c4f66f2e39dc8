"""Starts the real Dagster webserver on 127.0.0.1 with the workspace: GraphQL lists the assets, and a run
launched the way the UI's Materialize button launches it (no config) takes the variant's saved options."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
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


def _graphql(port: int, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _start(mfg_home: Path, *command: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / command[0]), *command[1:], "-w", str(REPO / "workspace.yaml")],
        cwd=REPO,
        env={**os.environ, "MFG_HOME": str(mfg_home), "DAGSTER_HOME": str(mfg_home / "dagster")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, stopped with SIGINT below
    )


def _stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def _webserver(mfg_home: Path, with_daemon: bool = False) -> Iterator[tuple[int, dict]]:
    """The real webserver on a free port, once it answers (and, as `make ui` runs, the daemon that
    dequeues launched runs); yields the port and its asset nodes."""
    prepare_home(mfg_home)  # Dagster home with telemetry off, as `make ui` does
    port = _free_port()
    process = _start(mfg_home, "dagster-webserver", "-h", "127.0.0.1", "-p", str(port))
    daemon = _start(mfg_home, "dagster-daemon", "run") if with_daemon else None
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
        yield port, payload
    finally:
        _stop(process)
        if daemon is not None:
            _stop(daemon)


def test_webserver_serves_the_asset_graph(mfg_home: Path) -> None:
    with _webserver(mfg_home) as (_port, payload):
        keys = {"/".join(node["assetKey"]["path"]) for node in payload["data"]["assetNodes"]}
        assert keys == EXPECTED_ASSETS


LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


def test_a_run_launched_from_the_ui_without_config_trains_with_the_variants_saved_options(mfg_home: Path, tiny_line: Path) -> None:
    import dagster as dg

    from mfg_assets.partitions import line_variant_partitions
    from resources.lineage import LineageStore
    from tests.mfg_assets.test_saved_options import UPSTREAM, land_with_saved_options

    key = land_with_saved_options(mfg_home, tiny_line)
    prepare_home(mfg_home)
    # before the servers start: three processes creating the instance's storage at once race its migrations
    with dg.DagsterInstance.from_config(str(mfg_home / "dagster")) as instance:
        instance.add_dynamic_partitions(line_variant_partitions.name, [key])
    with _webserver(mfg_home, with_daemon=True) as (port, _payload):
        params = {
            "selector": {
                "repositoryLocationName": "mfg_vision",
                "repositoryName": "__repository__",
                "pipelineName": "__ASSET_JOB",
                "assetSelection": [{"path": [name]} for name in UPSTREAM],
            },
            "runConfigData": {},  # what the Materialize button sends for assets whose config has defaults
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": key}]},
            "mode": "default",
        }
        launched = _graphql(port, LAUNCH, {"params": params})["data"]["launchPipelineExecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        status, deadline = None, time.monotonic() + 240
        while time.monotonic() < deadline and status not in ("SUCCESS", "FAILURE", "CANCELED"):
            time.sleep(2)
            status = _graphql(port, f'{{ runOrError(runId: "{run_id}") {{ ... on Run {{ status }} }} }}')["data"]["runOrError"]["status"]
        assert status == "SUCCESS", f"run {run_id} ended {status}"
    rows = LineageStore(home=str(mfg_home)).read_table("lineage", "asset = ?", ["hyperparameter_search"])
    settings = json.loads(rows.iloc[-1]["parameters"])["settings"]
    assert (settings["arch"], settings["epochs"], settings["seed"], settings["image_size"]) == ("resnet10t", 1, 7, 32)
