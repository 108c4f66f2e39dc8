"""Metric windows devices upload: stored exactly once per (device, window id), read back by receipt time.

Kept apart because windows are append-only and need no lock: each is written complete to ``tmp/``
and hard-linked to ``windows/<line>/<device>/<sha256(window_id)>.json``, so of two concurrent
uploads of one id exactly one is stored and a crash never leaves a half-written "duplicate".
"""

import hashlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_sync.contract import MetricWindow
from edge_sync.durable import link_new
from edge_sync.server_state._folder import StateFolder, check_name
from edge_sync.server_state.devices import DeviceRecord
from edge_sync.server_state.errors import CorruptState, Forbidden, InvalidInput

__all__ = ["WindowStore"]

logger = logging.getLogger(__name__)


class WindowStore:
    """``windows/`` under ``folder.root``."""

    def __init__(self, folder: StateFolder) -> None:
        self._folder = folder
        self._base = folder.root / "windows"

    def record_window(self, window: MetricWindow, device: DeviceRecord, received_at: datetime) -> bool:
        """Store ``window`` once; False when this device already uploaded this window id.

        The first upload of an id wins and a repeat is not counted twice (devices retry uploads whose
        answer they did not get). ``clock_skew_seconds`` is ``received_at - window.ended_at``: the
        device clock's offset plus the upload delay, so a window buffered offline shows a large value.
        """
        if window.device_id != device.device_id or window.line != device.line:
            raise Forbidden(
                f"window {window.window_id!r} is for device {window.device_id} on line {window.line}, but the "
                f"token belongs to device {device.device_id} on line {device.line}; a device uploads only "
                "its own windows (check the agent's device_id/line configuration)"
            )
        if received_at.tzinfo is None:
            raise InvalidInput(f"received_at {received_at.isoformat()} has no timezone; pass datetime.now(UTC)")
        for field in ("started_at", "ended_at"):
            stamp: datetime = getattr(window, field)
            if stamp.tzinfo is None:
                raise InvalidInput(
                    f"window {window.window_id!r} of device {device.device_id}: {field} {stamp.isoformat()} has "
                    "no UTC offset, so clock skew cannot be measured; send timezone-aware timestamps"
                )
        record = window.model_dump(mode="json")
        record["received_at"] = received_at.astimezone(UTC).isoformat()
        record["clock_skew_seconds"] = (received_at - window.ended_at).total_seconds()
        folder = self._base / device.line / device.device_id
        final = folder / f"{hashlib.sha256(window.window_id.encode()).hexdigest()}.json"
        if not link_new(final, json.dumps(record, sort_keys=True).encode(), tmp_dir=self._folder.tmp):
            _warn_if_different(final, record)
            return False
        return True

    def windows(self, line: str | None = None, since: datetime | None = None) -> list[dict[str, Any]]:
        """Every stored window (of ``line``, received at or after ``since``), oldest receipt first.

        Each is the window's JSON (timestamps as ISO strings) plus ``received_at`` and
        ``clock_skew_seconds``. ``since`` compares with the server's receive time, not the device's
        clock, so a cursor on it also picks up windows uploaded late; it is inclusive, so key
        windows by (device_id, window_id) when advancing a cursor.
        """
        if since is not None and since.tzinfo is None:
            raise InvalidInput(f"since {since.isoformat()} has no timezone; pass an aware datetime (UTC)")
        if line is not None:
            check_name("line", line)
            line_dirs = [self._base / line]
        else:
            line_dirs = sorted(p for p in self._base.iterdir() if p.is_dir())
        found: list[tuple[datetime, dict[str, Any]]] = []
        for line_dir in line_dirs:
            for path in sorted(line_dir.glob("*/*.json")):
                try:
                    record = json.loads(path.read_bytes())
                    received = datetime.fromisoformat(record["received_at"])
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    raise CorruptState(
                        f"{path}: not a stored metric window ({exc!r}); inspect it and move it aside"
                    ) from exc
                if since is None or received >= since:
                    found.append((received, record))
        found.sort(key=lambda item: (item[0], item[1]["device_id"], item[1]["window_id"]))
        return [record for _, record in found]


def _warn_if_different(stored_path: Path, record: dict[str, Any]) -> None:
    """A repeat upload is normal; a repeat with other counts is a device bug worth seeing."""
    try:
        stored = json.loads(stored_path.read_bytes())
    except (OSError, json.JSONDecodeError) as exc:
        raise CorruptState(f"{stored_path}: stored window unreadable ({exc!r}); inspect it") from exc
    ignore = {"received_at", "clock_skew_seconds"}
    if {k: v for k, v in stored.items() if k not in ignore} != {k: v for k, v in record.items() if k not in ignore}:
        logger.warning(
            "device %s re-uploaded window %r with different content; the first upload is kept "
            "(a device must never reuse a window id)",
            record["device_id"],
            record["window_id"],
        )
