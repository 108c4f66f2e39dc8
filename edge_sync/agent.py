"""The edge agent: fetch signed deployments, activate them safely, inspect camera images, report counts.

One agent runs on each inspection device beside a line camera. Its loop (:meth:`EdgeAgent.run`):

1. **sync**: ask the server for the line's signed manifest; verify the ed25519 signature and the
   schema version *before* downloading anything; download every file of the package resumably
   (``Range`` from the bytes already on disk), check each file's size and sha256, load the model and
   run the package's self-test (``selftest.npz``: the platform's own torch probabilities on a few
   images); only then switch atomically (rename ``models/<version>.partial`` to
   ``models/<version>`` and replace ``active.json``). Whatever fails, the model that was running
   keeps running: the device never has a half-written or unverified model active.
2. **inspect**: decide every new image in the camera folder, append the decision to
   ``decisions.jsonl`` and move the image to ``processed/``; files that are not usable images go to
   ``rejected_input/`` with a reason, and the loop goes on.
3. **feedback**: count operator verdicts appended to ``feedback.csv`` (each image/verdict once) and
   queue each labelled image (a copy plus a JSON sidecar) in ``feedback_outbox/``; :meth:`EdgeAgent.flush_feedback`
   uploads them to ``POST /v1/feedback`` so operator-labelled images join the training data.
4. **windows**: counts, a defect-score histogram and an input-brightness histogram per window;
   a closed window is written to ``outbox/`` (atomically) *before* any upload, and deleted only once
   the server acknowledged it, so server downtime loses nothing and a retry is idempotent.

State on disk (``state_dir``)::

    active.json                  which version runs, which one is kept for rollback (the truth)
    models/<version>/            signed_manifest.json + package/ (the verified files)
    models/<version>.partial/    a download in progress (ignored at start, resumed by the next sync)
    agent_state.json             the open metric window, window sequence, feedback cursor
    decisions.jsonl              one line per inspected image
    outbox/<window_id>.json      closed windows waiting for upload (outbox/rejected/: refused ones)
    feedback_rejected.csv        operator lines that could not be understood (raw, to fix and append again)
    feedback_problems.log        why a feedback line was rejected or its image could not be labelled
    feedback_outbox/<sha256>.*   labelled images + <sha256>.json sidecars waiting for upload (rejected/: refused)

Cameras must write images atomically (write a dot-file or ``*.tmp``/``*.part`` and rename it), as
such names are not picked up; a half-written file under its final name would be sent to
``rejected_input/``.

This module imports nothing from Dagster or from the platform's packages (only ``edge_sync``), so a
device installs it alone.
"""

import argparse
import base64
import csv
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import threading
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Literal, Self
from urllib.parse import quote

import httpx
import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from edge_sync.contract import (
    INPUT_BINS,
    SCORE_BINS,
    ContractError,
    DeploymentManifest,
    InputSpec,
    MetricWindow,
    ModelFile,
    SignedManifest,
    load_public_key,
    package_layout_problem,
    verify_manifest,
)
from edge_sync.imaging import fit_to_input
from edge_sync.inference import PIL_DECODE_ERRORS, InferenceError, ModelFormat, Predictor, load_predictor

__all__ = [
    "ACTIVE_FILE",
    "FEEDBACK_OUTBOX_DIR",
    "FP32_SELFTEST_TOLERANCE",
    "INT8_MIN_AGREEMENT",
    "SELFTEST_FILE",
    "VERDICTS",
    "AgentConfig",
    "AgentError",
    "Decision",
    "DownloadError",
    "DownloadInterrupted",
    "EdgeAgent",
    "SelfTestFailed",
    "SyncOutcome",
    "SyncStatus",
    "VerificationError",
    "main",
    "utc_now",
]

logger = logging.getLogger(__name__)

SELFTEST_FILE = "selftest.npz"
"""The package file holding ``images`` (uint8 N×H×W×3) and ``probabilities`` (float32 N×C from torch)."""

FP32_SELFTEST_TOLERANCE = 1e-3
"""Largest accepted |p_device - p_torch| for FP32 formats; the platform's parity gate is tighter
(1e-4), so this only catches a runtime that does not run the validated model (wrong file, FP16/bf16
execution, a different runtime build), never honest rounding."""

INT8_MIN_AGREEMENT = 0.9
"""Share of self-test images on which an INT8 model must predict torch's class."""

ACTIVE_FILE = "active.json"
VERDICTS: dict[str, str] = {
    "false_reject": "false_rejects",
    "confirmed_defect": "confirmed_defects",
    "escape": "escapes_found",
}
"""Operator verdicts accepted in feedback.csv, and the window counter each one increments."""

SyncStatus = Literal["up_to_date", "activated", "no_deployment", "refused", "server_unreachable"]

_PARTIAL_SUFFIX = ".partial"
_PART_SUFFIX = ".part"
_PACKAGE_DIR = "package"
_SIGNED_MANIFEST = "signed_manifest.json"
_STATE_FILE = "agent_state.json"
_DECISIONS_FILE = "decisions.jsonl"
_FEEDBACK_FILE = "feedback.csv"
_FEEDBACK_REJECTED_FILE = "feedback_rejected.csv"
_FEEDBACK_PROBLEMS_FILE = "feedback_problems.log"
FEEDBACK_OUTBOX_DIR = "feedback_outbox"
"""Folder under ``state_dir`` holding labelled feedback images and their sidecars until the server has them."""
_OUTBOX_DIR = "outbox"
_PROCESSED_DIR = "processed"
_REJECTED_INPUT_DIR = "rejected_input"
_REJECTED_INPUT_LOG = "reasons.log"
_IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload")
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
_ACCEPTED_MODES = frozenset({"L", "LA", "P", "RGB", "RGBA"})  # what the platform trains on
_FREE_SPACE_HEADROOM = 16 * 1024 * 1024  # left for decisions, windows and logs after a download
_HASH_CHUNK = 1 << 20
_TICK_SECONDS = 1.0  # how often run() looks for new images and due windows
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def utc_now() -> datetime:
    """The current time, timezone-aware UTC: the agent's default clock."""
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------------------
# errors


class AgentError(Exception):
    """The agent cannot do what was asked; the message says what is kept running and what to do."""


class DownloadError(AgentError):
    """A package file could not be fetched or stored (disk full, file missing on the server)."""


class DownloadInterrupted(DownloadError):
    """The transfer broke off (server down, restarted, cut connection); what arrived is kept and the
    next sync resumes from it with a ``Range`` request."""


class VerificationError(AgentError):
    """A manifest or package file fails the device's checks (sha256, size, unsafe path, targeting)."""


class SelfTestFailed(AgentError):
    """The downloaded model cannot be loaded, or does not reproduce the platform's self-test numbers."""


# --------------------------------------------------------------------------------------------------
# public value types


