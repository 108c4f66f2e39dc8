"""Edge loop timings on 127.0.0.1: registration → every device on the new version, and a metric
window crossing the policy threshold → retrain run requested.

Onboards a tiny generated line (1 epoch, 32 px: the model's quality is not what is measured),
registers ``--devices`` devices, starts the real sync server and one real agent process per device
(polling every ``--poll-seconds``), deploys the model to the fleet, and times until every agent has
verified, self-tested and activated it. Then one device reports a window whose operator feedback
crosses the false-reject threshold, and the time from its upload to the edge-loop sensor's retrain
request (landing the windows + one sensor evaluation) is measured. In production the daemon adds
the schedule's and the sensor's intervals (5 min and 60 s by default) on top.

    .venv/bin/python bench/edge_loop_timing.py --devices 10     # run it 3 times for a median
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _mfgv(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "mfg_assets.cli", *args], capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(f"mfgv {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result


def _active(state_dir: Path) -> str | None:
    path = state_dir / "active.json"
    return json.loads(path.read_text()).get("active") if path.exists() else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1, help="(kept at 1: each run needs an undeployed line)")
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="edge-loop-bench-"))
    os.environ["MFG_HOME"] = str(work / "home")
    os.environ.pop("DAGSTER_HOME", None)
    from resources.data.sample_line import generate_sample_line
    from tests.processes import MFGV, free_port, start_edge_server

    generate_sample_line(work / "line", seed=1, images_per_class=12, image_size=64)
    fast = ["--epochs", "1", "--image-size", "32", "--min-accuracy", "0", "--max-test-escape-rate", "1"]
    _mfgv("onboard", str(work / "line"), "--line", "line1", "--variant", "a", "--good-class", "good", *fast)
    tokens = {}
    for i in range(args.devices):
        out = _mfgv("edge-device", "add", f"dev{i}", "--line", "line1").stdout
        tokens[f"dev{i}"] = next(l.split()[-1] for l in out.splitlines() if l.startswith("token"))
    port = free_port()
    server = start_edge_server(Path(os.environ["MFG_HOME"]), port)
    agents = []
    rollout_seconds = []
    try:
        for repeat in range(args.repeats):
            states = {d: work / f"r{repeat}" / d for d in tokens}
            for device, token in tokens.items():
                (states[device] / "camera").mkdir(parents=True)
                agents.append(
                    subprocess.Popen(
                        [*MFGV, "edge-agent", "--device", device, "--server", f"http://127.0.0.1:{port}",
                         "--camera-dir", str(states[device] / "camera"), "--state-dir", str(states[device]),
                         "--token", token, "--poll-seconds", str(args.poll_seconds)],
                        start_new_session=True, stdout=subprocess.DEVNULL, stderr=(states[device] / "agent.log").open("w"), cwd=REPO,
                    )
                )
            time.sleep(5)  # agents started and polling; nothing is deployed yet
            started = time.monotonic()
            _mfgv("deploy", "--line", "line1", "--variant", "a", "--ring", "fleet")
            while not all(_active(s) == "line1-a-v1" for s in states.values()):
                if time.monotonic() - started > 300:
                    raise SystemExit(f"devices did not all activate within 300 s; agent logs under {work}")
                time.sleep(0.1)
            rollout_seconds.append(time.monotonic() - started)
            for agent in agents:
                os.killpg(agent.pid, signal.SIGINT)
            for agent in agents:
                agent.wait(timeout=30)
            agents.clear()
        request_seconds = _time_to_retrain_request(tokens)
    finally:
        for agent in agents:
            os.killpg(agent.pid, signal.SIGKILL)
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=30)
    print(json.dumps({
        "devices": args.devices,
        "poll_seconds": args.poll_seconds,
        "deploy_to_all_devices_active_s": [round(s, 2) for s in rollout_seconds],
        "deploy_to_all_devices_active_median_s": round(statistics.median(rollout_seconds), 2),
        "window_uploaded_to_retrain_requested_s": [round(s, 3) for s in request_seconds],
        "window_uploaded_to_retrain_requested_median_s": round(statistics.median(request_seconds), 3),
    }, indent=2))
    return 0


def _time_to_retrain_request(tokens: dict[str, str]) -> list[float]:
    """Upload a window over the threshold, then land windows and evaluate the sensor, as the daemon would."""
    import dagster as dg
    import httpx

    from edge_sync.contract import INPUT_BINS, SCORE_BINS
    from mfg_assets.edge_metrics import edge_metrics
    from mfg_assets.instance import get_instance
    from resources.edge import EdgePolicy, EdgeSync
    from resources.lineage import LineageStore
    from sensors.edge import edge_loop_sensor

    state = EdgeSync().server_state()
    device = "dev0"
    durations = []
    instance = get_instance()
    resources = {"edge": EdgeSync(), "lineage": LineageStore(), "edge_policy": EdgePolicy()}
    for i in range(3):
        start = datetime.now(UTC) + timedelta(seconds=i)
        window = {
            "window_id": f"bench-{i}", "device_id": device, "line": "line1", "model_version": "line1-a-v1",
            "started_at": start.isoformat(), "ended_at": (start + timedelta(seconds=1)).isoformat(),
            "inspected": 200, "rejected": 40, "confirmed_defects": 10, "false_rejects": 30, "escapes_found": 0,
            "score_histogram": [10] * SCORE_BINS, "input_brightness_histogram": [12] * INPUT_BINS,
        }
        device_record = state.authenticate(tokens[device])
        from edge_sync.contract import MetricWindow

        began = time.monotonic()
        state.record_window(MetricWindow.model_validate(window), device_record, datetime.now(UTC))
        assert dg.materialize([edge_metrics], instance=instance, resources=resources).success
        requests = edge_loop_sensor(dg.build_sensor_context(instance=instance, resources=resources)).run_requests
        durations.append(time.monotonic() - began)
        if not any(r.tags.get("edge_action") == "retrain" for r in requests):
            raise SystemExit(f"no retrain requested after window {i}: {requests}")
    del httpx
    return durations


if __name__ == "__main__":
    raise SystemExit(main())
