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


_SERVERS: list[subprocess.Popen] = []
"""The webserver and daemon of the open ``_webserver`` context (a test may stop them hard)."""


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:  # already stopped (a test killed it)
        return
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
    _SERVERS[:] = [process] + ([daemon] if daemon else [])
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


def _variant_with_saved_options(mfg_home: Path, tiny_line: Path) -> str:
    """The tiny variant landed with saved options and its partition added; its partition key."""
    import dagster as dg

    from mfg_assets.partitions import line_variant_partitions
    from tests.mfg_assets.test_saved_options import land_with_saved_options

    key = land_with_saved_options(mfg_home, tiny_line)
    prepare_home(mfg_home)
    # before the servers start: three processes creating the instance's storage at once race its migrations
    with dg.DagsterInstance.from_config(str(mfg_home / "dagster")) as instance:
        instance.add_dynamic_partitions(line_variant_partitions.name, [key])
    return key


def _launch_as_the_ui_does(port: int, key: str, assets: tuple[str, ...]) -> str:
    """Launch ``assets`` of partition ``key`` the way the UI's Materialize button does; the run id."""
    params = {
        "selector": {
            "repositoryLocationName": "mfg_vision",
            "repositoryName": "__repository__",
            "pipelineName": "__ASSET_JOB",
            "assetSelection": [{"path": [name]} for name in assets],
        },
        "runConfigData": {},  # what the Materialize button sends for assets whose config has defaults
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": key}]},
        "mode": "default",
    }
    launched = _graphql(port, LAUNCH, {"params": params})["data"]["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def test_a_run_launched_from_the_ui_without_config_trains_with_the_variants_saved_options(mfg_home: Path, tiny_line: Path) -> None:
    from resources.lineage import LineageStore
    from tests.mfg_assets.test_saved_options import UPSTREAM

    key = _variant_with_saved_options(mfg_home, tiny_line)
    with _webserver(mfg_home, with_daemon=True) as (port, _payload):
        run_id = _launch_as_the_ui_does(port, key, UPSTREAM)
        status, deadline = None, time.monotonic() + 240
        while time.monotonic() < deadline and status not in ("SUCCESS", "FAILURE", "CANCELED"):
            time.sleep(2)
            status = _graphql(port, f'{{ runOrError(runId: "{run_id}") {{ ... on Run {{ status }} }} }}')["data"]["runOrError"]["status"]
        assert status == "SUCCESS", f"run {run_id} ended {status}"
    rows = LineageStore(home=str(mfg_home)).read_table("lineage", "asset = ?", ["hyperparameter_search"])
    settings = json.loads(rows.iloc[-1]["parameters"])["settings"]
    assert (settings["arch"], settings["epochs"], settings["seed"], settings["image_size"]) == ("resnet10t", 1, 7, 32)


def _process_tree(root: int) -> list[int]:
    """``root`` and every process below it (read from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended while being read
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, stack = [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children.get(pid, []))
    return tree


def _run_status(instance, run_id: str) -> str:
    return instance.get_run_by_id(run_id).status.value


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the servers' processes in /proc (Linux)")
def test_a_run_left_started_by_a_hard_stop_of_the_servers_is_failed_by_the_next_daemon(mfg_home: Path, tiny_line: Path) -> None:
    """`make ui` killed hard (power cut, OOM killer) takes the run's worker and its code server with it, and
    nothing is left to record the run's end; the daemon started next asks our launcher and fails the run, with why."""
    import dagster as dg

    from mfg_assets.run_launcher import LAUNCH_TAG, _worker_start
    from resources.storage.processes import boot_id, wall_clock_at_boot
    from tests.mfg_assets.test_saved_options import UPSTREAM

    key = _variant_with_saved_options(mfg_home, tiny_line)
    with _webserver(mfg_home, with_daemon=True) as (port, _payload):
        run_id = _launch_as_the_ui_does(port, key, UPSTREAM)
        with dg.DagsterInstance.from_config(str(mfg_home / "dagster")) as instance:
            worker, deadline = None, time.monotonic() + 180
            while (worker is None or _run_status(instance, run_id) != "STARTED") and time.monotonic() < deadline:
                time.sleep(0.2)
                worker = (_worker_start(instance, run_id) or (None,))[0]
            assert worker is not None and _run_status(instance, run_id) == "STARTED", "the run's worker never started it"
            launched = json.loads(instance.get_run_by_id(run_id).tags[LAUNCH_TAG])  # what our launcher recorded
            assert launched["boot_id"] == boot_id() and abs(launched["clock_at_boot"] - wall_clock_at_boot()) < 1.0
            # The hard stop: every process `make ui` started (webserver, daemon, their code servers, the worker).
            started_by_ui = [pid for server in _SERVERS for pid in _process_tree(server.pid)]
            assert worker in started_by_ui
            for pid in started_by_ui:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for server in _SERVERS:
                server.wait(timeout=30)
            assert _run_status(instance, run_id) == "STARTED"  # nobody was left to say otherwise
    daemon = _start(mfg_home, "dagster-daemon", "run")
    try:
        with dg.DagsterInstance.from_config(str(mfg_home / "dagster")) as instance:
            deadline = time.monotonic() + 150  # the daemon's start plus a monitoring poll (30 s)
            while _run_status(instance, run_id) == "STARTED" and time.monotonic() < deadline:
                time.sleep(2)
            assert _run_status(instance, run_id) == "FAILURE"
            failure = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records[-1]
            assert f"the run worker process ({worker}) ended without finishing the run" in failure.event_log_entry.message
    finally:
        _stop(daemon)
