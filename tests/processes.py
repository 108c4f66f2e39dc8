"""Running the real ``mfgv`` command and servers from tests (a helper, not tests)."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

MFGV = [sys.executable, "-m", "mfg_assets.cli"]


def mfgv(home: Path, *args: str, timeout: float = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``mfgv ARGS`` in a child process with ``MFG_HOME=home`` (plus ``env``, e.g. ``MFG_FAILPOINTS``)."""
    env = {**os.environ, "MFG_HOME": str(home), **(env or {})}
    env.pop("DAGSTER_HOME", None)
    return subprocess.run([*MFGV, *args], capture_output=True, text=True, env=env, timeout=timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_edge_server(home: Path, port: int) -> subprocess.Popen:
    """``mfgv edge-server`` in its own process group, answering on /healthz (stop with SIGINT)."""
    env = {**os.environ, "MFG_HOME": str(home)}
    server = subprocess.Popen([*MFGV, "edge-server", "--port", str(port)], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return server
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise AssertionError(f"edge server did not start: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.3)
