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
    deployments/<line>/history.jsonl          every publish and canary end, for audit and rollback
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

from datetime import datetime
from pathlib import Path
from typing import Any

from edge_sync.contract import MetricWindow, SignedManifest
from edge_sync.server_state._folder import StateFolder
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
        """Store ``window`` once; False when this device already uploaded this window id."""
        return self._windows.record_window(window, device, received_at)

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
        """Store one labelled image once per (device, sha256); False when it was already stored."""
        return self._feedback.record_feedback(item, image, device, received_at, max_bytes=max_bytes)

    def feedback(self, line: str, since: datetime | None = None) -> list[dict[str, Any]]:
        """Every stored feedback image of ``line`` (received at or after ``since``), oldest receipt first."""
        return self._feedback.feedback(line, since)
