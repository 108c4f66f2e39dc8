"""The sync server's durable state: devices, published packages, deployments per line and ring, and
the metric windows devices upload.

Two kinds of process share one state folder: the HTTP server (:mod:`edge_sync.server`), which
authenticates devices, serves manifests and package files and stores metric windows, and the
platform, which registers devices, publishes deployments and reads windows back by calling this
class directly. Everything is therefore plain files whose every change is crash-safe and visible to
the other process at once:

* a file is replaced by writing a temporary file under ``tmp/``, fsyncing it and ``os.replace``-ing
  it into place, so a reader sees the old or the new content, never half of it;
* read-modify-write changes (devices, deployments, package indexes, history) take an exclusive
  ``fcntl.flock`` on ``.lock``, so two publishers cannot lose each other's update;
* a metric window is written complete to ``tmp/`` and then hard-linked to its final name: ``link``
  fails with ``EEXIST`` exactly like ``open(O_CREAT | O_EXCL)``, so of two concurrent uploads of one
  window id exactly one is stored, but unlike ``O_EXCL`` the final name never exists half-written,
  so a crash mid-write cannot turn a window into a "duplicate" that holds no data.

Layout under ``root``::

    devices.json                              device -> line, canary flag, sha256 of its token
    packages/<model_version>/files/<path>     the bytes devices download (verified at publish)
    packages/<model_version>/index.json       which files are servable, with sha256 and size
    deployments/<line>/<ring>.json            the SignedManifest currently live for a ring
    deployments/<line>/history.jsonl          every publish and canary end, for audit and rollback
    windows/<line>/<device>/<sha256(window_id)>.json   one stored metric window
    feedback/<line>/<device>/<sha256>.<ext>   an operator-labelled image a device uploaded
    feedback/<line>/<device>/<sha256>.json    its sidecar (label, verdict, ...): written last, by hard link,
                                              so it exists only for a complete image and only once
    tmp/                                      temporary files (same filesystem, for atomic renames)

This module imports nothing from Dagster or the platform's packages; it needs a POSIX system
(``fcntl``, hard links), which the server runs on.
"""

import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_sync.contract import DeploymentManifest, MetricWindow, ModelFile, Ring, SignedManifest, package_layout_problem

__all__ = [
    "FEEDBACK_IMAGE_SUFFIXES",
    "MAX_FEEDBACK_BYTES",
    "CorruptState",
    "FeedbackItem",
    "DeviceRecord",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "PackageFile",
    "PackageMismatch",
    "ServerState",
    "SyncError",
    "TooLarge",
    "UnknownDevice",
]

logger = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9_-]{1,63}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_COPY_CHUNK = 1024 * 1024
_DEVICES_SCHEMA = 1

MAX_FEEDBACK_BYTES = 20 * 1024 * 1024
"""Largest feedback image the server stores (bytes); a line camera's frame is far below it."""
FEEDBACK_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
"""Image file suffixes accepted as feedback (what the agent inspects and the platform ingests)."""
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class SyncError(Exception):
    """Base class of every failure the sync server's state reports."""


class UnknownDevice(SyncError):
    """No registered device holds this token, or the device id is not registered (HTTP 401)."""


class Forbidden(SyncError):
    """The device is known but asks for something that is not its own (HTTP 403)."""


class NotFound(SyncError):
    """The requested package file does not exist in a version the device may read (HTTP 404)."""


class PackageMismatch(SyncError):
    """A package folder's files do not match the manifest (missing, other sha256 or size), or a model
    version was already published with other bytes; nothing was made servable."""


class InvalidInput(SyncError, ValueError):
    """A name, manifest or metric window is not acceptable to the server (HTTP 422)."""


class TooLarge(SyncError):
    """An upload is over the server's size limit (HTTP 413)."""


class CorruptState(SyncError):
    """A file of the state folder cannot be read back; an operator must inspect it."""


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """An authenticated device: what routing and authorisation decisions need, never its token."""

    device_id: str
    line: str
    canary: bool