class AgentConfig(BaseModel):
    """Everything one device needs; usually built by :func:`main` from the command line."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device_id: str = Field(description="this device's id, as registered on the server; used in window ids")
    server_url: str = Field(description="base URL of the sync server, e.g. http://10.0.0.5:8080")
    token: SecretStr = Field(description="the device's bearer token (never logged)")
    camera_dir: Path = Field(description="folder the line camera writes images into")
    state_dir: Path = Field(description="the agent's own folder: models, decisions, outbox")
    public_key_path: Path = Field(description="the platform's ed25519 public key (PEM) that signs manifests")
    poll_seconds: float = Field(10.0, gt=0, le=86_400, description="seconds between manifest polls and uploads")
    window_seconds: float = Field(60.0, gt=0, le=86_400, description="a metric window closes after this long")
    window_max_images: int = Field(200, ge=1, description="... or once it has inspected this many images")
    num_threads: int = Field(2, ge=1, le=256, description="CPU threads for inference")

    @field_validator("device_id")
    @classmethod
    def _safe_device_id(cls, value: str) -> str:
        if not _SAFE_NAME.fullmatch(value):
            raise ValueError(
                f"device_id {value!r} must be 1-128 characters of letters, digits, '.', '_', '+' or '-' "
                "starting with a letter or digit (it becomes part of file names and window ids)"
            )
        return value

    @field_validator("server_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"server_url {value!r} must start with http:// or https://")
        return value.rstrip("/")


@dataclass(frozen=True)
class SyncOutcome:
    """What one sync did. ``model_version`` is the version this outcome is about: the one activated,
    already running, or refused; for ``no_deployment`` and ``server_unreachable`` the one still
    running (None when none is)."""

    status: SyncStatus
    model_version: str | None
    detail: str


@dataclass(frozen=True)
class Decision:
    """The agent's decision on one image, as appended to ``decisions.jsonl``.

    ``verdict`` is ``reject``/``pass`` for models with a good class (by threshold on the defect
    score, or, without a threshold, by whether the top class is the good one) and ``recorded`` for
    models without a good class, where only the class is recorded.
    """

    image: str
    model_version: str
    window_id: str
    predicted_class: str
    defect_score: float
    verdict: Literal["pass", "reject", "recorded"]
    probabilities: tuple[float, ...]
    brightness: float
    decided_at: datetime

    @property
    def rejected(self) -> bool:
        return self.verdict == "reject"

    def to_json(self) -> str:
        return json.dumps(
            {
                "image": self.image,
                "model_version": self.model_version,
                "window_id": self.window_id,
                "predicted_class": self.predicted_class,
                "defect_score": self.defect_score,
                "verdict": self.verdict,
                "probabilities": list(self.probabilities),
                "brightness": self.brightness,
                "decided_at": self.decided_at.isoformat(),
            },
            separators=(",", ":"),
        )


# --------------------------------------------------------------------------------------------------
# internal state records


class _ActiveRecord(BaseModel):
    """``active.json``: the single source of truth for which verified version runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    active: str
    previous: str | None = None
    rolled_back: tuple[str, ...] = Field((), description="versions rolled back from; their manifests are refused")
    updated_at: datetime


class _OpenWindow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window_id: str
    model_version: str
    line: str
    started_at: datetime
    inspected: int = 0
    rejected: int = 0
    confirmed_defects: int = 0
    false_rejects: int = 0
    escapes_found: int = 0
    score_histogram: list[int] = Field(default_factory=lambda: [0] * SCORE_BINS)
    input_brightness_histogram: list[int] = Field(default_factory=lambda: [0] * INPUT_BINS)


class _AgentState(BaseModel):
    """``agent_state.json``: written atomically as one file, so window counts and the feedback cursor
    never disagree after a crash (a crash loses at most the pass in progress)."""

    model_config = ConfigDict(extra="forbid")

    next_seq: int = 0
    window: _OpenWindow | None = None
    feedback_offset: int = 0
    feedback_line: int = 0
    feedback_seen: list[tuple[str, str]] = Field(default_factory=list)
    # (image, verdict) pairs whose image was queued with a label: a later line that adds a label to an
    # already counted pair queues the image without counting the verdict twice.
    feedback_labelled: list[tuple[str, str]] = Field(default_factory=list)


@dataclass(frozen=True)
class _Installed:
    version: str
    signed: SignedManifest
    manifest: DeploymentManifest
    predictor: Predictor
    folder: Path


