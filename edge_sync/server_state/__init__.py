"""The sync server's durable state: devices, published packages, deployments per line and ring, the
metric windows and the feedback images devices upload.

Two kinds of process share one state folder: the HTTP server (:mod:`edge_sync.server`), which
authenticates devices, serves manifests and package files and stores metric windows and feedback,
and the platform, which registers devices, publishes deployments and reads windows and feedback
back by calling :class:`ServerState` directly. Everything is therefore plain files whose every
change is crash-safe and visible to the other process at once (all through :mod:`edge_sync.durable`):

* a file is replaced by writing a temporary file under ``tmp/``, fsyncing it and ``os.replace``-ing
  it into place, so a reader sees the old or the new content, never half of it;
* read-modify-write changes (devices, deployments, package indexes, history) take an exclusive
  ``fcntl.flock`` on ``.lock``, so two publishers cannot lose each other's update;
* a metric window (and a feedback sidecar) is written complete to ``tmp/`` and then hard-linked to
  its final name: ``link`` fails with ``EEXIST`` exactly like ``open(O_CREAT | O_EXCL)``, so of two
  concurrent uploads of one window id exactly one is stored, but unlike ``O_EXCL`` the final name
  never exists half-written, so a crash mid-write cannot turn a window into a "duplicate" that
  holds no data.

Layout under ``root``::

    devices.json                              device -> line, canary flag, sha256 of its token
    packages/<model_version>/files/<path>     the bytes devices download (verified at publish)
    packages/<model_version>/index.json       which files are servable, with sha256 and size
    deployments/<line>/<ring>.json            the SignedManifest currently live for a ring
    deployments/<line>/history.jsonl          every publish, canary end and hold, for audit and rollback
    deployments/<line>/hold.json              a signed hold order (run no model) until the next publish
    seen/<line>/<device>.json                 what the device said it runs at its last sync
    windows/<line>/<device>/<sha256(window_id)>.json   one stored metric window
    feedback/<line>/<device>/<sha256>.<ext>   an operator-labelled image a device uploaded
    feedback/<line>/<device>/<sha256>.json    its sidecar (label, verdict, ...): written last, by hard link,
                                              so it exists only for a complete image and only once
    tmp/                                      temporary files (same filesystem, for atomic renames)
    .lock                                     the flock every read-modify-write change holds

One store per concern, over the same folder and lock: :mod:`.devices`, :mod:`.deployments`,
:mod:`.windows`, :mod:`.feedback`; :class:`ServerState` only builds them and delegates. Line and
device names follow :data:`edge_sync.contract.names.NAME`, the rule the devices check too.

This package imports nothing from Dagster or the platform's packages; it needs a POSIX system
(``fcntl``, hard links), which the server runs on.
"""

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from edge_sync.contract import DeploymentManifest, HoldOrder, MetricWindow, SignedManifest
from edge_sync.durable import write_atomic
from edge_sync.server_state._folder import StateFolder, check_name
from edge_sync.server_state.deployments import DeploymentStore, PackageFile
from edge_sync.server_state.devices import DeviceRecord, DeviceStore
from edge_sync.server_state.errors import (
    CorruptState,
    Forbidden,
    InvalidInput,
    NotFound,
    PackageMismatch,
    SyncError,
    TooLarge,
    UnknownDevice,
)
from edge_sync.server_state.feedback import FEEDBACK_IMAGE_SUFFIXES, MAX_FEEDBACK_BYTES, FeedbackItem, FeedbackStore
from edge_sync.server_state.windows import WindowStore