@dataclass(frozen=True, slots=True)
class PackageFile:
    """A servable package file: where it lies and what the manifest says it is (ETag, length)."""

    path: Path
    sha256: str
    n_bytes: int


class FeedbackItem(BaseModel):
    """What a device says about one operator-labelled image (the sidecar the agent queues).

    ``label`` becomes a folder name in the landing zone, so it is restricted to a safe file name.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    device_id: str = Field(description="the uploading device (must be the token's device)")
    line: str = Field(description="the device's line (must be the token's line)")
    model_version: str = Field(description="the model whose decision the operator judged")
    image: str = Field(min_length=1, max_length=255, description="the image's file name on the device")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the image bytes, lowercase hex")
    label: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$", description="class the operator gave")
    verdict: Literal["false_reject", "confirmed_defect", "escape"]
    labelled_at: datetime = Field(description="when the agent labelled it (device clock, timezone-aware)")


class ServerState:
    """The durable state of one sync server under ``root`` (created if missing)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        for folder in (self.root, self._tmp, self.root / "packages", self.root / "deployments", self.root / "windows"):
            folder.mkdir(parents=True, exist_ok=True)
        self._devices_cache: tuple[tuple[int, int, int], dict[str, dict[str, Any]]] | None = None

    def __repr__(self) -> str:
        return f"ServerState(root={str(self.root)!r})"

    # ------------------------------------------------------------------ devices

    def register_device(self, device_id: str, line: str, *, canary: bool = False) -> str:
        """Register (or re-register) a device on a line and return its new bearer token.

        Only the token's sha256 is stored, so a leaked state folder does not leak credentials; the
        caller must hand the returned token to the device now, as it cannot be recovered later.
        Re-registering replaces the token (the old one stops working) and the line and canary flag.
        """
        _check_name("device_id", device_id)
        _check_name("line", line)
        if not isinstance(canary, bool):
            raise InvalidInput(f"device {device_id}: canary must be True or False, got {canary!r}")
        # A fixed prefix: a bare urlsafe token may start with "-" and then reads as an option on a
        # command line (`--token -abc`), which made agents exit at start-up now and then.
        token = "mfgt_" + secrets.token_urlsafe(32)
        with self._locked():
            devices = self._read_devices(use_cache=False)
            previous = devices.get(device_id)
            devices[device_id] = {
                "line": line,
                "canary": canary,
                "token_sha256": _token_hash(token),
                "registered_at": _now().isoformat(),
            }
            self._write_devices(devices)
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
        _check_name("device_id", device_id)
        if not isinstance(canary, bool):
            raise InvalidInput(f"device {device_id}: canary must be True or False, got {canary!r}")
        with self._locked():
            devices = self._read_devices(use_cache=False)
            if device_id not in devices:
                raise UnknownDevice(
                    f"device {device_id!r} is not registered (known: {_some(devices)}); "
                    "register it with register_device first"
                )
            devices[device_id] = {**devices[device_id], "canary": canary}
            self._write_devices(devices)
        logger.info("device %s canary=%s", device_id, canary)

    def canary_devices(self, line: str) -> list[str]:
        """The ids of the devices registered on ``line`` and flagged canary, sorted: the default
        targets of a canary deployment."""
        _check_name("line", line)
        devices = self._read_devices(use_cache=True)
        return sorted(d for d, record in devices.items() if record["line"] == line and record["canary"])

    def authenticate(self, token: str) -> DeviceRecord:
        """The device holding ``token``, compared by sha256 in constant time against every device."""
        if not isinstance(token, str) or not token:
            raise UnknownDevice("no device token given; send 'Authorization: Bearer <token>' from registration")
        wanted = _token_hash(token)
        found: DeviceRecord | None = None
        for device_id, record in self._read_devices(use_cache=True).items():
            # No early exit: the time taken does not depend on which device (if any) matched.
            if hmac.compare_digest(wanted, record["token_sha256"]):
                found = DeviceRecord(device_id=device_id, line=record["line"], canary=bool(record["canary"]))
        if found is None:
            raise UnknownDevice(
                "the device token is not registered (revoked by a re-registration, or from another "
                "server); register the device again and configure its new token"
            )
        return found

    # -------------------------------------------------------------- deployments

    def publish(self, signed: SignedManifest, package_dir: Path) -> None:
        """Make ``signed`` the current deployment of its line's ring, serving the files of ``package_dir``.

        Every file the manifest lists is copied into ``packages/<model_version>/`` while its sha256 and
        size are computed, and nothing becomes servable unless all of them match the manifest (so what
        is served is exactly what was verified). The signature is not checked: devices verify it.
        Publishing a version again is idempotent; a version cannot change its bytes. The history
        record is written before the ring pointer, so everything that was ever live is in history.
        """
        manifest = _parse_manifest(signed)
        line, version, ring = manifest.line, manifest.model_version, Ring(manifest.ring)
        package_dir = Path(package_dir)
        if not package_dir.is_dir():
            raise PackageMismatch(
                f"deployment {manifest.deployment_id}: package folder {package_dir} does not exist or is "
                "not a folder; pass the exported model package the manifest was built from"
            )
        with self._locked():
            self._install_package(manifest, package_dir)
            ring_path = self._ring_path(line, ring)
            try:
                current = self._read_ring(ring_path)
            except CorruptState as exc:  # publishing is the repair: replace it, but say so
                logger.warning("replacing the unreadable %s deployment of line %s: %s", ring, line, exc)
                current = None
            if current == signed:
                logger.info("deployment %s is already the %s of line %s; nothing to do", manifest.deployment_id, ring, line)
                return
            self._append_history(
                line,
                {
                    "event": "publish",
                    "at": _now().isoformat(),
                    "line": line,
                    "ring": ring.value,
                    "deployment_id": manifest.deployment_id,
                    "model_version": version,
                    "signed_manifest": signed.model_dump(mode="json"),
                },
            )
            _atomic_write_text(ring_path, signed.model_dump_json(), self._tmp)
            unknown = self._canary_targets_not_on_line(manifest) if ring is Ring.CANARY else []
        if unknown:
            logger.warning(
                "canary deployment %s targets devices not registered on line %s: %s; they will not get it",
                manifest.deployment_id,
                line,
                ", ".join(unknown),
            )
        logger.info("published %s (model %s) as the %s of line %s", manifest.deployment_id, version, ring, line)

    def package_dir(self, model_version: str) -> Path:
        """The folder holding a published version's verified files (to re-publish it, e.g. on rollback)."""
        folder = self._package_dir(model_version) / "files"
        if not folder.is_dir():
            raise NotFound(f"model version {model_version} was never published to this server")
        return folder

    def clear_canary(self, line: str) -> None:
        """End the line's canary ring: canary devices fall back to the fleet deployment.

        Call after promoting the canary to the fleet or after rolling it back. Ending a ring that is
        not active does nothing (so a retried promotion does not fail).
        """
        _check_name("line", line)
        with self._locked():
            ring_path = self._ring_path(line, Ring.CANARY)
            current = self._read_ring(ring_path)
            if current is None:
                logger.info("line %s has no canary deployment; nothing to clear", line)
                return
            manifest = _parse_manifest(current)
            self._append_history(
                line,
                {
                    "event": "clear_canary",
                    "at": _now().isoformat(),
                    "line": line,
                    "ring": Ring.CANARY.value,
                    "deployment_id": manifest.deployment_id,
                    "model_version": manifest.model_version,
                },
            )
            ring_path.unlink()
            _fsync_dir(ring_path.parent)
        logger.info("cleared canary deployment %s of line %s", manifest.deployment_id, line)

    def deployment_for(self, device: DeviceRecord) -> SignedManifest | None:
        """What ``device`` must run: the canary when it is targeted by it (listed in the canary
        manifest's devices, or flagged canary), else the fleet deployment; None when neither exists."""
        current = self.deployments(device.line)
        canary = current.get(Ring.CANARY.value)
        if canary is not None:
            targets = _parse_manifest(canary).devices
            if device.canary or device.device_id in targets:
                return canary
        return current.get(Ring.FLEET.value)

    def deployments(self, line: str) -> dict[str, SignedManifest]:
        """The line's live deployments, ring name -> SignedManifest (rings without one are absent)."""
        _check_name("line", line)
        found: dict[str, SignedManifest] = {}
        for ring in Ring:
            signed = self._read_ring(self._ring_path(line, ring))
            if signed is not None:
                found[ring.value] = signed
        return found

    def history(self, line: str) -> list[dict[str, Any]]:
        """Every committed history record of ``line``, oldest first.

        A record is committed once its line ends with a newline: an unterminated last line is a
        write in progress (or one torn by a crash before its deployment went live) and is left out.
        """
        _check_name("line", line)
        path = self._history_path(line)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        records: list[dict[str, Any]] = []
        for number, raw in enumerate(text.split("\n")[:-1], start=1):
            try:
                records.append(json.loads(raw))
            except json.JSONDecodeError as exc:
                raise CorruptState(
                    f"{path}, line {number}: not a JSON record ({exc}); inspect the file and remove or "
                    "repair the line (history is the audit trail, so do not just delete the file)"
                ) from exc
        return records

    def package_file(self, device: DeviceRecord, model_version: str, path: str) -> Path:
        """Where the package file ``path`` of ``model_version`` lies, if ``device`` may read it."""
        return self.package_file_info(device, model_version, path).path

    def package_file_info(self, device: DeviceRecord, model_version: str, path: str) -> PackageFile:
        """The package file ``path`` of ``model_version`` with its sha256 and size, if ``device`` may read it.

        Only versions deployed (now or before, to any ring) to the device's own line are readable,
        else :class:`Forbidden`; only files in the version's verified index exist, else
        :class:`NotFound`. Paths are looked up in the index, never joined unchecked, so ``..`` or an
        absolute path cannot reach outside the package.
        """
        if model_version not in self._versions_deployed(device.line):
            raise Forbidden(
                f"device {device.device_id}: model version {model_version!r} was never deployed to line "
                f"{device.line}; download only the files of the manifest GET /v1/manifest returns"
            )
        index = self._read_index(model_version)
        entry = index.get(path) if isinstance(path, str) else None
        if entry is None:
            raise NotFound(
                f"model version {model_version}: {path!r} is not a file of its package (files: "
                f"{_some(index)}); download the paths the manifest lists"
            )
        files_dir = self._package_dir(model_version) / "files"
        full = files_dir / path
        if not full.resolve().is_relative_to(files_dir.resolve()) or not full.is_file():
            raise CorruptState(
                f"{full}: listed in the index of model version {model_version} but missing or outside the "
                "package; publish the deployment again to restore it"
            )
        return PackageFile(path=full, sha256=entry["sha256"], n_bytes=entry["n_bytes"])

    # ------------------------------------------------------------------ windows

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
        folder = self.root / "windows" / device.line / device.device_id
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{hashlib.sha256(window.window_id.encode()).hexdigest()}.json"
        tmp = _write_tmp(self._tmp, json.dumps(record, sort_keys=True).encode())
        try:
            os.link(tmp, final)
        except FileExistsError:
            self._warn_if_different(final, record)
            return False
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(folder)
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
        base = self.root / "windows"
        if line is not None:
            _check_name("line", line)
            line_dirs = [base / line]
        else:
            line_dirs = sorted(p for p in base.iterdir() if p.is_dir())
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

    # ---------------------------------------------------------------- feedback

    def record_feedback(
        self,
        item: FeedbackItem,
        image: bytes,
        device: DeviceRecord,
        received_at: datetime,
        *,
        max_bytes: int = MAX_FEEDBACK_BYTES,
    ) -> bool:
        """Store one labelled image once per (device, sha256); False when it was already stored.

        The bytes must hash to ``item.sha256`` (a mismatch is a transfer or agent bug: 422). The image
        is moved into place first and the sidecar hard-linked last, so a sidecar always names a
        complete image and of two concurrent uploads exactly one is stored.
        """
        if item.device_id != device.device_id or item.line != device.line:
            raise Forbidden(
                f"feedback image {item.image!r} is for device {item.device_id} on line {item.line}, but the token "
                f"belongs to device {device.device_id} on line {device.line}; a device uploads only its own feedback"
            )
        if received_at.tzinfo is None or item.labelled_at.tzinfo is None:
            raise InvalidInput(
                f"feedback image {item.image!r}: received_at and labelled_at must be timezone-aware (UTC)"
            )
        if len(image) > max_bytes:
            raise TooLarge(
                f"feedback image {item.image!r} is {len(image)} bytes, over the limit of {max_bytes}; "
                "send a smaller (e.g. PNG-compressed) image"
            )
        suffix = PurePosixPath(item.image).suffix.lower()
        if suffix not in FEEDBACK_IMAGE_SUFFIXES or "/" in item.image or "\\" in item.image:
            raise InvalidInput(
                f"feedback image {item.image!r} must be a plain file name ending in one of "
                f"{sorted(FEEDBACK_IMAGE_SUFFIXES)}"
            )
        actual = hashlib.sha256(image).hexdigest()
        if actual != item.sha256:
            raise InvalidInput(
                f"feedback image {item.image!r}: its bytes have sha256 {actual}, the upload declares {item.sha256}; "
                "the image changed or was corrupted in transit, re-queue it on the device"
            )
        folder = self.root / "feedback" / _check_name("line", device.line) / device.device_id
        folder.mkdir(parents=True, exist_ok=True)
        sidecar = folder / f"{item.sha256}.json"
        if sidecar.exists():
            return False
        record = item.model_dump(mode="json")
        record["image_file"] = f"{item.sha256}{suffix}"
        record["n_bytes"] = len(image)
        record["received_at"] = received_at.astimezone(UTC).isoformat()
        image_tmp = _write_tmp(self._tmp, image)
        try:
            os.replace(image_tmp, folder / record["image_file"])  # same sha256, same bytes: replacing is harmless
        except BaseException:
            image_tmp.unlink(missing_ok=True)
            raise
        tmp = _write_tmp(self._tmp, json.dumps(record, sort_keys=True).encode())
        try:
            os.link(tmp, sidecar)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(folder)
        logger.info(
            "stored feedback image %s from device %s as %r (%s)", item.image, device.device_id, item.label, item.verdict
        )
        return True

    def feedback(self, line: str, since: datetime | None = None) -> list[dict[str, Any]]:
        """Every stored feedback image of ``line`` (received at or after ``since``), oldest receipt first.

        Each is the sidecar dict (``device_id``, ``line``, ``model_version``, ``image``, ``sha256``,
        ``label``, ``verdict``, ``labelled_at``, ``image_file``, ``n_bytes``, ``received_at``) plus
        ``path``: the absolute path of the stored image. ``since`` is inclusive and compares with the
        server's receive time; key records by (device_id, sha256) when advancing a cursor.
        """
        _check_name("line", line)
        if since is not None and since.tzinfo is None:
            raise InvalidInput(f"since {since.isoformat()} has no timezone; pass an aware datetime (UTC)")
        found: list[tuple[datetime, dict[str, Any]]] = []
        for path in sorted((self.root / "feedback" / line).glob("*/*.json")):
            try:
                record = json.loads(path.read_bytes())
                received = datetime.fromisoformat(record["received_at"])
                image_path = path.parent / record["image_file"]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise CorruptState(f"{path}: not a stored feedback sidecar ({exc!r}); inspect it and move it aside") from exc
            if not image_path.is_file():
                raise CorruptState(f"{path}: its image {image_path} is missing; move the sidecar aside")
            if since is None or received >= since:
                found.append((received, {**record, "path": str(image_path.resolve())}))
        found.sort(key=lambda item: (item[0], item[1]["device_id"], item[1]["sha256"]))
        return [record for _, record in found]

    # ---------------------------------------------------------------- internals

    @property
    def _tmp(self) -> Path:
        return self.root / "tmp"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive lock over read-modify-write changes, across threads and processes."""
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _read_devices(self, *, use_cache: bool) -> dict[str, dict[str, Any]]:
        path = self.root / "devices.json"
        try:
            stat = path.stat()
        except FileNotFoundError:
            return {}
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        cached = self._devices_cache
        if use_cache and cached is not None and cached[0] == key:
            return cached[1]
        try:
            payload = json.loads(path.read_bytes())
            devices = payload["devices"]
            if payload.get("schema") != _DEVICES_SCHEMA or not isinstance(devices, dict):
                raise ValueError(f"schema {payload.get('schema')!r}, expected {_DEVICES_SCHEMA}")
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise CorruptState(
                f"{path}: not a devices file ({exc!r}); restore it from backup or re-register the devices"
            ) from exc
        self._devices_cache = (key, devices)
        return {device_id: dict(record) for device_id, record in devices.items()} if not use_cache else devices

    def _write_devices(self, devices: dict[str, dict[str, Any]]) -> None:
        payload = {"schema": _DEVICES_SCHEMA, "devices": dict(sorted(devices.items()))}
        _atomic_write_text(self.root / "devices.json", json.dumps(payload, indent=1), self._tmp)

    def _ring_path(self, line: str, ring: Ring) -> Path:
        return self.root / "deployments" / line / f"{ring.value}.json"

    def _history_path(self, line: str) -> Path:
        return self.root / "deployments" / line / "history.jsonl"

    def _package_dir(self, model_version: str) -> Path:
        return self.root / "packages" / model_version

    def _read_ring(self, path: Path) -> SignedManifest | None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            return SignedManifest.model_validate_json(text)
        except ValidationError as exc:
            raise CorruptState(f"{path}: not a signed manifest ({exc}); publish the deployment again") from exc

    def _append_history(self, line: str, record: dict[str, Any]) -> None:
        """Append one record as one write; caller holds the lock. A torn tail left by a crash is
        cut first: it was never followed by its ring pointer, so it never went live."""
        path = self._history_path(line)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                head = os.pread(fd, size, 0)
                keep = head.rfind(b"\n") + 1
                logger.warning("%s: dropping an unterminated record of %d bytes left by a crash", path, size - keep)
                os.ftruncate(fd, keep)
            os.write(fd, (json.dumps(record, sort_keys=True) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def _versions_deployed(self, line: str) -> set[str]:
        versions = {_parse_manifest(signed).model_version for signed in self.deployments(line).values()}
        versions.update(r["model_version"] for r in self.history(line) if r.get("event") == "publish")
        return versions

    def _read_index(self, model_version: str) -> dict[str, dict[str, Any]]:
        path = self._package_dir(model_version) / "index.json"
        try:
            return json.loads(path.read_bytes())["files"]
        except FileNotFoundError:
            return {}
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CorruptState(
                f"{path}: not a package index ({exc!r}); move the folder {path.parent} aside and publish the "
                "deployments of this model version again"
            ) from exc

    def _install_package(self, manifest: DeploymentManifest, package_dir: Path) -> None:
        """Copy and verify every file, then move them in, then update the index (caller holds the lock)."""
        version = manifest.model_version
        index = self._read_index(version)
        staged: list[tuple[ModelFile, Path]] = []
        try:
            for entry in manifest.files:
                source = package_dir / entry.path
                if not source.is_file():
                    raise PackageMismatch(
                        f"deployment {manifest.deployment_id}: {entry.path} is listed in the manifest but "
                        f"missing from {package_dir}; publish the package the manifest was built from"
                    )
                tmp, sha256, n_bytes = _copy_hashing(source, self._tmp)
                staged.append((entry, tmp))
                if (sha256, n_bytes) != (entry.sha256, entry.n_bytes):
                    raise PackageMismatch(
                        f"deployment {manifest.deployment_id}: {source} has sha256 {sha256} and {n_bytes} bytes, "
                        f"the manifest says {entry.sha256} and {entry.n_bytes} bytes; rebuild the manifest "
                        "from this package (or restore the package) and publish again"
                    )
                known = index.get(entry.path)
                if known is not None and (known["sha256"], known["n_bytes"]) != (sha256, n_bytes):
                    raise PackageMismatch(
                        f"model version {version} was already published with other bytes for {entry.path} "
                        f"(sha256 {known['sha256']}, now {sha256}); a version's files never change, so "
                        "register and publish the new model under a new model_version"
                    )
            files_dir = self._package_dir(version) / "files"
            added = 0
            for entry, tmp in staged:
                if entry.path in index:
                    continue
                destination = files_dir / entry.path
                destination.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, destination)
                _fsync_dir(destination.parent)
                index = {**index, entry.path: {"sha256": entry.sha256, "n_bytes": entry.n_bytes}}
                added += 1
            if added:
                payload = {"model_version": version, "files": dict(sorted(index.items()))}
                _atomic_write_text(self._package_dir(version) / "index.json", json.dumps(payload, indent=1), self._tmp)
                logger.info("model version %s: %d file(s) verified and servable", version, added)
        finally:
            for _, tmp in staged:
                tmp.unlink(missing_ok=True)

    def _canary_targets_not_on_line(self, manifest: DeploymentManifest) -> list[str]:
        devices = self._read_devices(use_cache=False)
        return [d for d in manifest.devices if devices.get(d, {}).get("line") != manifest.line]

    def _warn_if_different(self, stored_path: Path, record: dict[str, Any]) -> None:
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


# ---------------------------------------------------------------------- helpers


def _now() -> datetime:
    return datetime.now(UTC)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _some(mapping: dict[str, Any], limit: int = 10) -> str:
    names = sorted(mapping)
    if not names:
        return "none"
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidInput(
            f"{kind} {value!r} is not a valid name: use 1 to 63 letters, digits, '_' or '-' "
            "(it becomes a folder name on the server)"
        )
    return value


def _parse_manifest(signed: SignedManifest) -> DeploymentManifest:
    """The manifest inside ``signed``, with what the server relies on checked (not the signature)."""
    try:
        manifest = DeploymentManifest.model_validate_json(signed.manifest_json)
    except ValidationError as exc:
        raise InvalidInput(f"signed manifest (key {signed.key_id}) does not match the manifest schema: {exc}") from exc
    _check_name("line", manifest.line)
    if not _VERSION.fullmatch(manifest.model_version):
        raise InvalidInput(
            f"deployment {manifest.deployment_id}: model_version {manifest.model_version!r} is not valid: use up to "
            "128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    if problem := package_layout_problem(manifest):
        raise InvalidInput(f"deployment {manifest.deployment_id}: {problem}")
    return manifest


def _write_tmp(tmp_dir: Path, data: bytes) -> Path:
    """A new fsynced file under ``tmp_dir`` holding ``data``."""
    path = tmp_dir / f"{uuid.uuid4().hex}.tmp"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return path


def _atomic_write_text(path: Path, text: str, tmp_dir: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_tmp(tmp_dir, text.encode("utf-8"))
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _copy_hashing(source: Path, tmp_dir: Path) -> tuple[Path, str, int]:
    """Copy ``source`` to a new temporary file, returning it with the sha256 and size of what was copied."""
    digest = hashlib.sha256()
    n_bytes = 0
    path = tmp_dir / f"{uuid.uuid4().hex}.tmp"
    try:
        with source.open("rb") as reader, open(path, "xb") as writer:
            while chunk := reader.read(_COPY_CHUNK):
                digest.update(chunk)
                writer.write(chunk)
                n_bytes += len(chunk)
            writer.flush()
            os.fsync(writer.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, digest.hexdigest(), n_bytes


def _fsync_dir(folder: Path) -> None:
    """Make a rename or link in ``folder`` durable (a no-op where directories cannot be fsynced)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems refuse fsync on directories; the rename itself is done
        logger.debug("fsync of folder %s not supported: %s", folder, exc)
    finally:
        os.close(fd)
