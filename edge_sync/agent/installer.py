"""Installing a model on the device: check the manifest, download, verify, self-test, switch atomically.

``active.json`` is the single source of truth for which verified version runs (and which one is
kept for rollback). A version becomes active only after every file matched its sha256 and the
package's self-test reproduced the platform's numbers; the switch is a rename of a verified folder
followed by an atomic replace of ``active.json``, so a crash at any point leaves the old model
active. ``*.partial`` folders are never run.
"""

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_sync.agent.config import AGENT_TASKS
from edge_sync.agent.download import PACKAGE_DIR, PART_SUFFIX, PARTIAL_SUFFIX, PackageDownloader
from edge_sync.agent.errors import AgentError, DownloadError, SelfTestFailed, VerificationError
from edge_sync.contract import (
    SELFTEST_FILE,
    ContractError,
    DeploymentManifest,
    HoldOrder,
    SelfTestMismatch,
    SignedManifest,
    decoder_for,
    package_layout_problem,
    verify_hold,
    verify_manifest,
)
from edge_sync.durable import fsync_dir, remove_tree, sha256_file, write_atomic
from edge_sync.inference import InferenceError, Predictor, load_predictor

__all__ = ["ACTIVE_FILE", "ActiveRecord", "Installed", "Installer", "self_test"]

logger = logging.getLogger(__name__)

ACTIVE_FILE = "active.json"
SIGNED_MANIFEST = "signed_manifest.json"


