"""Published packages and what each line's rings run: the server's write path for the platform.

Kept apart because it is the one store whose changes span several files: a publish copies and
verifies a package into ``packages/<model_version>/files/``, updates that version's ``index.json``,
appends to ``deployments/<line>/history.jsonl`` and then replaces ``deployments/<line>/<ring>.json``,
all under the state folder's lock and in that order, so a crash at any point leaves nothing servable
that was not verified and nothing live that is not in history. Devices read through it too: which
deployment they must run and which package files they may download.
"""

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge_sync.contract import (
    DeploymentManifest,
    HoldOrder,
    ModelFile,
    Ring,
    SignedManifest,
    is_hold_payload,
    package_layout_problem,
)
from edge_sync.durable import copy_hashing, fsync_dir, write_atomic
from edge_sync.server_state._folder import StateFolder, check_name, now, some
from edge_sync.server_state.devices import DeviceRecord, DeviceStore
from edge_sync.server_state.errors import CorruptState, Forbidden, InvalidInput, NotFound, PackageMismatch

__all__ = ["DeploymentStore", "PackageFile"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PackageFile:
    """A servable package file: where it lies and what the manifest says it is (ETag, length)."""

    path: Path
    sha256: str
    n_bytes: int


class DeploymentStore:
    """``packages/`` and ``deployments/`` under ``folder.root``; ``devices`` names a canary's strays."""

    def __init__(self, folder: StateFolder, devices: DeviceStore) -> None:
        self._folder = folder
        self._devices = devices
        self._deployed_cache: dict[tuple[str, str], DeploymentManifest] = {}

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
        with self._folder.locked():
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
                    "at": now().isoformat(),
                    "line": line,
                    "ring": ring.value,
                    "deployment_id": manifest.deployment_id,
                    "model_version": version,
                    "signed_manifest": signed.model_dump(mode="json"),
                },
            )
            write_atomic(ring_path, signed.model_dump_json().encode("utf-8"), tmp_dir=self._folder.tmp)
            self._end_hold(line, f"deployment {manifest.deployment_id} published")
            unknown = self._devices.not_on_line(line, manifest.devices) if ring is Ring.CANARY else []
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
        check_name("line", line)
        with self._folder.locked():
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
                    "at": now().isoformat(),
                    "line": line,
                    "ring": Ring.CANARY.value,
                    "deployment_id": manifest.deployment_id,
                    "model_version": manifest.model_version,
                },
            )
            ring_path.unlink()
            fsync_dir(ring_path.parent)
        logger.info("cleared canary deployment %s of line %s", manifest.deployment_id, line)

    def deployment_for(self, device: DeviceRecord) -> SignedManifest | None:
        """What ``device`` must run: the canary when it is targeted by it (listed in the canary
        manifest's devices, or flagged canary), else the fleet deployment, else the line's signed hold
        order (run no model); None when none of them exists."""
        current = self.deployments(device.line)
        canary = current.get(Ring.CANARY.value)
        if canary is not None:
            targets = _parse_manifest(canary).devices
            if device.canary or device.device_id in targets:
                return canary
        return current.get(Ring.FLEET.value) or self.hold_for(device.line)

    def hold(self, signed: SignedManifest) -> HoldOrder:
        """Put the order's line on hold: its canary ring ends and, with no fleet deployment, every
        device of the line is served the signed hold order (run no model) until the next publish.

        Refused while the line has a fleet deployment: then rolling back ends the canary and the
        devices run the fleet model, which needs no hold.
        """
        order = _parse_hold(signed)
        line = order.line
        with self._folder.locked():
            if self._read_ring(self._ring_path(line, Ring.FLEET)) is not None:
                raise InvalidInput(
                    f"line {line} has a fleet deployment; end its canary instead of holding the line"
                )
            at = now().isoformat()
            canary_path = self._ring_path(line, Ring.CANARY)
            canary = self._read_ring(canary_path)
            self._append_history(
                line,
                {
                    "event": "hold",
                    "at": at,
                    "line": line,
                    "order_id": order.order_id,
                    "reason": order.reason,
                    "model_version": order.rolled_back_version,
                    "ended_canary": _parse_manifest(canary).deployment_id if canary is not None else None,
                    "signed_hold": signed.model_dump(mode="json"),
                },
            )
            write_atomic(self._hold_path(line), signed.model_dump_json().encode("utf-8"), tmp_dir=self._folder.tmp)
            if canary is not None:
                canary_path.unlink()
                fsync_dir(canary_path.parent)
        logger.warning("line %s is on hold (%s): devices run no model", line, order.reason)
        return order

    def hold_for(self, line: str) -> SignedManifest | None:
        """The line's signed hold order, or None when it is not on hold."""
        check_name("line", line)
        path = self._hold_path(line)
        try:
            return SignedManifest.model_validate_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValidationError as exc:
            raise CorruptState(f"{path}: not a signed hold order ({exc}); deploy a model or hold the line again") from exc

    def _end_hold(self, line: str, why: str) -> None:
        """Caller holds the lock: a publish replaces a hold order."""
        path = self._hold_path(line)
        if path.exists():
            order = _parse_hold(SignedManifest.model_validate_json(path.read_text(encoding="utf-8")))
            self._append_history(line, {"event": "end_hold", "at": now().isoformat(), "line": line, "order_id": order.order_id, "why": why})
            path.unlink()
            fsync_dir(path.parent)
            logger.info("line %s is no longer on hold: %s", line, why)

    def deployments(self, line: str) -> dict[str, SignedManifest]:
        """The line's live deployments, ring name -> SignedManifest (rings without one are absent)."""
        check_name("line", line)
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
        check_name("line", line)
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

    def deployed_manifest(self, line: str, model_version: str) -> DeploymentManifest | None:
        """The newest manifest that deployed ``model_version`` to ``line`` (live or in history), or None
        when that version never ran there: what a device's upload naming it is checked against.

        A found one is remembered: history is append-only and a version never changes its files or
        classes, so "deployed there, with these classes" stays true (every upload asks; reading the
        history each time halved the server's upload rate). A miss is not remembered."""
        known = self._deployed_cache.get((line, model_version))
        if known is not None:
            return known
        found = self._find_deployed(line, model_version)
        if found is not None:
            self._deployed_cache[(line, model_version)] = found
        return found

    def _find_deployed(self, line: str, model_version: str) -> DeploymentManifest | None:
        for ring in Ring:
            signed = self._read_ring(self._ring_path(line, ring))
            if signed is not None and _parse_manifest(signed).model_version == model_version:
                return _parse_manifest(signed)
        for record in reversed(self.history(line)):
            if record.get("event") == "publish" and record.get("model_version") == model_version:
                return _parse_manifest(SignedManifest.model_validate(record["signed_manifest"]))
        return None

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
                f"{some(index)}); download the paths the manifest lists"
            )
        files_dir = self._package_dir(model_version) / "files"
        full = files_dir / path
        if not full.resolve().is_relative_to(files_dir.resolve()) or not full.is_file():
            raise CorruptState(
                f"{full}: listed in the index of model version {model_version} but missing or outside the "
                "package; publish the deployment again to restore it"
            )
        return PackageFile(path=full, sha256=entry["sha256"], n_bytes=entry["n_bytes"])

    # ---------------------------------------------------------------- internals

    def _ring_path(self, line: str, ring: Ring) -> Path:
        return self._folder.root / "deployments" / line / f"{ring.value}.json"

    def _hold_path(self, line: str) -> Path:
        return self._folder.root / "deployments" / line / "hold.json"

    def _history_path(self, line: str) -> Path:
        return self._folder.root / "deployments" / line / "history.jsonl"

    def _package_dir(self, model_version: str) -> Path:
        return self._folder.root / "packages" / model_version

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
                tmp, sha256, n_bytes = copy_hashing(source, self._folder.tmp)
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
                fsync_dir(destination.parent)
                index = {**index, entry.path: {"sha256": entry.sha256, "n_bytes": entry.n_bytes}}
                added += 1
            if added:
                payload = {"model_version": version, "files": dict(sorted(index.items()))}
                write_atomic(
                    self._package_dir(version) / "index.json",
                    json.dumps(payload, indent=1).encode("utf-8"),
                    tmp_dir=self._folder.tmp,
                )
                logger.info("model version %s: %d file(s) verified and servable", version, added)
        finally:
            for _, tmp in staged:
                tmp.unlink(missing_ok=True)


def _parse_manifest(signed: SignedManifest) -> DeploymentManifest:
    """The manifest inside ``signed``, with what the server relies on checked (not the signature).

    The manifest checks its own line and model_version names (the contract's rules), so a manifest
    that parses names safe folders; the file list is checked by the contract's package layout rule."""
    try:
        manifest = DeploymentManifest.model_validate_json(signed.manifest_json)
    except ValidationError as exc:
        raise InvalidInput(f"signed manifest (key {signed.key_id}) does not match the manifest schema: {exc}") from exc
    if problem := package_layout_problem(manifest):
        raise InvalidInput(f"deployment {manifest.deployment_id}: {problem}")
    return manifest


def _parse_hold(signed: SignedManifest) -> HoldOrder:
    try:
        payload = json.loads(signed.manifest_json)
        if not is_hold_payload(payload):
            raise ValueError("not a hold order")
        return HoldOrder.model_validate(payload)
    except (ValueError, ValidationError) as exc:
        raise InvalidInput(f"not a hold order ({exc}); sign a HoldOrder with edge_sync.contract.sign_hold") from exc
