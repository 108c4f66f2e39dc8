"""Registered devices: which line each is on, whether it is canary, and the sha256 of its token.

Kept apart because it is the server's one credential store and the hottest read (every request
authenticates): ``devices.json`` is read through a cache keyed on its inode, mtime and size, so a
request costs no parse while a change by another process (the platform registering a device) is
seen at once. Changes are read-modify-write under the state folder's lock.
"""

import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from edge_sync.durable import write_atomic
from edge_sync.server_state._folder import StateFolder, check_name, now, some
from edge_sync.server_state.errors import CorruptState, InvalidInput, UnknownDevice

__all__ = ["DeviceRecord", "DeviceStore"]

logger = logging.getLogger(__name__)

_DEVICES_SCHEMA = 1


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """An authenticated device: what routing and authorisation decisions need, never its token."""

    device_id: str
    line: str
    canary: bool


class DeviceStore:
    """``devices.json`` under ``folder.root``: registration, canary flags and token checks."""

    def __init__(self, folder: StateFolder) -> None:
        self._folder = folder
        self._path = folder.root / "devices.json"
        self._cache: tuple[tuple[int, int, int], dict[str, dict[str, Any]]] | None = None

    def register_device(self, device_id: str, line: str, *, canary: bool = False) -> str:
        """Register (or re-register) a device on a line and return its new bearer token.

        Only the token's sha256 is stored, so a leaked state folder does not leak credentials; the
        caller must hand the returned token to the device now, as it cannot be recovered later.
        Re-registering replaces the token (the old one stops working) and the line and canary flag.
        """
        check_name("device_id", device_id)
        check_name("line", line)
        if not isinstance(canary, bool):
            raise InvalidInput(f"device {device_id}: canary must be True or False, got {canary!r}")
        # A fixed prefix: a bare urlsafe token may start with "-" and then reads as an option on a
        # command line (`--token -abc`), which made agents exit at start-up now and then.
        token = "mfgt_" + secrets.token_urlsafe(32)
        with self._folder.locked():
            devices = self._read(use_cache=False)
            previous = devices.get(device_id)
            devices[device_id] = {
                "line": line,
                "canary": canary,
                "token_sha256": _token_hash(token),
                "registered_at": now().isoformat(),
            }
            self._write(devices)
        if previous is None:
            logger.info("registered device %s on line %s (canary=%s)", device_id, line, canary)
        else:
            logger.info(
                "re-registered device %s on line %s (canary=%s; was line %s); its previous token is revoked",
                device_id,
                line,
                canary,
                previous["line"],
            )
        return token

    def set_canary(self, device_id: str, canary: bool) -> None:
        """Flag a device as part of (or remove it from) its line's canary ring."""
        check_name("device_id", device_id)
        if not isinstance(canary, bool):
            raise InvalidInput(f"device {device_id}: canary must be True or False, got {canary!r}")
        with self._folder.locked():
            devices = self._read(use_cache=False)
            if device_id not in devices:
                raise UnknownDevice(
                    f"device {device_id!r} is not registered (known: {some(devices)}); "
                    "register it with register_device first"
                )
            devices[device_id] = {**devices[device_id], "canary": canary}
            self._write(devices)
        logger.info("device %s canary=%s", device_id, canary)

    def canary_devices(self, line: str) -> list[str]:
        """The ids of the devices registered on ``line`` and flagged canary, sorted: the default
        targets of a canary deployment."""
        check_name("line", line)
        devices = self._read(use_cache=True)
        return sorted(d for d, record in devices.items() if record["line"] == line and record["canary"])

    def authenticate(self, token: str) -> DeviceRecord:
        """The device holding ``token``, compared by sha256 in constant time against every device."""
        if not isinstance(token, str) or not token:
            raise UnknownDevice("no device token given; send 'Authorization: Bearer <token>' from registration")
        wanted = _token_hash(token)
        found: DeviceRecord | None = None
        for device_id, record in self._read(use_cache=True).items():
            # No early exit: the time taken does not depend on which device (if any) matched.
            if hmac.compare_digest(wanted, record["token_sha256"]):
                found = DeviceRecord(device_id=device_id, line=record["line"], canary=bool(record["canary"]))
        if found is None:
            raise UnknownDevice(
                "the device token is not registered (revoked by a re-registration, or from another "
                "server); register the device again and configure its new token"
            )
        return found

    def not_on_line(self, line: str, device_ids: Iterable[str]) -> list[str]:
        """Those of ``device_ids`` that are not registered on ``line`` (read fresh, not from the cache)."""
        devices = self._read(use_cache=False)
        return [d for d in device_ids if devices.get(d, {}).get("line") != line]

    def _read(self, *, use_cache: bool) -> dict[str, dict[str, Any]]:
        """The devices by id; with ``use_cache`` the shared cached dict (do not modify it), else a copy."""
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            return {}
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        cached = self._cache
        if use_cache and cached is not None and cached[0] == key:
            return cached[1]
        try:
            payload = json.loads(self._path.read_bytes())
            devices = payload["devices"]
            if payload.get("schema") != _DEVICES_SCHEMA or not isinstance(devices, dict):
                raise ValueError(f"schema {payload.get('schema')!r}, expected {_DEVICES_SCHEMA}")
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise CorruptState(
                f"{self._path}: not a devices file ({exc!r}); restore it from backup or re-register the devices"
            ) from exc
        self._cache = (key, devices)
        return {device_id: dict(record) for device_id, record in devices.items()} if not use_cache else devices

    def _write(self, devices: dict[str, dict[str, Any]]) -> None:
        payload = {"schema": _DEVICES_SCHEMA, "devices": dict(sorted(devices.items()))}
        write_atomic(self._path, json.dumps(payload, indent=1).encode("utf-8"), tmp_dir=self._folder.tmp)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
