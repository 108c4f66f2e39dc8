"""How many metric-window uploads a second does one sync server take, and how fast does it answer?

Starts the real server (``python -m edge_sync.server``, one uvicorn worker) on 127.0.0.1 over a
temporary state folder, registers ``--devices`` devices, and lets each of them upload ``--windows``
windows one after another, all devices at once (asyncio + httpx, one keep-alive connection per
device, as a device has). Then every device re-uploads one window it already sent, which must be
answered as a duplicate and not stored again. Prints one JSON object: uploads a second (first
upload to last answer), p50/p90/p99/max latency in milliseconds, and whether the state holds
exactly devices × windows windows. Stops by itself: a whole run is bounded by ``--deadline-s``, and
the server is stopped with SIGINT.

Usage::

    .venv/bin/python bench/sync_server_load.py --devices 50 --windows 20

The load generator shares the machine (and its cores) with the server, so the figure is a floor
for a server on its own host. Each stored window costs two fsyncs (the file and its folder).

Measured 2026-11-27 on the 2-core x86_64 build machine while another benchmark ran (1-minute load
average 1.7-3.0 before each run), 50 devices:

==========  =======  =========  ==========  ==========  ===================================
windows     uploads  uploads/s  p50 ms      p99 ms      p99 ms without each first upload
==========  =======  =========  ==========  ==========  ===================================
20 each     1000     307-413    66-86       850-1210    128-139
100 each    5000     541        81          170         146
==========  =======  =========  ==========  ==========  ===================================

The p99 of short runs is the 50 first uploads, which open their connections at once while the
server's thread pool starts; every window was stored exactly once and every re-upload answered 200.
"""

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from edge_sync.contract import (
    INPUT_BINS,
    SCORE_BINS,
    DeploymentManifest,
    InputSpec,
    MetricWindow,
    ModelFile,
    generate_keypair,
    load_private_key,
    sign_manifest,
)
from edge_sync.server_state import ServerState

__all__ = ["main", "run_load"]

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent


class LoadTestFailed(RuntimeError):
    """The server did not start, answered with errors, or stored a different number of windows."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _windows_for(device_id: str, line: str, count: int) -> list[dict[str, Any]]:
    """``count`` consecutive 1-minute windows of plausible counts, as the JSON a device posts."""
    start = datetime.now(UTC) - timedelta(minutes=count)
    payloads = []
    for index in range(count):
        began = start + timedelta(minutes=index)
        window = MetricWindow(
            window_id=f"{device_id}-{index:06d}",
            device_id=device_id,
            line=line,
            model_version="line1-bracket-a-v1",
            started_at=began,
            ended_at=began + timedelta(minutes=1),
            inspected=120,
            rejected=4,
            confirmed_defects=3,
            false_rejects=1,
            escapes_found=0,
            score_histogram=tuple([6] * SCORE_BINS),
            input_brightness_histogram=tuple([0] * (INPUT_BINS - 1) + [120]),
        )
        payloads.append(window.model_dump(mode="json"))
    return payloads


async def _device(
    base: str, token: str, payloads: list[dict[str, Any]], latencies: list[tuple[int, float]], statuses: dict[int, int]
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30.0) as client:
        for index, payload in enumerate(payloads):
            began = time.perf_counter()
            response = await client.post("/v1/metrics", json=payload)
            latencies.append((index, time.perf_counter() - began))
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        again = await client.post("/v1/metrics", json=payloads[-1])
        key = -again.status_code  # negative: the duplicate phase
        statuses[key] = statuses.get(key, 0) + 1


async def _upload_all(
    base: str, tokens: dict[str, str], windows: int, deadline_s: float
) -> tuple[list[tuple[int, float]], dict[int, int], float]:
    """(window index, seconds) per upload, answers by status, and the wall time of the whole burst."""
    payloads = {device_id: _windows_for(device_id, "line1", windows) for device_id in tokens}
    latencies: list[tuple[int, float]] = []
    statuses: dict[int, int] = {}
    began = time.perf_counter()
    tasks = [_device(base, tokens[d], payloads[d], latencies, statuses) for d in tokens]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=deadline_s)
    except TimeoutError as exc:
        raise LoadTestFailed(
            f"uploads did not finish within {deadline_s} s ({len(latencies)} done); lower --windows or --devices"
        ) from exc
    return latencies, statuses, time.perf_counter() - began


def _deploy(state: ServerState, folder: Path, version: str) -> None:
    """Publish a small package as ``version`` on line1: the server takes windows only for a model
    deployed to the device's line."""
    import hashlib

    package = folder / "package"
    package.mkdir(parents=True)
    files = {"model.onnx": b"bench model", "selftest.npz": b"bench self-test"}
    for name, data in files.items():
        (package / name).write_bytes(data)
    generate_keypair(folder / "k.pem", folder / "k.pub.pem")
    manifest = DeploymentManifest(
        deployment_id=f"{version}-fleet", line="line1", model_version=version, model_format="onnx",
        model_path="model.onnx",
        files=tuple(ModelFile(path=n, sha256=hashlib.sha256(d).hexdigest(), n_bytes=len(d)) for n, d in files.items()),
        input=InputSpec(height=32, width=32), classes=("good", "scratch"), good_class="good", threshold=0.5,
        dataset_version="dataset:bench", created_at=datetime.now(UTC),
    )
    state.publish(sign_manifest(manifest, load_private_key(folder / "k.pem")), package)


