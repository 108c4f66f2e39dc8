"""One outbox for everything a device uploads: metric windows and operator-labelled images.

An entry is written complete to a folder (atomically) before any upload and deleted only once the
server acknowledged it, so server downtime loses nothing, and the server stores each entry once,
so a retry after a lost answer is harmless. Both kinds of entry share one rule for what an answer
means (:func:`disposition`): they drifted before, when the window flusher and the feedback flusher
each had their own list of status codes.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import httpx

from edge_sync.durable import move_unique

__all__ = ["Disposition", "Entry", "Outbox", "disposition"]

logger = logging.getLogger(__name__)


class Disposition(Enum):
    DONE = "done"  # stored, or stored before: delete the entry
    RETRY = "retry"  # the server cannot take it now: keep it and the rest for the next flush
    UNAUTHORISED = "unauthorised"  # the token is not accepted: keep everything, say so loudly
    REJECTED = "rejected"  # the server refuses this entry for good: quarantine it, go on with the rest


def disposition(status: int) -> Disposition:
    """What an HTTP status means for an uploaded entry, for every kind of entry."""
    if status in (200, 201):
        return Disposition.DONE
    if status in (401, 403):
        return Disposition.UNAUTHORISED
    if status >= 500 or status in (408, 429):
        return Disposition.RETRY
    return Disposition.REJECTED


@dataclass(frozen=True)
class Entry:
    """One queued upload: the JSON body to POST and the files to delete (or quarantine) with it."""

    name: str
    body: dict[str, Any] | bytes
    files: tuple[Path, ...]


class Outbox:
    """Entries of one kind in ``folder``, uploaded oldest name first to ``url``.

    ``read(path)`` turns a ``*.json`` file of the folder into an :class:`Entry`, or raises
    ``ValueError`` (quarantined: a file that is not an entry neither blocks the others nor is lost).
    """

    def __init__(
        self,
        folder: Path,
        *,
        kind: str,
        url: str,
        read: Callable[[Path], Entry],
        device_id: str,
    ) -> None:
        self.folder = folder
        self.kind = kind
        self.url = url
        self._read = read
        self._device_id = device_id
        folder.mkdir(parents=True, exist_ok=True)

    def count(self) -> int:
        return sum(1 for _ in self._entries())

    def _entries(self) -> list[Path]:
        return sorted(path for path in self.folder.glob("*.json") if not path.name.startswith("."))

    def flush(self, client: httpx.Client, headers: dict[str, str]) -> int:
        """Upload every entry; returns how many the server acknowledged (see :func:`disposition`)."""
        uploaded = 0
        paths = self._entries()
        for path in paths:
            try:
                entry = self._read(path)
            except (ValueError, KeyError, TypeError, OSError) as exc:
                self.quarantine((path,), f"unreadable {self.kind} ({type(exc).__name__}: {exc})")
                continue
            left = len(paths) - uploaded
            try:
                if isinstance(entry.body, bytes):
                    response = client.post(
                        self.url, content=entry.body, headers={**headers, "Content-Type": "application/json"}
                    )
                else:
                    response = client.post(self.url, json=entry.body, headers=headers)
            except httpx.TransportError as exc:
                logger.warning(
                    "upload of %s %s failed (%s: %s); %d entries stay in %s for the next flush",
                    self.kind, entry.name, type(exc).__name__, exc, left, self.folder,
                )
                break
            status = response.status_code
            outcome = disposition(status)
            if outcome is Disposition.DONE:
                for file in entry.files:  # the .json first: a file without its entry is never sent
                    file.unlink(missing_ok=True)
                uploaded += 1
                logger.debug("uploaded %s %s (%d)", self.kind, entry.name, status)
                continue
            if outcome is Disposition.UNAUTHORISED:
                logger.error(
                    "upload of %s %s: server answered %d (token not accepted for device %s); %d entries stay "
                    "in %s; check --token / MFG_EDGE_TOKEN",
                    self.kind, entry.name, status, self._device_id, left, self.folder,
                )
                break
            if outcome is Disposition.RETRY:
                logger.warning(
                    "upload of %s %s: server answered %d; %d entries stay in %s",
                    self.kind, entry.name, status, left, self.folder,
                )
                break
            self.quarantine(entry.files, f"server answered {status}: {response.text[:500]}")
        return uploaded

    def quarantine(self, files: tuple[Path, ...], why: str) -> None:
        """Move an entry's files to ``rejected/`` and say why."""
        folder = self.folder / "rejected"
        stored = [move_unique(path, folder) for path in files if path.exists()]
        logger.error(
            "%s %s cannot be uploaded: %s; moved to %s for inspection",
            self.kind, files[0].name if files else "?", why, stored[0] if stored else folder,
        )