class _UnusableImage(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


# --------------------------------------------------------------------------------------------------
# the agent


class EdgeAgent:
    """One device's agent. Construct it, then call :meth:`run` (or the single steps, as tests do).

    The constructor reads ``active.json`` and re-verifies the active version (signature, file hashes,
    self-test) before running it; a version that no longer verifies is not run (logged as an error)
    and the next sync installs the deployment afresh. ``*.partial`` folders are never run.
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        client: httpx.Client | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.RLock()
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=httpx.Timeout(10.0, read=60.0))
        self._auth = {"Authorization": f"Bearer {config.token.get_secret_value()}"}
        self._state_dir = config.state_dir
        self._models_dir = config.state_dir / "models"
        self._outbox = config.state_dir / _OUTBOX_DIR
        self._feedback_outbox = config.state_dir / FEEDBACK_OUTBOX_DIR
        # signed-manifest digest -> (version, why), for refusals that would repeat identically
        self._refused: dict[str, tuple[str | None, str]] = {}
        self._waiting_logged = False
        self._server_down = False  # whether the last sync found the server unreachable (log once)
        self._last_refusal: str | None = None  # the last refusal logged at ERROR (log repeats at DEBUG)
        if not config.camera_dir.is_dir():
            raise AgentError(
                f"camera folder {config.camera_dir} does not exist; create it or point --camera-dir at "
                "the folder the line camera writes into"
            )
        try:
            self._public_key = load_public_key(config.public_key_path)
        except FileNotFoundError as exc:
            raise AgentError(
                f"public key {config.public_key_path} not found; copy the platform's manifest-signing "
                "public key (PEM) onto the device"
            ) from exc
        except ContractError as exc:
            raise AgentError(str(exc)) from exc
        for folder in (self._models_dir, self._outbox, self._feedback_outbox):
            folder.mkdir(parents=True, exist_ok=True)
        self._state = self._read_state()
        self._record = self._read_active_record()
        self._active: _Installed | None = None
        if self._record is not None:
            try:
                self._active = self._load_installed(self._record.active)
            except (VerificationError, SelfTestFailed) as exc:
                logger.error(
                    "active version %s in %s does not verify any more (%s); running no model until the "
                    "next sync installs the deployment again",
                    self._record.active,
                    self._state_dir / ACTIVE_FILE,
                    exc,
                )
            else:
                logger.info("running model %s (from %s)", self._active.version, self._state_dir / ACTIVE_FILE)
        window = self._state.window
        if window is not None and (self._active is None or window.model_version != self._active.version):
            # Never let a window mix versions, even across a crash between activation steps.
            self._close_window()

    # ---------------------------------------------------------------------------------- lifecycle

    @property
    def active_version(self) -> str | None:
        """The model version this device runs now (None before the first activation)."""
        return None if self._active is None else self._active.version

    def close(self) -> None:
        """Close the HTTP client if the agent created it."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def run(self, stop: threading.Event) -> None:
        """Sync every ``poll_seconds``, inspect, count feedback, close windows and upload until ``stop``.

        Server downtime is expected, not fatal: syncs report ``server_unreachable`` and windows wait in
        the outbox. An :class:`AgentError` or ``OSError`` from one step is logged with its message and
        the loop goes on (the step is retried on the next tick); anything else is a bug and propagates.
        """
        next_sync = time.monotonic()
        logger.info("edge agent %s started (server %s)", self.config.device_id, self.config.server_url)
        while not stop.is_set():
            now = time.monotonic()
            due = now >= next_sync
            self._run_iteration(sync=due)
            if due:
                next_sync = now + self.config.poll_seconds
            stop.wait(min(self.config.poll_seconds, _TICK_SECONDS))
        logger.info("edge agent %s stopped", self.config.device_id)

    def _run_iteration(self, *, sync: bool) -> bool:
        """One pass of the loop; returns False when a step failed (and was logged)."""
        ok = True

        def step(name: str, action: Callable[[], Any]) -> Any:
            nonlocal ok
            try:
                return action()
            except (AgentError, OSError) as exc:
                ok = False
                logger.error("%s failed: %s", name, exc, exc_info=not isinstance(exc, AgentError))
                return None

        if sync:
            step("sync", self.sync_once)
        outbox_before = self._outbox_count()
        feedback_before = self._feedback_outbox_count()
        step("inspection", self.inspect_pending)
        step("feedback", self.apply_feedback)
        step("window", self.close_window_if_due)
        closed_any = self._outbox_count() > outbox_before
        if sync or closed_any:
            step("upload", self.flush_outbox)
        if sync or self._feedback_outbox_count() > feedback_before:
            step("feedback upload", self.flush_feedback)
        return ok

    # ---------------------------------------------------------------------------------- sync

    def sync_once(self) -> SyncOutcome:
        """Ask the server what to run and, if it is new, verify and activate it.

        Returns an outcome for everything the server or the deployment decides; raises
        :class:`DownloadError` when the device cannot store or fetch a package it accepted (full
        disk: the partial download is removed; a package file missing on the server) and
        :class:`AgentError` when the final switch cannot be written. In every case but ``activated``
        the model that was running keeps running.
        """
        with self._lock:
            running = self.active_version
            url = f"{self.config.server_url}/v1/manifest"
            try:
                response = self._client.get(url, headers=self._auth)
            except httpx.TransportError as exc:
                return self._unreachable(f"GET {url} failed ({type(exc).__name__}: {exc})")
            if self._server_down and response.status_code < 500:
                logger.info("sync server %s is reachable again", self.config.server_url)
                self._server_down = False
            if response.status_code == 204:
                logger.debug("server has no deployment for %s", self.config.device_id)
                return SyncOutcome("no_deployment", running, "the server has nothing deployed for this device")
            if response.status_code in (401, 403):
                return self._refuse(
                    None,
                    f"GET {url} answered {response.status_code}: the server does not accept this device's "
                    f"token (device {self.config.device_id}); check --token / MFG_EDGE_TOKEN",
                )
            if response.status_code >= 500:
                return self._unreachable(f"GET {url} answered {response.status_code}")
            if response.status_code != 200:
                return self._refuse(
                    None, f"GET {url} answered {response.status_code} {response.reason_phrase}, expected 200 or 204"
                )
            try:
                signed = SignedManifest.model_validate_json(response.content)
            except ValidationError as exc:
                return self._refuse(None, f"GET {url} did not return a signed manifest: {exc}")
            key = hashlib.sha256(f"{signed.manifest_json}\n{signed.signature}".encode()).hexdigest()
            if key in self._refused:
                refused_version, why = self._refused[key]
                logger.debug("manifest %s was refused before: %s", key[:12], why)
                return SyncOutcome("refused", refused_version, why)
            try:
                manifest = verify_manifest(signed, self._public_key)
                self._check_manifest(manifest)
            except (ValueError, VerificationError) as exc:  # ContractError is a ValueError
                return self._refuse(None, f"manifest refused: {exc}", memo=key)
            version = manifest.model_version
            if self._active is not None and version == running:
                return self._same_version(signed, manifest)
            if self._record is not None and version in self._record.rolled_back:
                return self._refuse(
                    version,
                    f"model {version} was rolled back on this device; keeping {running} until the "
                    "platform deploys a different version",
                )
            try:
                self._activate(signed, manifest)
            except DownloadInterrupted as exc:
                return self._unreachable(str(exc))
            except VerificationError as exc:
                return self._refuse(version, str(exc))
            except SelfTestFailed as exc:
                return self._refuse(version, str(exc), memo=key)
            detail = f"activated {version} ({manifest.model_format}, deployment {manifest.deployment_id})"
            logger.info("%s; previous %s kept for rollback", detail, running)
            return SyncOutcome("activated", version, detail)

    def _unreachable(self, why: str) -> SyncOutcome:
        running = self.active_version
        detail = f"{why}; keeping {running or 'no model'} and retrying in {self.config.poll_seconds:g} s"
        # A server down for hours would otherwise log the same warning every poll.
        logger.log(logging.DEBUG if self._server_down else logging.WARNING, "sync: %s", detail)
        self._server_down = True
        return SyncOutcome("server_unreachable", running, detail)

    def _refuse(self, version: str | None, detail: str, *, memo: str | None = None) -> SyncOutcome:
        running = self.active_version
        detail = f"{detail} (still running {running or 'no model'})"
        repeated = detail == self._last_refusal
        logger.log(logging.DEBUG if repeated else logging.ERROR, "sync refused: %s", detail)
        self._last_refusal = detail
        if memo is not None:
            self._refused[memo] = (version, detail)
        return SyncOutcome("refused", version, detail)

    def _same_version(self, signed: SignedManifest, manifest: DeploymentManifest) -> SyncOutcome:
        """The running version was offered again: adopt a changed manifest if the files are the same."""
        active = self._active
        if active is None:  # callers check; kept for the type checker
            raise AgentError("internal: _same_version without an active model")
        if signed.manifest_json == active.signed.manifest_json:
            return SyncOutcome("up_to_date", active.version, f"running {active.version}")
        if manifest.files != active.manifest.files or manifest.model_path != active.manifest.model_path:
            return self._refuse(
                active.version,
                f"the server's manifest for {active.version} lists other files than the installed one; "
                "a model version must never change; publish the new files under a new version",
            )
        _write_atomic(active.folder / _SIGNED_MANIFEST, signed.model_dump_json().encode())
        self._active = _Installed(active.version, signed, manifest, active.predictor, active.folder)
        detail = (
            f"running {active.version}; adopted deployment {manifest.deployment_id} "
            f"(threshold {manifest.threshold}, ring {manifest.ring.value})"
        )
        logger.info(detail)
        return SyncOutcome("up_to_date", active.version, detail)

    def _check_manifest(self, manifest: DeploymentManifest) -> None:
        """Checks the signature cannot make: is the package safe to store and usable by this agent."""
        version = manifest.model_version
        if not _SAFE_NAME.fullmatch(version) or version.endswith(_PARTIAL_SUFFIX):
            raise VerificationError(
                f"model version {version!r} is not a safe folder name (letters, digits, '.', '_', '+', '-', "
                f"not ending in {_PARTIAL_SUFFIX}); rename the version on the platform"
            )
        # Which devices get a deployment (listed in a canary's ``devices``, or flagged canary on the
        # server) is the server's decision; the signature already proves the platform made it.
        if problem := package_layout_problem(manifest):
            raise VerificationError(f"model {version}: {problem}")
        paths = [item.path for item in manifest.files]
        if partial := [path for path in paths if path.endswith(_PART_SUFFIX)]:
            raise VerificationError(
                f"model {version}: package path {partial[0]!r} is not a safe relative path here: names ending in "
                f"{_PART_SUFFIX} are the agent's partial downloads; rename the file on the platform"
            )
        if SELFTEST_FILE not in paths:
            raise VerificationError(
                f"model {version}: the package has no {SELFTEST_FILE}, so the device cannot prove it runs "
                "the validated model; re-register the package with its self-test"
            )
        if manifest.good_class is not None and manifest.good_class not in manifest.classes:
            raise VerificationError(
                f"model {version}: good_class {manifest.good_class!r} is not one of the classes "
                f"{list(manifest.classes)}"
            )
        if manifest.threshold is not None:
            if manifest.good_class is None:
                raise VerificationError(
                    f"model {version}: a threshold ({manifest.threshold}) needs a good_class to score against"
                )
            if not 0.0 < manifest.threshold <= 1.0:
                raise VerificationError(
                    f"model {version}: threshold must be in (0, 1] (reject when 1 - P(good) >= threshold), "
                    f"got {manifest.threshold}"
                )

    # ---------------------------------------------------------------------------------- activation

    def _activate(self, signed: SignedManifest, manifest: DeploymentManifest) -> None:
        version = manifest.model_version
        final = self._models_dir / version
        staging: Path | None = None
        if final.is_dir():  # e.g. the previous version, deployed again by the platform
            try:
                self._verify_files(final / _PACKAGE_DIR, manifest)
                staging = final
                logger.info("model %s is already on disk and verifies; reusing it", version)
            except VerificationError as exc:
                logger.warning("kept copy of %s does not match its manifest (%s); downloading it again", version, exc)
                shutil.rmtree(final)
        if staging is None:
            staging = self._download(manifest)
        try:
            _write_atomic(staging / _SIGNED_MANIFEST, signed.model_dump_json().encode())
            predictor = self._load_and_selftest(staging / _PACKAGE_DIR, manifest)
        except SelfTestFailed:
            if staging != final:
                _remove_tree(staging)
            raise
        except OSError as exc:
            raise DownloadError(
                f"cannot store the manifest of model {version} in {staging} ({exc}); "
                f"{self.active_version or 'no model'} keeps running; check the state folder's disk"
            ) from exc
        # Everything verified: switch. active.json is the truth; the rename before it only moves a
        # verified folder to its final name, so a crash (or error) between the two leaves the old
        # model active and the next sync reuses the verified folder.
        previous = self.active_version
        rolled_back = tuple(v for v in (self._record.rolled_back if self._record else ()) if v != version)
        record = _ActiveRecord(active=version, previous=previous, rolled_back=rolled_back, updated_at=self._now())
        try:
            self._close_window()
            if staging != final:
                os.rename(staging, final)
                _fsync_dir(self._models_dir)
            _write_atomic(self._state_dir / ACTIVE_FILE, record.model_dump_json(indent=2).encode())
        except OSError as exc:
            raise AgentError(
                f"model {version} verified but the switch to it failed ({exc}); {previous or 'no model'} keeps "
                f"running and the next sync retries; check the disk of {self._state_dir}"
            ) from exc
        self._record = record
        self._active = _Installed(version, signed, manifest, predictor, final)
        self._prune_models()

    def _download(self, manifest: DeploymentManifest) -> Path:
        """Fetch every file into ``models/<version>.partial/package``; resumable, verified per file."""
        version = manifest.model_version
        partial = self._models_dir / f"{version}{_PARTIAL_SUFFIX}"
        package = partial / _PACKAGE_DIR
        try:
            package.mkdir(parents=True, exist_ok=True)
            self._check_free_space(manifest, package)
            for item in manifest.files:
                self._download_file(version, item, package)
        except OSError as exc:
            _remove_tree(partial)
            total = sum(item.n_bytes for item in manifest.files)
            if exc.errno == errno.ENOSPC:
                raise DownloadError(
                    f"no space left on the device while downloading model {version} ({total} bytes) into "
                    f"{partial} ({exc}); the partial download was removed and {self.active_version or 'no model'} "
                    f"keeps running; free space under {self._state_dir} and the next sync retries"
                ) from exc
            raise DownloadError(
                f"cannot store model {version} under {partial} ({exc}); the partial download was removed and "
                f"{self.active_version or 'no model'} keeps running; check the state folder's disk and permissions"
            ) from exc
        return partial

    def _check_free_space(self, manifest: DeploymentManifest, package: Path) -> None:
        needed = 0
        for item in manifest.files:
            target = package.joinpath(*item.path.split("/"))
            part = target.with_name(target.name + _PART_SUFFIX)
            have = target.stat().st_size if target.is_file() else part.stat().st_size if part.is_file() else 0
            needed += max(0, item.n_bytes - have)
        free = shutil.disk_usage(package).free
        if free < needed + _FREE_SPACE_HEADROOM:
            raise OSError(
                errno.ENOSPC,
                f"{free} bytes free, the download needs {needed} more plus {_FREE_SPACE_HEADROOM} bytes headroom",
            )

    def _download_file(self, version: str, item: ModelFile, package: Path) -> None:
        target = package.joinpath(*item.path.split("/"))
        if target.is_file():
            if target.stat().st_size == item.n_bytes and _sha256_file(target) == item.sha256:
                return  # fetched by an earlier, interrupted sync
            target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + _PART_SUFFIX)
        have = part.stat().st_size if part.is_file() else 0
        if have > item.n_bytes:
            part.unlink()
            have = 0
        if have < item.n_bytes or not part.exists():
            have = self._fetch(version, item, part, have)
        if have < item.n_bytes:
            raise DownloadInterrupted(
                f"model {version}: {item.path} ended after {have} of {item.n_bytes} bytes; the bytes are kept "
                "and the next sync resumes the download"
            )
        digest = _sha256_file(part)
        if digest != item.sha256:
            part.unlink()
            raise VerificationError(
                f"model {version}: {item.path} has sha256 {digest}, the signed manifest says {item.sha256}; "
                "the file was altered in transit or on the server; it was deleted and the current model keeps "
                "running; check the server's package store"
            )
        os.replace(part, target)

    def _fetch(self, version: str, item: ModelFile, part: Path, have: int) -> int:
        """GET one file into ``part`` from byte ``have`` on; returns the bytes on disk afterwards."""
        url = f"{self.config.server_url}/v1/packages/{quote(version, safe='')}/{quote(item.path, safe='/')}"
        headers = dict(self._auth)
        if have:
            headers["Range"] = f"bytes={have}-"
        too_long = False
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                status = response.status_code
                if status >= 500:
                    raise DownloadInterrupted(f"model {version}: GET {url} answered {status}; resuming next sync")
                if status == 416:
                    part.unlink(missing_ok=True)
                    raise VerificationError(
                        f"model {version}: the server has no bytes of {item.path} past {have}, but the manifest "
                        f"says it has {item.n_bytes}; the server serves another file; the partial file was deleted"
                    )
                if status == 206 and have:
                    start = _content_range_start(response.headers.get("content-range"))
                    if start is not None and start != have:
                        part.unlink(missing_ok=True)
                        raise DownloadInterrupted(
                            f"model {version}: asked for {item.path} from byte {have}, the server sent from "
                            f"{start}; restarting the file at the next sync"
                        )
                    mode = "ab"
                elif status == 200:
                    mode, have = "wb", 0
                else:
                    raise DownloadError(
                        f"model {version}: GET {url} answered {status} {response.reason_phrase}; the signed "
                        "manifest lists this file, so the server's package store is incomplete; re-publish "
                        "the package"
                    )
                etag = response.headers.get("etag", "").removeprefix("W/").strip('"').lower()
                if _SHA256.fullmatch(etag) and etag != item.sha256:
                    part.unlink(missing_ok=True)
                    raise VerificationError(
                        f"model {version}: the server's ETag for {item.path} is {etag}, the signed manifest "
                        f"says {item.sha256}; the server serves another file; the current model keeps running"
                    )
                written = have
                with part.open(mode) as handle:
                    for chunk in response.iter_bytes():
                        if written + len(chunk) > item.n_bytes:
                            too_long = True
                            break
                        _write_chunk(handle, chunk)
                        written += len(chunk)
                    handle.flush()
                    os.fsync(handle.fileno())
        except httpx.TransportError as exc:
            got = part.stat().st_size if part.is_file() else 0
            raise DownloadInterrupted(
                f"model {version}: download of {item.path} interrupted at {got} of {item.n_bytes} bytes "
                f"({type(exc).__name__}: {exc}); the bytes are kept and the next sync resumes from them"
            ) from exc
        if too_long:
            part.unlink()
            raise VerificationError(
                f"model {version}: the server sent more than the {item.n_bytes} bytes the manifest lists for "
                f"{item.path}; the file was deleted and the current model keeps running"
            )
        return written

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
            digest = _sha256_file(path)
            if digest != item.sha256:
                raise VerificationError(
                    f"model {manifest.model_version}: {path} has sha256 {digest}, the manifest says {item.sha256}"
                )

    def _load_and_selftest(self, package: Path, manifest: DeploymentManifest) -> Predictor:
        version = manifest.model_version
        try:
            predictor = load_predictor(
                package.joinpath(*manifest.model_path.split("/")),
                manifest.model_format,
                num_threads=self.config.num_threads,
            )
        except InferenceError as exc:
            raise SelfTestFailed(f"model {version} cannot be loaded: {exc}") from exc
        _self_test(predictor, package / SELFTEST_FILE, manifest)
        return predictor

    def _load_installed(self, version: str) -> _Installed:
        """Re-verify an installed version from disk (signature, files, self-test) and load it."""
        folder = self._models_dir / version
        try:
            signed = SignedManifest.model_validate_json((folder / _SIGNED_MANIFEST).read_bytes())
        except (OSError, ValidationError) as exc:
            raise VerificationError(f"model {version}: cannot read {folder / _SIGNED_MANIFEST} ({exc})") from exc
        try:
            manifest = verify_manifest(signed, self._public_key)
        except ContractError as exc:
            raise VerificationError(f"model {version}: stored manifest does not verify: {exc}") from exc
        if manifest.model_version != version:
            raise VerificationError(
                f"{folder / _SIGNED_MANIFEST} is the manifest of {manifest.model_version}, not {version}"
            )
        self._check_manifest(manifest)
        self._verify_files(folder / _PACKAGE_DIR, manifest)
        predictor = self._load_and_selftest(folder / _PACKAGE_DIR, manifest)
        return _Installed(version, signed, manifest, predictor, folder)

    def _prune_models(self) -> None:
        """Keep the active and previous versions; delete older ones and abandoned downloads."""
        keep = {self._record.active, self._record.previous} if self._record else set()
        for entry in self._models_dir.iterdir():
            if entry.is_dir() and entry.name not in keep:
                _remove_tree(entry)
                logger.info("deleted old model folder %s", entry)

    def rollback(self) -> str:
        """Re-activate the previous version (re-verified from disk) and return it.

        The version rolled back from is kept as the new "previous" and its manifest is refused by later
        syncs until the platform deploys a different version, so a rollback is not undone by the next
        poll.
        """
        with self._lock:
            record = self._record
            if record is None or record.previous is None:
                raise AgentError(
                    f"no previous model version is kept in {self._models_dir} (active: {self.active_version}); "
                    "nothing to roll back to"
                )
            target, current = record.previous, record.active
            installed = self._load_installed(target)
            self._close_window()
            rolled_back = tuple(sorted((set(record.rolled_back) - {target}) | {current}))
            new_record = _ActiveRecord(active=target, previous=current, rolled_back=rolled_back, updated_at=self._now())
            _write_atomic(self._state_dir / ACTIVE_FILE, new_record.model_dump_json(indent=2).encode())
            self._record = new_record
            self._active = installed
            logger.warning(
                "rolled back from %s to %s; manifests for %s are refused until another version is deployed",
                current,
                target,
                current,
            )
            return target

    # ---------------------------------------------------------------------------------- inspection

    def inspect_pending(self) -> list[Decision]:
        """Decide every new image in the camera folder; returns the decisions in file-name order.

        Files that cannot be decoded (or are not images) go to ``rejected_input/`` with a reason line
        in its ``reasons.log``; they never stop the loop. Without an active model nothing is touched:
        the images wait. A window that reaches ``window_max_images`` is closed on the spot, so no
        window ever holds more.
        """
        with self._lock:
            active = self._active
            pending = self._pending_images()
            if active is None:
                if pending and not self._waiting_logged:
                    logger.warning("%d images wait in %s: no model is active yet", len(pending), self.config.camera_dir)
                    self._waiting_logged = True
                return []
            self._waiting_logged = False
            decisions: list[Decision] = []
            try:
                for path in pending:
                    try:
                        pixels, brightness = _decode_image(path, active.manifest.input)
                    except _UnusableImage as exc:
                        self._reject_input(path, exc.reason, exc.detail)
                        continue
                    except FileNotFoundError:
                        logger.warning("%s disappeared before it was inspected (moved by another process?)", path)
                        continue
                    try:
                        probabilities = active.predictor.predict(pixels[None])[0]
                    except InferenceError as exc:
                        raise AgentError(
                            f"model {active.version} failed on {path} ({exc}); the image stays in the camera "
                            "folder; roll back or redeploy if this repeats"
                        ) from exc
                    window = self._ensure_window(active)
                    decision = _decide(
                        path.name, probabilities, brightness, active.manifest, window.window_id, self._now()
                    )
                    _count(window, decision)
                    with (self._state_dir / _DECISIONS_FILE).open("a", encoding="utf-8") as log:
                        log.write(decision.to_json() + "\n")
                    _move_unique(path, self.config.camera_dir / _PROCESSED_DIR)
                    decisions.append(decision)
                    if window.inspected >= self.config.window_max_images:
                        self._close_window()
            finally:
                self._save_state()
            return decisions

    def _pending_images(self) -> list[Path]:
        return sorted(
            entry
            for entry in self.config.camera_dir.iterdir()
            if entry.is_file() and not entry.name.startswith(".") and not entry.name.endswith(_IGNORED_SUFFIXES)
        )

    def _reject_input(self, path: Path, reason: str, detail: str) -> None:
        folder = self.config.camera_dir / _REJECTED_INPUT_DIR
        stored = _move_unique(path, folder)
        with (folder / _REJECTED_INPUT_LOG).open("a", encoding="utf-8") as log:
            log.write(f"{self._now().isoformat()}\t{stored.name}\t{reason}\t{detail}\n")
        logger.warning("%s: %s (%s); moved to %s", path.name, reason, detail, stored)

    # ---------------------------------------------------------------------------------- feedback

    def apply_feedback(self) -> int:
        """Count new operator lines of ``feedback.csv`` into the open window; returns how many counted.

        Lines are ``image,verdict[,label]`` with verdict one of :data:`VERDICTS`; an optional header
        and blank lines are skipped. Each (image, verdict) pair counts once, however often it is
        appended. A line that cannot be understood (or whose label is not a class of the active model)
        is logged as an error naming it, copied to ``feedback_rejected.csv`` for the operator to fix
        and append again, and its reason appended to ``feedback_problems.log``. A last line without
        its newline is left for the next call (the operator tool may still be writing it). Nothing is
        read while no model is active, because counts belong to a model version's window.

        Each counted line is also labelled (see :meth:`_feedback_label`) and its image, taken from
        ``camera_dir/processed/``, is queued in ``feedback_outbox/`` for :meth:`flush_feedback`. An
        image that cannot be labelled or found is logged and not queued; its verdict still counts,
        because the window's counts do not depend on the image. A later line with a label for an
        already counted pair queues the image without counting it again.
        """
        with self._lock:
            path = self._state_dir / _FEEDBACK_FILE
            active = self._active
            if active is None or not path.is_file():
                return 0
            state = self._state
            size = path.stat().st_size
            if size < state.feedback_offset:
                logger.warning("%s shrank (was it rotated?); reading it again from the start", path)
                state.feedback_offset, state.feedback_line = 0, 0
            with path.open("rb") as handle:
                handle.seek(state.feedback_offset)
                data = handle.read()
            complete = data[: data.rfind(b"\n") + 1]
            if not complete:
                return 0
            seen = {tuple(pair) for pair in state.feedback_seen}
            labelled = {tuple(pair) for pair in state.feedback_labelled}
            decisions: dict[str, dict[str, Any]] | None = None  # read once, only when needed
            counted = 0
            try:
                for raw in complete.splitlines(keepends=True):
                    state.feedback_line += 1
                    problem, item = _parse_feedback_line(raw)
                    if problem is None and item is not None:
                        problem = _check_label(item, active.manifest)
                    if problem is not None:
                        self._reject_feedback_line(path, state.feedback_line, raw, problem)
                        continue
                    if item is None:
                        continue
                    image, verdict, label = item
                    pair = (image, verdict)
                    if pair in seen and (label is None or pair in labelled):
                        continue
                    if pair not in seen:
                        window = self._ensure_window(active)
                        setattr(window, VERDICTS[verdict], getattr(window, VERDICTS[verdict]) + 1)
                        seen.add(pair)
                        state.feedback_seen.append(pair)
                        counted += 1
                    if pair in labelled:
                        continue
                    if decisions is None:
                        decisions = self._read_decisions()
                    if self._queue_feedback(active, image, verdict, label, decisions.get(image), state.feedback_line):
                        labelled.add(pair)
                        state.feedback_labelled.append(pair)
            finally:
                state.feedback_offset += len(complete)
                self._save_state()
            return counted

    def _reject_feedback_line(self, path: Path, line_no: int, raw: bytes, problem: str) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        logger.error(
            "%s line %d (%r): %s; copied to %s, fix it and append it again",
            path,
            line_no,
            text,
            problem,
            _FEEDBACK_REJECTED_FILE,
        )
        with (self._state_dir / _FEEDBACK_REJECTED_FILE).open("ab") as rejected:
            rejected.write(raw if raw.endswith(b"\n") else raw + b"\n")
        self._note_feedback_problem(line_no, text, problem)

    def _note_feedback_problem(self, line_no: int, text: str, problem: str) -> None:
        with (self._state_dir / _FEEDBACK_PROBLEMS_FILE).open("a", encoding="utf-8") as log:
            log.write(f"{self._now().isoformat()}\tline {line_no}\t{text}\t{problem}\n")

    def _read_decisions(self) -> dict[str, dict[str, Any]]:
        """The last decision per image name in ``decisions.jsonl`` (a torn last line is skipped)."""
        found: dict[str, dict[str, Any]] = {}
        path = self._state_dir / _DECISIONS_FILE
        if not path.is_file():
            return found
        with path.open("r", encoding="utf-8") as handle:
            for number, text in enumerate(handle, start=1):
                try:
                    record = json.loads(text)
                    found[record["image"]] = record
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    logger.warning("%s line %d is not a decision (%s); skipped", path, number, exc)
        return found

    def _feedback_label(
        self, manifest: DeploymentManifest, image: str, verdict: str, label: str | None, decision: dict[str, Any] | None
    ) -> tuple[str | None, str]:
        """(label, "") for the image, or (None, why it cannot be labelled)."""
        if label is not None:
            return label, ""
        if verdict == "false_reject":
            if manifest.good_class is None:
                return None, "the model has no good class; append 'image,false_reject,<class>' to label it"
            return manifest.good_class, ""
        if verdict == "escape":
            return None, (
                f"an escape needs the defect class; append '{image},escape,<class>' with one of "
                f"{[c for c in manifest.classes if c != manifest.good_class]}"
            )
        if decision is None:
            return None, (
                f"no decision for {image} in {_DECISIONS_FILE}, so its predicted class is unknown; append "
                f"'{image},confirmed_defect,<class>' to label it"
            )
        predicted = str(decision.get("predicted_class"))
        if predicted not in manifest.classes or predicted == manifest.good_class:
            return None, (
                f"the model predicted {predicted!r}, which is not a defect class of the active model; append "
                f"'{image},confirmed_defect,<class>' to label it"
            )
        return predicted, ""

    def _queue_feedback(
        self,
        active: _Installed,
        image: str,
        verdict: str,
        label: str | None,
        decision: dict[str, Any] | None,
        line_no: int,
    ) -> bool:
        """Copy a labelled image and its sidecar into ``feedback_outbox/``; False (logged) when it
        cannot be labelled or found. The sidecar is written last: it marks the entry complete."""
        resolved, why = self._feedback_label(active.manifest, image, verdict, label, decision)
        text = f"{image},{verdict}" + ("" if label is None else f",{label}")
        if resolved is None:
            logger.error("feedback %r (line %d) counted but not sent for training: %s", text, line_no, why)
            self._note_feedback_problem(line_no, text, why)
            return False
        source = self.config.camera_dir / _PROCESSED_DIR / image
        try:
            data = source.read_bytes()
        except FileNotFoundError:
            why = f"image {source} not found, so it cannot be sent for training (was it cleaned up or renamed?)"
            logger.error("feedback %r (line %d) counted but not sent: %s", text, line_no, why)
            self._note_feedback_problem(line_no, text, why)
            return False
        sha256 = hashlib.sha256(data).hexdigest()
        suffix = Path(image).suffix.lower()
        sidecar = {
            "device_id": self.config.device_id,
            "line": active.manifest.line,
            "model_version": str(decision["model_version"]) if decision and "model_version" in decision else active.version,
            "image": image,
            "sha256": sha256,
            "label": resolved,
            "verdict": verdict,
            "labelled_at": self._now().isoformat(),
        }
        _write_atomic(self._feedback_outbox / f"{sha256}{suffix}", data)
        _write_atomic(self._feedback_outbox / f"{sha256}.json", json.dumps(sidecar, sort_keys=True).encode())
        logger.info("queued feedback image %s as %r (%s) for upload", image, resolved, verdict)
        return True

    # ---------------------------------------------------------------------------------- windows

    def close_window_if_due(self) -> MetricWindow | None:
        """Close the open window once ``window_seconds`` passed or ``window_max_images`` were inspected.

        The closed window is written to ``outbox/<window_id>.json`` (atomically) before anything is
        uploaded. Windows open at their first image or feedback line, so no empty window is sent.
        """
        with self._lock:
            window = self._state.window
            if window is None:
                return None
            elapsed = (self._now() - window.started_at).total_seconds()
            if elapsed >= self.config.window_seconds or window.inspected >= self.config.window_max_images:
                return self._close_window()
            return None

    def _ensure_window(self, active: _Installed) -> _OpenWindow:
        if self._state.window is None:
            started = self._now()
            seq = self._state.next_seq
            self._state.next_seq += 1
            self._state.window = _OpenWindow(
                window_id=f"{self.config.device_id}-{started.astimezone(UTC):%Y%m%dT%H%M%SZ}-{seq}",
                model_version=active.version,
                line=active.manifest.line,
                started_at=started,
            )
        return self._state.window

    def _close_window(self) -> MetricWindow | None:
        window = self._state.window
        if window is None:
            return None
        closed = MetricWindow(
            window_id=window.window_id,
            device_id=self.config.device_id,
            line=window.line,
            model_version=window.model_version,
            started_at=window.started_at,
            ended_at=max(self._now(), window.started_at),
            inspected=window.inspected,
            rejected=window.rejected,
            confirmed_defects=window.confirmed_defects,
            false_rejects=window.false_rejects,
            escapes_found=window.escapes_found,
            score_histogram=tuple(window.score_histogram),
            input_brightness_histogram=tuple(window.input_brightness_histogram),
        )
        _write_atomic(self._outbox / f"{closed.window_id}.json", closed.model_dump_json().encode())
        self._state.window = None
        self._save_state()
        logger.info(
            "closed window %s (%s): %d inspected, %d rejected",
            closed.window_id,
            closed.model_version,
            closed.inspected,
            closed.rejected,
        )
        return closed

    def flush_outbox(self) -> int:
        """Upload every window in the outbox, oldest first; returns how many the server acknowledged.

        A window file is deleted only after 201 (stored) or 200 (already stored: uploads are
        idempotent by window id). When the server is unreachable or answers 5xx/401/403 the rest
        stays for the next flush. A window the server refuses as invalid (other 4xx) or a file that
        is not a window is moved to ``outbox/rejected/`` and logged, so it neither blocks the others
        nor gets lost.
        """
        with self._lock:
            url = f"{self.config.server_url}/v1/metrics"
            uploaded = 0
            files = sorted(path for path in self._outbox.glob("*.json") if not path.name.startswith("."))
            for path in files:
                try:
                    window = MetricWindow.model_validate_json(path.read_bytes())
                except ValidationError as exc:
                    self._quarantine_window(path, f"not a valid metric window ({exc})")
                    continue
                try:
                    response = self._client.post(
                        url,
                        content=window.model_dump_json().encode(),
                        headers={**self._auth, "Content-Type": "application/json"},
                    )
                except httpx.TransportError as exc:
                    logger.warning(
                        "upload of window %s failed (%s: %s); %d windows stay in %s for the next flush",
                        window.window_id,
                        type(exc).__name__,
                        exc,
                        len(files) - uploaded,
                        self._outbox,
                    )
                    break
                status = response.status_code
                if status in (200, 201):
                    path.unlink()
                    uploaded += 1
                    logger.debug("uploaded window %s (%d)", window.window_id, status)
                    continue
                if status >= 500 or status in (408, 429):
                    logger.warning(
                        "upload of window %s: server answered %d; %d windows stay in %s",
                        window.window_id,
                        status,
                        len(files) - uploaded,
                        self._outbox,
                    )
                    break
                if status in (401, 403):
                    logger.error(
                        "upload of window %s: server answered %d (token not accepted for device %s); windows "
                        "stay in %s; check --token / MFG_EDGE_TOKEN",
                        window.window_id,
                        status,
                        self.config.device_id,
                        self._outbox,
                    )
                    break
                self._quarantine_window(path, f"server answered {status}: {response.text[:500]}")
            return uploaded

    def _quarantine_window(self, path: Path, why: str) -> None:
        stored = _move_unique(path, self._outbox / "rejected")
        logger.error("outbox file %s cannot be uploaded: %s; moved to %s for inspection", path.name, why, stored)

    def _outbox_count(self) -> int:
        return sum(1 for _ in self._outbox.glob("*.json"))

    def flush_feedback(self) -> int:
        """Upload every queued feedback image to ``POST /v1/feedback``; returns how many were acknowledged.

        The server stores each (device, sha256) once, so a retry after a lost answer is harmless. An
        entry is deleted only after 201 (stored) or 200 (already stored); when the server is
        unreachable or answers 5xx/408/429/401/403 the rest waits for the next flush. An entry the
        server refuses (other 4xx, e.g. a label it cannot accept or an image over its size limit) or
        whose sidecar is unreadable is moved to ``feedback_outbox/rejected/`` and logged.
        """
        with self._lock:
            url = f"{self.config.server_url}/v1/feedback"
            uploaded = 0
            sidecars = sorted(p for p in self._feedback_outbox.glob("*.json") if not p.name.startswith("."))
            for sidecar_path in sidecars:
                try:
                    meta = json.loads(sidecar_path.read_bytes())
                    image_path = self._feedback_outbox / f"{meta['sha256']}{Path(meta['image']).suffix.lower()}"
                    data = image_path.read_bytes()
                except (json.JSONDecodeError, KeyError, TypeError, FileNotFoundError) as exc:
                    self._quarantine_feedback(sidecar_path, None, f"unreadable entry ({type(exc).__name__}: {exc})")
                    continue
                body = {**meta, "image_base64": base64.b64encode(data).decode("ascii")}
                try:
                    response = self._client.post(url, json=body, headers=self._auth)
                except httpx.TransportError as exc:
                    logger.warning(
                        "upload of feedback image %s failed (%s: %s); %d entries stay in %s for the next flush",
                        meta["image"],
                        type(exc).__name__,
                        exc,
                        len(sidecars) - uploaded,
                        self._feedback_outbox,
                    )
                    break
                status = response.status_code
                if status in (200, 201):
                    sidecar_path.unlink()  # the sidecar first: an image without one is never sent
                    image_path.unlink(missing_ok=True)
                    uploaded += 1
                    logger.debug("uploaded feedback image %s (%d)", meta["image"], status)
                    continue
                if status >= 500 or status in (401, 403, 408, 429):
                    level = logging.ERROR if status in (401, 403) else logging.WARNING
                    logger.log(
                        level,
                        "upload of feedback image %s: server answered %d (%s); %d entries stay in %s",
                        meta["image"],
                        status,
                        response.text[:300],
                        len(sidecars) - uploaded,
                        self._feedback_outbox,
                    )
                    break
                self._quarantine_feedback(sidecar_path, image_path, f"server answered {status}: {response.text[:500]}")
            return uploaded

    def _quarantine_feedback(self, sidecar: Path, image: Path | None, why: str) -> None:
        folder = self._feedback_outbox / "rejected"
        stored = _move_unique(sidecar, folder)
        if image is not None and image.exists():
            _move_unique(image, folder)
        logger.error("feedback entry %s cannot be uploaded: %s; moved to %s for inspection", sidecar.name, why, stored)

    def _feedback_outbox_count(self) -> int:
        return sum(1 for _ in self._feedback_outbox.glob("*.json"))

    # ---------------------------------------------------------------------------------- state files

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise AgentError(
                f"the agent's clock returned a naive datetime ({now!r}); pass a timezone-aware clock such as utc_now"
            )
        return now

    def _read_active_record(self) -> _ActiveRecord | None:
        path = self._state_dir / ACTIVE_FILE
        if not path.is_file():
            return None
        try:
            return _ActiveRecord.model_validate_json(path.read_bytes())
        except ValidationError as exc:
            raise AgentError(
                f"{path} is not a valid active-model record ({exc}); it is only ever replaced atomically, so "
                "it was edited by hand: restore it or delete it (the next sync then installs the deployment)"
            ) from exc

    def _read_state(self) -> _AgentState:
        path = self._state_dir / _STATE_FILE
        if not path.is_file():
            return _AgentState()
        try:
            return _AgentState.model_validate_json(path.read_bytes())
        except ValidationError as exc:
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            os.replace(path, aside)
            logger.error(
                "%s is unreadable (%s); moved it to %s and started a fresh window and feedback cursor "
                "(feedback already counted may be counted again)",
                path,
                exc,
                aside,
            )
            return _AgentState()

    def _save_state(self) -> None:
        _write_atomic(self._state_dir / _STATE_FILE, self._state.model_dump_json().encode())