class ActiveRecord(BaseModel):
    """``active.json``: which verified version runs, which one is kept, which were rolled back from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    active: str | None = Field(None, description="None while the platform's hold order says: run no model")
    previous: str | None = None
    rolled_back: tuple[str, ...] = Field((), description="versions rolled back from; their manifests are refused")
    hold: str | None = Field(None, description="the hold order in force (id: reason); parts go to manual inspection")
    updated_at: datetime


@dataclass(frozen=True)
class Installed:
    version: str
    signed: SignedManifest
    manifest: DeploymentManifest
    predictor: Predictor
    folder: Path


class Installer:
    """The ``models/`` folder and ``active.json`` under ``state_dir``."""

    def __init__(
        self,
        state_dir: Path,
        public_key: object,
        client: httpx.Client,
        server_url: str,
        auth: dict[str, str],
        *,
        num_threads: int,
        clock: Callable[[], datetime],
    ) -> None:
        self._state_dir = state_dir
        self.models_dir = state_dir / "models"
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self._public_key = public_key
        self._num_threads = num_threads
        self._clock = clock
        self.record: ActiveRecord | None = self._read_record()
        self.active: Installed | None = None
        self._downloader = PackageDownloader(client, server_url, auth, self.models_dir, lambda: self.active_version)

    @property
    def active_version(self) -> str | None:
        return None if self.active is None else self.active.version

    def load_active(self) -> None:
        """Re-verify the version ``active.json`` names and run it; one that no longer verifies is not run."""
        if self.record is None:
            return
        if self.record.active is None:
            logger.warning(
                "on hold (%s): running no model; images wait for the next deployment, parts go to manual inspection",
                self.record.hold,
            )
            return
        try:
            self.active = self.load_installed(self.record.active)
        except (VerificationError, SelfTestFailed) as exc:
            logger.error(
                "active version %s in %s does not verify any more (%s); running no model until the "
                "next sync installs the deployment again",
                self.record.active,
                self._state_dir / ACTIVE_FILE,
                exc,
            )
        else:
            logger.info("running model %s (from %s)", self.active.version, self._state_dir / ACTIVE_FILE)

    def verify(self, signed: SignedManifest) -> DeploymentManifest:
        """The manifest, if its signature verifies and this device can store and run it."""
        manifest = verify_manifest(signed, self._public_key)
        self.check_manifest(manifest)
        return manifest

    def verify_hold(self, signed: SignedManifest) -> HoldOrder:
        """The hold order, if its signature verifies and it is for this device's line."""
        return verify_hold(signed, self._public_key)

    def check_manifest(self, manifest: DeploymentManifest) -> None:
        """Checks the signature cannot make: is the package safe to store and runnable by this agent."""
        version = manifest.model_version
        if manifest.task not in AGENT_TASKS:
            raise VerificationError(
                f"model {version} is a {manifest.task.value!r} model; this agent runs "
                f"{', '.join(sorted(t.value for t in AGENT_TASKS))} models only; update the edge agent"
            )
        if version.endswith(PARTIAL_SUFFIX):
            raise VerificationError(
                f"model version {version!r} ends in {PARTIAL_SUFFIX}, the agent's marker of a download in "
                "progress; rename the version on the platform"
            )
        # Which devices get a deployment (listed in a canary's ``devices``, or flagged canary on the
        # server) is the server's decision; the signature already proves the platform made it.
        if problem := package_layout_problem(manifest):
            raise VerificationError(f"model {version}: {problem}")
        if partial := [item.path for item in manifest.files if item.path.endswith(PART_SUFFIX)]:
            raise VerificationError(
                f"model {version}: package path {partial[0]!r} is not a safe relative path here: names ending in "
                f"{PART_SUFFIX} are the agent's partial downloads; rename the file on the platform"
            )

    def activate(self, signed: SignedManifest, manifest: DeploymentManifest, before_switch: Callable[[], None]) -> None:
        """Download (or reuse), verify and self-test ``manifest``'s package, then switch to it.

        ``before_switch`` runs once everything verified and before ``active.json`` changes (the agent
        closes the open window there, so no window mixes versions)."""
        version = manifest.model_version
        final = self.models_dir / version
        staging: Path | None = None
        if final.is_dir():  # e.g. the previous version, deployed again by the platform
            try:
                self._verify_files(final / PACKAGE_DIR, manifest)
                staging = final
                logger.info("model %s is already on disk and verifies; reusing it", version)
            except VerificationError as exc:
                logger.warning("kept copy of %s does not match its manifest (%s); downloading it again", version, exc)
                shutil.rmtree(final)
        if staging is None:
            staging = self._downloader.download(manifest)
        try:
            write_atomic(staging / SIGNED_MANIFEST, signed.model_dump_json().encode())
            predictor = self._load_and_selftest(staging / PACKAGE_DIR, manifest)
        except SelfTestFailed:
            if staging != final:
                remove_tree(staging)
            raise
        except OSError as exc:
            raise DownloadError(
                f"cannot store the manifest of model {version} in {staging} ({exc}); "
                f"{self.active_version or 'no model'} keeps running; check the state folder's disk"
            ) from exc
        # Everything verified: switch. active.json is the truth; the rename before it only moves a
        # verified folder to its final name, so a crash (or error) between the two leaves the old
        # model active and the next sync reuses the verified folder.
        previous = self.active_version or (self.record.previous if self.record else None)
        rolled_back = tuple(v for v in (self.record.rolled_back if self.record else ()) if v != version)
        record = ActiveRecord(active=version, previous=previous, rolled_back=rolled_back, updated_at=self._clock())
        try:
            before_switch()
            if staging != final:
                os.rename(staging, final)
                fsync_dir(self.models_dir)
            write_atomic(self._state_dir / ACTIVE_FILE, record.model_dump_json(indent=2).encode())
        except OSError as exc:
            raise AgentError(
                f"model {version} verified but the switch to it failed ({exc}); {previous or 'no model'} keeps "
                f"running and the next sync retries; check the disk of {self._state_dir}"
            ) from exc
        self.record = record
        self.active = Installed(version, signed, manifest, predictor, final)
        self._prune()

    def adopt(self, signed: SignedManifest, manifest: DeploymentManifest) -> None:
        """Keep running the active version under a new manifest of it (new threshold, ring, deployment)."""
        active = self.active
        if active is None:
            raise AgentError("internal: adopt without an active model")
        write_atomic(active.folder / SIGNED_MANIFEST, signed.model_dump_json().encode())
        self.active = Installed(active.version, signed, manifest, active.predictor, active.folder)

    def hold(self, order: HoldOrder, before_switch: Callable[[], None]) -> str | None:
        """Obey a verified hold order: run no model from now on (the installed packages are kept, so a
        later deployment of one of them activates without a download); returns the version stopped."""
        stopped = self.active_version
        previous = stopped or (self.record.previous if self.record else None)
        rolled_back = tuple(self.record.rolled_back) if self.record else ()
        record = ActiveRecord(
            active=None, previous=previous, rolled_back=rolled_back, hold=f"{order.order_id}: {order.reason}",
            updated_at=self._clock(),
        )
        before_switch()
        write_atomic(self._state_dir / ACTIVE_FILE, record.model_dump_json(indent=2).encode())
        self.record = record
        self.active = None
        return stopped

    @property
    def hold_order(self) -> str | None:
        """The hold order in force (``id: reason``), or None."""
        return None if self.record is None or self.record.active is not None else self.record.hold

    def rollback(self, before_switch: Callable[[], None]) -> tuple[str, str]:
        """Re-activate the previous version (re-verified from disk); returns (rolled back to, from)."""
        record = self.record
        if record is not None and record.active is None:
            raise AgentError(
                f"the device is on hold by the platform's order ({record.hold}); it runs no model and a local "
                "rollback would override the platform: deploy a model from the platform to end the hold"
            )
        if record is None or record.previous is None:
            raise AgentError(
                f"no previous model version is kept in {self.models_dir} (active: {self.active_version}); "
                "nothing to roll back to"
            )
        target, current = record.previous, record.active
        installed = self.load_installed(target)
        before_switch()
        rolled_back = tuple(sorted((set(record.rolled_back) - {target}) | {current}))
        new_record = ActiveRecord(active=target, previous=current, rolled_back=rolled_back, updated_at=self._clock())
        write_atomic(self._state_dir / ACTIVE_FILE, new_record.model_dump_json(indent=2).encode())
        self.record = new_record
        self.active = installed
        return target, current

    def load_installed(self, version: str) -> Installed:
        """Re-verify an installed version from disk (signature, files, self-test) and load it."""
        folder = self.models_dir / version
        try:
            signed = SignedManifest.model_validate_json((folder / SIGNED_MANIFEST).read_bytes())
        except (OSError, ValidationError) as exc:
            raise VerificationError(f"model {version}: cannot read {folder / SIGNED_MANIFEST} ({exc})") from exc
        try:
            manifest = verify_manifest(signed, self._public_key)
        except ContractError as exc:
            raise VerificationError(f"model {version}: stored manifest does not verify: {exc}") from exc
        if manifest.model_version != version:
            raise VerificationError(f"{folder / SIGNED_MANIFEST} is the manifest of {manifest.model_version}, not {version}")
        self.check_manifest(manifest)
        self._verify_files(folder / PACKAGE_DIR, manifest)
        predictor = self._load_and_selftest(folder / PACKAGE_DIR, manifest)
        return Installed(version, signed, manifest, predictor, folder)

    def _verify_files(self, package: Path, manifest: DeploymentManifest) -> None:
        for item in manifest.files:
            path = package.joinpath(*item.path.split("/"))
            if not path.is_file():
                raise VerificationError(f"model {manifest.model_version}: {path} is missing")
            size = path.stat().st_size
            if size != item.n_bytes:
                raise VerificationError(
                    f"model {manifest.model_version}: {path} has {size} bytes, the manifest says {item.n_bytes}"
                )
            digest = sha256_file(path)
            if digest != item.sha256:
                raise VerificationError(
                    f"model {manifest.model_version}: {path} has sha256 {digest}, the manifest says {item.sha256}"
                )

    def _load_and_selftest(self, package: Path, manifest: DeploymentManifest) -> Predictor:
        version = manifest.model_version
        try:
            predictor = load_predictor(
                package.joinpath(*manifest.model_path.split("/")), manifest.model_format, num_threads=self._num_threads
            )
        except InferenceError as exc:
            raise SelfTestFailed(f"model {version} cannot be loaded: {exc}") from exc
        self_test(predictor, package / SELFTEST_FILE, manifest)
        return predictor

    def _prune(self) -> None:
        """Keep the active and previous versions; delete older ones and abandoned downloads."""
        keep = {self.record.active, self.record.previous} if self.record else set()
        for entry in self.models_dir.iterdir():
            if entry.is_dir() and entry.name not in keep:
                remove_tree(entry)
                logger.info("deleted old model folder %s", entry)

    def _read_record(self) -> ActiveRecord | None:
        path = self._state_dir / ACTIVE_FILE
        if not path.is_file():
            return None
        try:
            return ActiveRecord.model_validate_json(path.read_bytes())
        except ValidationError as exc:
            raise AgentError(
                f"{path} is not a valid active-model record ({exc}); it is only ever replaced atomically, so "
                "it was edited by hand: restore it or delete it (the next sync then installs the deployment)"
            ) from exc


def self_test(predictor: Predictor, path: Path, manifest: DeploymentManifest) -> None:
    """Run the package's self-test (``path``) as the task's decoder judges it (each task compares its
    own outputs with the platform's; see :mod:`edge_sync.contract.decoders`). Raises
    :class:`SelfTestFailed` when the device does not run the validated model."""
    try:
        decoder_for(manifest.task).self_test(predictor, path, manifest)
    except (SelfTestMismatch, ContractError) as exc:
        raise SelfTestFailed(str(exc)) from exc