def run_load(devices: int, windows: int, deadline_s: float) -> dict[str, Any]:
    """Run the whole load test in a temporary state folder and return its figures."""
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="sync-load-") as tmp:
        state = ServerState(Path(tmp) / "state")
        _deploy(state, Path(tmp) / "deploy", "line1-bracket-a-v1")
        tokens = {f"dev-{i:03d}": state.register_device(f"dev-{i:03d}", "line1") for i in range(devices)}
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "edge_sync.server", "--state-dir", str(state.root), "--port", str(port), "--log-level", "warning"]
        server = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            _wait_healthy(base, server)
            logger.info("server up on %s; %d devices x %d windows", base, devices, windows)
            latencies, statuses, wall_s = asyncio.run(_upload_all(base, tokens, windows, deadline_s))
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=5)
            server.stderr.close()
        stored = len(state.windows("line1"))
    expected = devices * windows
    result = {
        "devices": devices,
        "windows_per_device": windows,
        "uploads": len(latencies),
        "wall_s": round(wall_s, 3),
        "uploads_per_s": round(len(latencies) / wall_s, 1),
        "latency_ms": _percentiles([s for _, s in latencies]),
        # Each device's first upload also opens its connection while 49 others do the same.
        "latency_ms_after_first_upload": _percentiles([s for i, s in latencies if i > 0]),
        "status_counts": {str(k): v for k, v in sorted(statuses.items()) if k > 0},
        "duplicate_reuploads": {str(-k): v for k, v in sorted(statuses.items()) if k < 0},
        "stored_windows": stored,
        "stored_exactly_once": stored == expected,
        "cpu_count": os.cpu_count(),
        "load_average_1m_before": round(load_before, 2),
    }
    if statuses.get(201) != expected or statuses.get(-200) != devices or stored != expected:
        raise LoadTestFailed(f"expected {expected} stored (201), {devices} duplicates (200): got {json.dumps(result)}")
    return result


def _percentiles(seconds: list[float]) -> dict[str, float]:
    if len(seconds) < 2:
        return {"p50": round(1000 * seconds[0], 2)} if seconds else {}
    ms = sorted(1000 * value for value in seconds)
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {"p50": round(cuts[49], 2), "p90": round(cuts[89], 2), "p99": round(cuts[98], 2), "max": round(ms[-1], 2)}


def _wait_healthy(base: str, server: subprocess.Popen, deadline_s: float = 20.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise LoadTestFailed(f"server exited with {server.returncode} before answering: {server.stderr.read()}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise LoadTestFailed(f"server at {base} did not answer /healthz within {deadline_s} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Load-test the edge sync server with concurrent metric uploads.")
    parser.add_argument("--devices", type=int, default=50, help="simulated devices uploading at once (default 50)")
    parser.add_argument("--windows", type=int, default=20, help="windows each device uploads (default 20)")
    parser.add_argument("--deadline-s", type=float, default=60.0, help="give up after this many seconds (default 60)")
    args = parser.parse_args(argv)
    if args.devices < 1 or args.windows < 1:
        parser.error(f"--devices and --windows must be >= 1, got {args.devices} and {args.windows}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the result
    logging.getLogger("edge_sync.server_state").setLevel(logging.WARNING)  # one line per registration
    result = run_load(args.devices, args.windows, args.deadline_s)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
