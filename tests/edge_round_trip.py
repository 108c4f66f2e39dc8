"""One edge round trip as a user runs it: a canary device, a deploy, the sync server, two agent passes
(the first installs and self-tests, the second closes and uploads the metric window)."""

import json
import os
import shutil
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from tests.processes import free_port, mfgv, start_edge_server

__all__ = ["edge_round_trip"]


def edge_round_trip(
    home: Path, tmp_path: Path, *, line: str, variant: str, device: str, images: Sequence[Path]
) -> tuple[list[dict], list[dict]]:
    """Deploy the line's registered version to a new canary ``device``, let its agent decide ``images``;
    returns (the device's decisions, the server's metric windows of the line). Asserts the self-test passed."""
    from edge_sync.server_state import ServerState

    canary = mfgv(home, "edge-device", "add", device, "--line", line, "--canary")
    assert canary.returncode == 0, canary.stderr
    token = next(text.split()[-1] for text in canary.stdout.splitlines() if text.startswith("token"))
    deployed = mfgv(home, "deploy", "--line", line, "--variant", variant, "--ring", "canary")
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    port = free_port()
    server = start_edge_server(home, port)
    camera = tmp_path / f"camera-{device}"
    camera.mkdir()
    for source in images:
        shutil.copy(source, camera / f"{source.parent.name}-{source.name}")
    state = tmp_path / f"agent-{device}"
    agent_args = ["edge-agent", "--device", device, "--server", f"http://127.0.0.1:{port}", "--camera-dir", str(camera),
                  "--token", token, "--state-dir", str(state), "--once", "--window-seconds", "0.01"]
    try:
        agent = mfgv(home, *agent_args)
        assert agent.returncode == 0, agent.stderr[-3000:]
        assert f"self-test of {line}-{variant}-v1 passed" in agent.stderr, agent.stderr[-3000:]
        time.sleep(0.2)  # the window is due: a second pass closes and uploads it
        agent = mfgv(home, *agent_args)
        assert agent.returncode == 0, agent.stderr[-3000:]
        decisions = [json.loads(text) for text in (state / "decisions.jsonl").read_text().splitlines()]
        return decisions, ServerState(home / "edge").windows(line)
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=30)
