"""``mfg-edge-agent`` / ``python -m edge_sync.agent``: run one device's agent from the command line."""

import argparse
import logging
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from edge_sync.agent.config import AgentConfig
from edge_sync.agent.core import EdgeAgent
from edge_sync.agent.errors import AgentError

__all__ = ["main"]

logger = logging.getLogger("edge_sync.agent")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the agent until SIGINT/SIGTERM, or one iteration with ``--once``.

    Returns 0 on a clean stop (or an iteration without failed steps), 1 when the agent cannot start
    or a step of ``--once`` failed; invalid arguments exit with argparse's status 2.
    """
    parser = argparse.ArgumentParser(
        prog="mfg-edge-agent",
        description="Fetch signed model deployments, inspect camera images, upload metric windows.",
    )
    parser.add_argument("--device", required=True, help="this device's id, as registered on the server")
    parser.add_argument("--server", required=True, help="sync server base URL, e.g. http://10.0.0.5:8080")
    parser.add_argument("--camera-dir", required=True, type=Path, help="folder the camera writes images into")
    parser.add_argument("--state-dir", default=Path("edge-state"), type=Path, help="agent state (default ./edge-state)")
    parser.add_argument(
        "--token", default=None, help="device bearer token (prefer the MFG_EDGE_TOKEN variable: argv is visible in ps)"
    )
    parser.add_argument("--public-key", required=True, type=Path, help="the platform's manifest-signing public key (PEM)")
    parser.add_argument("--poll-seconds", type=float, default=10.0, help="seconds between syncs (default 10)")
    parser.add_argument("--window-seconds", type=float, default=60.0, help="metric window length (default 60)")
    parser.add_argument("--once", action="store_true", help="run one iteration (sync, inspect, upload) and exit")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    token = args.token or os.environ.get("MFG_EDGE_TOKEN")
    if not token:
        parser.error("no device token: set MFG_EDGE_TOKEN (or pass --token)")
    try:
        config = AgentConfig(
            device_id=args.device,
            server_url=args.server,
            token=token,
            camera_dir=args.camera_dir,
            state_dir=args.state_dir,
            public_key_path=args.public_key,
            poll_seconds=args.poll_seconds,
            window_seconds=args.window_seconds,
        )
    except ValidationError as exc:
        parser.error(f"invalid configuration: {exc}")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        agent = EdgeAgent(config)
    except AgentError as exc:
        logger.error("cannot start: %s", exc)
        return 1
    with agent:
        if args.once:
            return 0 if agent.run_iteration(sync=True) else 1
        stop = threading.Event()
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: stop.set())
        agent.run(stop)
    return 0