# --------------------------------------------------------------------------------------------------
# pure helpers


def _self_test(predictor: Predictor, path: Path, manifest: DeploymentManifest) -> None:
    """Run the package's self-test images and compare with the platform's torch probabilities.

    FP32 formats must match within :data:`FP32_SELFTEST_TOLERANCE` and predict torch's class on every
    image, except where torch itself scores the device's class within that tolerance of its top one
    (a tie decided by rounding, the same exemption as the platform's parity check). INT8 must agree
    on at least :data:`INT8_MIN_AGREEMENT` of the images.
    """
    version = manifest.model_version
    try:
        with np.load(path, allow_pickle=False) as data:
            images = np.asarray(data["images"])
            expected = np.asarray(data["probabilities"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise SelfTestFailed(
            f"model {version}: cannot read {SELFTEST_FILE} with arrays 'images' and 'probabilities' ({exc})"
        ) from exc
    spec = manifest.input
    want = (spec.height, spec.width, 3)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != want or len(images) == 0:
        raise SelfTestFailed(
            f"model {version}: {SELFTEST_FILE} images must be uint8 N×{want[0]}×{want[1]}×3 with N >= 1, got "
            f"{images.dtype} {images.shape}; regenerate the package's self-test"
        )
    n_classes = len(manifest.classes)
    if expected.ndim != 2 or expected.shape != (len(images), n_classes) or not np.isfinite(expected).all():
        raise SelfTestFailed(
            f"model {version}: {SELFTEST_FILE} probabilities must be finite {len(images)}×{n_classes} "
            f"(images × classes {list(manifest.classes)}), got {expected.shape}"
        )
    try:
        got = predictor.predict(images)
    except InferenceError as exc:
        raise SelfTestFailed(f"model {version}: self-test inference failed: {exc}") from exc
    if got.shape != expected.shape:
        raise SelfTestFailed(
            f"model {version}: the model returns {got.shape} probabilities for the self-test, the platform "
            f"recorded {expected.shape}; the package's model and manifest do not belong together"
        )
    rows = np.arange(len(images))
    reference_top = expected.argmax(axis=1)
    device_top = got.argmax(axis=1)
    if ModelFormat(manifest.model_format) is ModelFormat.ONNX_INT8:
        agreement = float((reference_top == device_top).mean())
        if agreement < INT8_MIN_AGREEMENT:
            raise SelfTestFailed(
                f"model {version} (onnx_int8): predicts torch's class on {agreement:.0%} of the {len(images)} "
                f"self-test images, at least {INT8_MIN_AGREEMENT:.0%} required; the quantised model does not "
                "run as validated on this device; keep the current model and report the device's CPU"
            )
        logger.info("self-test of %s passed: %.0f%% class agreement", version, agreement * 100)
        return
    difference = float(np.abs(got.astype(np.float64) - expected).max())
    tie = expected[rows, device_top] >= expected[rows, reference_top] - FP32_SELFTEST_TOLERANCE
    disagree = int(((reference_top != device_top) & ~tie).sum())
    if difference > FP32_SELFTEST_TOLERANCE or disagree:
        raise SelfTestFailed(
            f"model {version} ({manifest.model_format}): self-test max |p_device - p_torch| = {difference:.2e} "
            f"(limit {FP32_SELFTEST_TOLERANCE:.0e}), predicted class differs on {disagree} of {len(images)} "
            "images; this device does not run the validated model; the current model keeps running"
        )
    logger.info("self-test of %s passed: max |diff| %.1e on %d images", version, difference, len(images))


def _decode_image(path: Path, spec: InputSpec) -> tuple[np.ndarray, float]:
    """RGB uint8 pixels at the model's input size (``fit_to_input``, the function training used) and
    the mean brightness of the full-size image."""
    if path.suffix.lower() not in _IMAGE_SUFFIXES:
        raise _UnusableImage(
            "unsupported_extension",
            f"not an image file ({path.suffix or 'no suffix'}); expected {sorted(_IMAGE_SUFFIXES)}",
        )
    if path.stat().st_size == 0:
        raise _UnusableImage("zero_byte", "empty file; check the camera's upload")
    try:
        with Image.open(path) as image:
            if image.mode not in _ACCEPTED_MODES:
                raise _UnusableImage(
                    "unsupported_mode",
                    f"image mode {image.mode} (16-bit, CMYK, ...) is not what the model was trained on; "
                    f"set the camera to 8-bit RGB or grey",
                )
            image.load()
            rgb = image.convert("RGB")
    except (_UnusableImage, FileNotFoundError):
        raise
    except Image.DecompressionBombError as exc:
        raise _UnusableImage("too_large", f"Pillow refused it as a possible decompression bomb ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise _UnusableImage("undecodable", "not an image or corrupt; check the camera export") from exc
    except PIL_DECODE_ERRORS as exc:
        raise _UnusableImage(
            "undecodable", f"cannot decode ({type(exc).__name__}: {exc}); truncated or corrupt"
        ) from exc
    brightness = float(np.asarray(rgb, dtype=np.float32).mean())
    return fit_to_input(rgb, spec.width, spec.height, spec.resize), brightness


def _decide(
    image: str,
    probabilities: np.ndarray,
    brightness: float,
    manifest: DeploymentManifest,
    window_id: str,
    decided_at: datetime,
) -> Decision:
    probs = np.asarray(probabilities, dtype=np.float64)
    top = int(np.argmax(probs))
    predicted = manifest.classes[top]
    verdict: Literal["pass", "reject", "recorded"]
    if manifest.good_class is not None:
        score = 1.0 - float(probs[manifest.classes.index(manifest.good_class)])
        if manifest.threshold is not None:
            verdict = "reject" if score >= manifest.threshold else "pass"
        else:
            verdict = "pass" if predicted == manifest.good_class else "reject"
    else:
        score = 1.0 - float(probs[top])
        verdict = "recorded"
    return Decision(
        image=image,
        model_version=manifest.model_version,
        window_id=window_id,
        predicted_class=predicted,
        defect_score=min(max(score, 0.0), 1.0),
        verdict=verdict,
        probabilities=tuple(float(p) for p in probs),
        brightness=brightness,
        decided_at=decided_at,
    )


def _count(window: _OpenWindow, decision: Decision) -> None:
    window.inspected += 1
    window.rejected += decision.rejected
    window.score_histogram[min(int(decision.defect_score * SCORE_BINS), SCORE_BINS - 1)] += 1
    brightness_bin = min(max(int(decision.brightness * INPUT_BINS / 256.0), 0), INPUT_BINS - 1)
    window.input_brightness_histogram[brightness_bin] += 1


def _parse_feedback_line(raw: bytes) -> tuple[str | None, tuple[str, str, str | None] | None]:
    """(problem, None) for a bad line, (None, None) for a blank/header line, (None, (image, verdict,
    label or None)) otherwise. The label column is optional, so old ``image,verdict`` files still parse."""
    try:
        text = raw.decode("utf-8").strip("\r\n")
    except UnicodeDecodeError:
        return "not UTF-8 text", None
    if not text.strip():
        return None, None
    fields = [field.strip() for field in next(csv.reader([text]))]
    if [field.lower() for field in fields] in (["image", "verdict"], ["image", "verdict", "label"]):
        return None, None
    if len(fields) not in (2, 3) or not fields[0]:
        return f"expected 'image,verdict[,label]', got {len(fields)} fields", None
    image, verdict = fields[0], fields[1].lower()
    if verdict not in VERDICTS:
        return f"unknown verdict {fields[1]!r}; use one of {sorted(VERDICTS)}", None
    if "/" in image or "\\" in image or image in (".", ".."):
        return f"image {image!r} must be a file name as the camera wrote it, without folders", None
    label = fields[2] if len(fields) == 3 and fields[2] else None
    return None, (image, verdict, label)


def _check_label(item: tuple[str, str, str | None], manifest: DeploymentManifest) -> str | None:
    """Why a given label is unacceptable for this verdict and model, or None when it is fine (or absent)."""
    _image, verdict, label = item
    if label is None:
        return None
    if label not in manifest.classes:
        return f"label {label!r} is not a class of model {manifest.model_version}; use one of {list(manifest.classes)}"
    good = manifest.good_class
    if good is not None and verdict == "false_reject" and label != good:
        return f"a false_reject means the part is good, so its label must be {good!r}, not {label!r}"
    if good is not None and verdict in ("confirmed_defect", "escape") and label == good:
        return f"a {verdict} is a defective part, so its label must be a defect class, not the good class {good!r}"
    return None


def _content_range_start(value: str | None) -> int | None:
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", value or "")
    return int(match.group(1)) if match else None


def _write_chunk(handle: BinaryIO, chunk: bytes) -> None:
    """Write one downloaded chunk (a seam: tests make it raise ENOSPC to simulate a full disk)."""
    handle.write(chunk)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_HASH_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same folder, fsync, then rename over ``path``: readers see the
    old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Persist a rename (POSIX: the directory entry lives in the folder)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _move_unique(path: Path, folder: Path) -> Path:
    """Move ``path`` into ``folder`` without overwriting (cameras reuse names): name, name-1, name-2..."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    n = 0
    while target.exists():
        n += 1
        target = folder / f"{path.stem}-{n}{path.suffix}"
    os.replace(path, target)
    return target


def _remove_tree(path: Path) -> None:
    """Delete a folder; a failure is logged (the caller's state is already consistent without it)."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        logger.error("could not delete %s (%s); delete it by hand to free the space", path, exc)


# --------------------------------------------------------------------------------------------------
# command line


def main(argv: Sequence[str] | None = None) -> int:
    """``mfg-edge-agent``: run the agent until SIGINT/SIGTERM, or one iteration with ``--once``.

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
    parser.add_argument(
        "--public-key", required=True, type=Path, help="the platform's manifest-signing public key (PEM)"
    )
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
            return 0 if agent._run_iteration(sync=True) else 1
        stop = threading.Event()
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: stop.set())
        agent.run(stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