__all__ = [
    "FEEDBACK_IMAGE_SUFFIXES",
    "MAX_CLOCK_AHEAD",
    "MAX_UPLOAD_AGE",
    "MAX_FEEDBACK_BYTES",
    "CorruptState",
    "DeviceRecord",
    "FeedbackItem",
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


MAX_CLOCK_AHEAD = timedelta(minutes=10)
"""How far a device's clock may run ahead of the server's: a window that ends later is refused."""
MAX_UPLOAD_AGE = timedelta(days=90)
"""Oldest window or verdict the server takes (a device offline for a season sends its outbox later;
older than this, the model it names is long retired and the counts would mislead the health sensor)."""


class ServerState:
    """The durable state of one sync server under ``root`` (created if missing).

    Each method delegates to the store that owns it; see there for the details."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        folder = StateFolder(self.root)
        for path in (self.root, folder.tmp, self.root / "packages", self.root / "deployments", self.root / "windows"):
            path.mkdir(parents=True, exist_ok=True)
        self._devices = DeviceStore(folder)
        self._deployments = DeploymentStore(folder, self._devices)
        self._windows = WindowStore(folder)
        self._feedback = FeedbackStore(folder)

    def __repr__(self) -> str:
        return f"ServerState(root={str(self.root)!r})"

    # ------------------------------------------------------------------ devices

    def register_device(self, device_id: str, line: str, *, canary: bool = False) -> str:
        """Register (or re-register) a device on a line and return its new bearer token (only its hash is
        kept; re-registering revokes the old token). :meth:`DeviceStore.register_device`."""
        return self._devices.register_device(device_id, line, canary=canary)

    def set_canary(self, device_id: str, canary: bool) -> None:
        """Flag a device as part of (or remove it from) its line's canary ring."""
        self._devices.set_canary(device_id, canary)

    def canary_devices(self, line: str) -> list[str]:
        """The sorted ids of the devices on ``line`` flagged canary."""
        return self._devices.canary_devices(line)

    def authenticate(self, token: str) -> DeviceRecord:
        """The device holding ``token`` (constant-time), else :class:`UnknownDevice`."""
        return self._devices.authenticate(token)

    # -------------------------------------------------------------- deployments

    def publish(self, signed: SignedManifest, package_dir: Path) -> None:
        """Make ``signed`` the current deployment of its line's ring, serving the verified files of
        ``package_dir``. :meth:`DeploymentStore.publish`."""
        self._deployments.publish(signed, package_dir)

    def package_dir(self, model_version: str) -> Path:
        """The folder holding a published version's verified files (to re-publish it, e.g. on rollback)."""
        return self._deployments.package_dir(model_version)

    def clear_canary(self, line: str) -> None:
        """End the line's canary ring (a no-op when none is active)."""
        self._deployments.clear_canary(line)

    def deployment_for(self, device: DeviceRecord) -> SignedManifest | None:
        """What ``device`` must run: the canary when it targets it, else the fleet deployment, else None."""
        return self._deployments.deployment_for(device)

    def hold(self, signed: SignedManifest) -> HoldOrder:
        """Put a line on hold (its devices run no model) with a signed hold order; see the store."""
        return self._deployments.hold(signed)

    def hold_for(self, line: str) -> SignedManifest | None:
        """The line's signed hold order, or None when it is not on hold."""
        return self._deployments.hold_for(line)

    def note_running(self, device: DeviceRecord, running: str, at: datetime) -> None:
        """What ``device`` said it runs at its last sync (``<version>``, ``hold:<order>`` or ``none``).

        One small file per device, written atomically by that device's requests only, so no lock."""
        text = running.strip()[:200] or "none"
        record = {"device_id": device.device_id, "line": device.line, "running": text, "at": at.isoformat()}
        folder = self.root / "seen" / device.line
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / f"{device.device_id}.json", json.dumps(record, sort_keys=True).encode(), tmp_dir=self.root / "tmp")

    def device_status(self, line: str) -> list[dict[str, Any]]:
        """What each device of ``line`` last reported running, by device id (devices never synced are absent)."""
        folder = self.root / "seen" / check_name("line", line)
        return [json.loads(path.read_bytes()) for path in sorted(folder.glob("*.json"))] if folder.is_dir() else []

    def deployments(self, line: str) -> dict[str, SignedManifest]:
        """The line's live deployments, ring name -> SignedManifest (rings without one are absent)."""
        return self._deployments.deployments(line)

    def history(self, line: str) -> list[dict[str, Any]]:
        """Every committed history record of ``line``, oldest first."""
        return self._deployments.history(line)

    def package_file(self, device: DeviceRecord, model_version: str, path: str) -> Path:
        """Where the package file ``path`` of ``model_version`` lies, if ``device`` may read it."""
        return self._deployments.package_file(device, model_version, path)

    def package_file_info(self, device: DeviceRecord, model_version: str, path: str) -> PackageFile:
        """The package file with its sha256 and size, if ``device`` may read it.
        :meth:`DeploymentStore.package_file_info`."""
        return self._deployments.package_file_info(device, model_version, path)

    # ------------------------------------------------------------------ windows

    def record_window(self, window: MetricWindow, device: DeviceRecord, received_at: datetime) -> bool:
        """Store ``window`` once; False when this device already uploaded this window id.

        Beyond the contract's own checks (counts that add up, times in order), a window must name a
        model version deployed to the device's line and fall near the server's clock
        (:data:`MAX_CLOCK_AHEAD`, :data:`MAX_UPLOAD_AGE`); otherwise :class:`InvalidInput` (422).
        """
        if window.device_id == device.device_id and window.line == device.line:
            self._deployed(device, window.model_version, f"window {window.window_id!r}")
            _check_times(f"window {window.window_id!r}", received_at, started_at=window.started_at, ended_at=window.ended_at)
        return self._windows.record_window(window, device, received_at)

    def deployed_manifest(self, line: str, model_version: str) -> DeploymentManifest | None:
        """The newest manifest that deployed ``model_version`` to ``line``, or None if it never ran there."""
        return self._deployments.deployed_manifest(line, model_version)

    def _deployed(self, device: DeviceRecord, model_version: str, what: str) -> DeploymentManifest:
        manifest = self._deployments.deployed_manifest(device.line, model_version)
        if manifest is None:
            raise InvalidInput(
                f"{what} of device {device.device_id}: model_version {model_version!r} was never deployed to line "
                f"{device.line}; a device reports only on models it was sent (check the agent's active model)"
            )
        return manifest

    def windows(self, line: str | None = None, since: datetime | None = None) -> list[dict[str, Any]]:
        """Every stored window (of ``line``, received at or after ``since``), oldest receipt first."""
        return self._windows.windows(line, since)

    # ----------------------------------------------------------------- feedback

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

        The item must name a model version deployed to the device's line, a label among that model's
        classes, and a labelling time near the server's clock; otherwise :class:`InvalidInput` (422),
        because a label outside the variant's taxonomy would block every later training of it.
        """
        if item.device_id == device.device_id and item.line == device.line:
            what = f"feedback image {item.image!r}"
            manifest = self._deployed(device, item.model_version, what)
            if item.label not in manifest.classes:
                raise InvalidInput(
                    f"{what} of device {device.device_id}: label {item.label!r} is not a class of model "
                    f"{item.model_version} ({', '.join(manifest.classes)}); label it with one of these, or add the "
                    "class to the variant on the platform (mfgv variant add-class) and deploy a model that has it"
                )
            if item.labelled_at.tzinfo is not None:
                _check_times(what, received_at, ended_at=item.labelled_at, field="labelled_at")
        return self._feedback.record_feedback(item, image, device, received_at, max_bytes=max_bytes)

    def feedback(self, line: str, since: datetime | None = None) -> list[dict[str, Any]]:
        """Every stored feedback image of ``line`` (received at or after ``since``), oldest receipt first."""
        return self._feedback.feedback(line, since)


def _check_times(
    what: str, received_at: datetime, *, ended_at: datetime, started_at: datetime | None = None, field: str = "ended_at"
) -> None:
    """A device timestamp must lie between :data:`MAX_UPLOAD_AGE` before and :data:`MAX_CLOCK_AHEAD`
    after the server's receive time (naive stamps are refused by the stores that own them)."""
    if received_at.tzinfo is None or ended_at.tzinfo is None:
        return
    if ended_at > received_at + MAX_CLOCK_AHEAD:
        raise InvalidInput(
            f"{what}: {field} {ended_at.isoformat()} is {ended_at - received_at} ahead of the server's clock "
            f"({received_at.isoformat()}), more than {MAX_CLOCK_AHEAD} allows; set the device's clock (NTP)"
        )
    oldest = started_at if started_at is not None and started_at.tzinfo is not None else ended_at
    if oldest < received_at - MAX_UPLOAD_AGE:
        raise InvalidInput(
            f"{what}: {'started_at' if oldest is started_at else field} {oldest.isoformat()} is more than "
            f"{MAX_UPLOAD_AGE.days} days before the server's clock ({received_at.isoformat()}); the server keeps no "
            "figures that old (set the device's clock, or drop the device's backlog)"
        )
