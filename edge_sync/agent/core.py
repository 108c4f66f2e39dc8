"""The edge agent: fetch signed deployments, activate them safely, inspect camera images, report counts.

:class:`EdgeAgent` ties the parts together; each lives in its own module:
:mod:`~edge_sync.agent.installer` (verify, download, self-test, switch), :mod:`~edge_sync.agent.inspector`
(decide an image), :mod:`~edge_sync.agent.feedback` (operator verdicts), :mod:`~edge_sync.agent.windows`
(metric windows and the state file) and :mod:`~edge_sync.agent.outbox` (uploads).
"""

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
from pydantic import ValidationError

from edge_sync.agent.config import AgentConfig, SyncOutcome, utc_now
from edge_sync.agent.errors import (
    AgentError,
    DownloadInterrupted,
    SelfTestFailed,
    VerificationError,
)
from edge_sync.agent.feedback import DECISIONS_FILE, PROCESSED_DIR, FeedbackLog, read_feedback_entry
from edge_sync.agent.inspector import Decision, UnusableImage, decide, decode_image, pending_images
from edge_sync.agent.installer import Installed, Installer
from edge_sync.agent.outbox import Entry, Outbox
from edge_sync.agent.windows import OpenWindow, StateFile, closed_window, count_decision, new_window
from edge_sync.contract import (
    ContractError,
    MetricWindow,
    SignedManifest,
    decoder_for,
    is_hold_payload,
    load_public_key,
)
from edge_sync.durable import move_unique, write_atomic
from edge_sync.inference import InferenceError

__all__ = ["EdgeAgent"]

logger = logging.getLogger("edge_sync.agent")

_STATE_FILE = "agent_state.json"
_OUTBOX_DIR = "outbox"
_REJECTED_INPUT_DIR = "rejected_input"
_REJECTED_INPUT_LOG = "reasons.log"
_TICK_SECONDS = 1.0  # how often run() looks for new images and due windows


def _is_hold(signed: SignedManifest) -> bool:
    try:
        return is_hold_payload(json.loads(signed.manifest_json))
    except json.JSONDecodeError:
        return False  # verify_manifest then refuses it with its reason


def _read_window_entry(path: Path) -> Entry:
    window = MetricWindow.model_validate_json(path.read_bytes())
    return Entry(name=window.window_id, body=window.model_dump_json().encode(), files=(path,))


class EdgeAgent:
    """One device's agent. Construct it, then call :meth:`run` (or the single steps, as tests do).

    The constructor reads ``active.json`` and re-verifies the active version (signature, file hashes,
    self-test) before running it; a version that no longer verifies is not run (logged as an error)
    and the next sync installs the deployment afresh.
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
            public_key = load_public_key(config.public_key_path)
        except FileNotFoundError as exc:
            raise AgentError(
                f"public key {config.public_key_path} not found; copy the platform's manifest-signing "
                "public key (PEM) onto the device"
            ) from exc
        except ContractError as exc:
            raise AgentError(str(exc)) from exc
        self._installer = Installer(
            config.state_dir, public_key, self._client, config.server_url, self._auth,
            num_threads=config.num_threads, clock=self._now,
        )
        self._feedback = FeedbackLog(config.state_dir, config.camera_dir, config.device_id, self._now)
        self._windows = Outbox(
            config.state_dir / _OUTBOX_DIR, kind="window", url=f"{config.server_url}/v1/metrics",
            read=_read_window_entry, device_id=config.device_id,
        )
        self._feedback_outbox = Outbox(
            self._feedback.outbox_dir, kind="feedback image", url=f"{config.server_url}/v1/feedback",
            read=read_feedback_entry, device_id=config.device_id,
        )
        self._state_file = StateFile(config.state_dir / _STATE_FILE)
        self._state = self._state_file.read()
        self._installer.load_active()
        window = self._state.window
        if window is not None and (self.active_version is None or window.model_version != self.active_version):
            # Never let a window mix versions, even across a crash between activation steps.
            self._close_window()

    # ---------------------------------------------------------------------------------- lifecycle

    @property
    def active_version(self) -> str | None:
        """The model version this device runs now (None before the first activation)."""
        return self._installer.active_version

    @property
    def _active(self) -> Installed | None:
        return self._installer.active

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
            self.run_iteration(sync=due)
            if due:
                next_sync = now + self.config.poll_seconds
            stop.wait(min(self.config.poll_seconds, _TICK_SECONDS))
        logger.info("edge agent %s stopped", self.config.device_id)

    def run_iteration(self, *, sync: bool) -> bool:
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
        windows_before = self._windows.count()
        feedback_before = self._feedback_outbox.count()
        step("inspection", self.inspect_pending)
        step("feedback", self.apply_feedback)
        step("window", self.close_window_if_due)
        if sync or self._windows.count() > windows_before:
            step("upload", self.flush_outbox)
        if sync or self._feedback_outbox.count() > feedback_before:
            step("feedback upload", self.flush_feedback)
        return ok

    # ---------------------------------------------------------------------------------- sync

    def sync_once(self) -> SyncOutcome:
        """Ask the server what to run and, if it is new, verify and activate it.

        Returns an outcome for everything the server or the deployment decides; raises
        :class:`~edge_sync.agent.errors.DownloadError` when the device cannot store or fetch a package
        it accepted and :class:`AgentError` when the final switch cannot be written. In every case but
        ``activated`` the model that was running keeps running.
        """
        with self._lock:
            running = self.active_version
            url = f"{self.config.server_url}/v1/manifest"
            held = self._installer.hold_order
            reporting = running or (f"hold:{held.split(':', 1)[0]}" if held else "none")
            try:
                response = self._client.get(url, headers={**self._auth, "X-Device-Running": reporting})
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
            if key not in self._refused and _is_hold(signed):
                return self._obey_hold(signed, key)
            if key in self._refused:
                refused_version, why = self._refused[key]
                logger.debug("manifest %s was refused before: %s", key[:12], why)
                return SyncOutcome("refused", refused_version, why)
            try:
                manifest = self._installer.verify(signed)
            except (ContractError, VerificationError) as exc:
                return self._refuse(None, f"manifest refused: {exc}", memo=key)
            version = manifest.model_version
            record = self._installer.record
            if self._active is not None and version == running:
                return self._same_version(signed, manifest)
            if record is not None and version in record.rolled_back:
                return self._refuse(
                    version,
                    f"model {version} was rolled back on this device; keeping {running} until the "
                    "platform deploys a different version",
                )
            try:
                self._installer.activate(signed, manifest, before_switch=self._close_window)
            except DownloadInterrupted as exc:
                return self._unreachable(str(exc))
            except VerificationError as exc:
                return self._refuse(version, str(exc))
            except SelfTestFailed as exc:
                return self._refuse(version, str(exc), memo=key)
            detail = f"activated {version} ({manifest.model_format}, deployment {manifest.deployment_id})"
            logger.info("%s; previous %s kept for rollback", detail, running)
            return SyncOutcome("activated", version, detail)

    def _obey_hold(self, signed: SignedManifest, key: str) -> SyncOutcome:
        """The platform ordered: run no model. Verified like a manifest (a forged order is refused)."""
        try:
            order = self._installer.verify_hold(signed)
        except ContractError as exc:
            return self._refuse(None, f"hold order refused: {exc}", memo=key)
        active = self._active  # the server serves a device only its line's orders; this is a second fence
        if active is not None and order.line != active.manifest.line:
            return self._refuse(
                None, f"hold order {order.order_id} is for line {order.line}, this device runs line {active.manifest.line}", memo=key
            )
        detail = (
            f"on hold by order {order.order_id} ({order.reason}): running no model; images wait in "
            f"{self.config.camera_dir} and parts go to manual inspection until the platform deploys a model"
        )
        if self._installer.hold_order is not None and self._installer.hold_order.startswith(f"{order.order_id}:"):
            return SyncOutcome("hold", None, detail)
        stopped = self._installer.hold(order, before_switch=self._close_window)
        logger.warning("%s (stopped %s)", detail, stopped or "no model")
        return SyncOutcome("hold", None, detail)

    def _unreachable(self, why: str) -> SyncOutcome:
        running = self.active_version
        detail = f"{why}; keeping {running or 'no model'} and retrying in {self.config.poll_seconds:g} s"
        # A server down for hours would otherwise log the same warning every poll.
        logger.log(logging.DEBUG if self._server_down else logging.WARNING, "sync: %s", detail)
        self._server_down = True
        return SyncOutcome("server_unreachable", running, detail)

    def _refuse(self, version: str | None, detail: str, *, memo: str | None = None) -> SyncOutcome:
        detail = f"{detail} (still running {self.active_version or 'no model'})"
        repeated = detail == self._last_refusal
        logger.log(logging.DEBUG if repeated else logging.ERROR, "sync refused: %s", detail)
        self._last_refusal = detail
        if memo is not None:
            self._refused[memo] = (version, detail)
        return SyncOutcome("refused", version, detail)

    def _same_version(self, signed: SignedManifest, manifest: Any) -> SyncOutcome:
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
        self._installer.adopt(signed, manifest)
        detail = (
            f"running {active.version}; adopted deployment {manifest.deployment_id} "
            f"(threshold {manifest.threshold}, ring {manifest.ring.value})"
        )
        logger.info(detail)
        return SyncOutcome("up_to_date", active.version, detail)

    def rollback(self) -> str:
        """Re-activate the previous version (re-verified from disk) and return it.

        The version rolled back from is kept as the new "previous" and its manifest is refused by later
        syncs until the platform deploys a different version, so a rollback is not undone by the next
        poll.
        """
        with self._lock:
            target, current = self._installer.rollback(before_switch=self._close_window)
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
            pending = pending_images(self.config.camera_dir)
            if active is None:
                if pending and not self._waiting_logged:
                    held = self._installer.hold_order
                    why = f"on hold ({held}); parts go to manual inspection" if held else "no model is active yet"
                    logger.warning("%d images wait in %s: %s", len(pending), self.config.camera_dir, why)
                    self._waiting_logged = True
                return []
            self._waiting_logged = False
            decoder = decoder_for(active.manifest.task)  # the installer ran only tasks with a decoder
            decisions: list[Decision] = []
            try:
                for path in pending:
                    try:
                        pixels, brightness = decode_image(path, active.manifest.input)
                    except UnusableImage as exc:
                        self._reject_input(path, exc.reason, exc.detail)
                        continue
                    except FileNotFoundError:
                        logger.warning("%s disappeared before it was inspected (moved by another process?)", path)
                        continue
                    try:
                        outputs = decoder.run(active.predictor, pixels)
                    except InferenceError as exc:
                        raise AgentError(
                            f"model {active.version} failed on {path} ({exc}); the image stays in the camera "
                            "folder; roll back or redeploy if this repeats"
                        ) from exc
                    window = self._ensure_window(active)
                    decision = decide(path.name, outputs, brightness, active.manifest, window.window_id, self._now())
                    count_decision(
                        window, rejected=decision.rejected, defect_score=decision.defect_score, brightness=brightness,
                        counts=decision.counts,
                    )
                    with (self._state_dir / DECISIONS_FILE).open("a", encoding="utf-8") as log:
                        log.write(decision.to_json() + "\n")
                    move_unique(path, self.config.camera_dir / PROCESSED_DIR)
                    decisions.append(decision)
                    if window.inspected >= self.config.window_max_images:
                        self._close_window()
            finally:
                self._state_file.save(self._state)
            return decisions

    def _reject_input(self, path: Path, reason: str, detail: str) -> None:
        folder = self.config.camera_dir / _REJECTED_INPUT_DIR
        stored = move_unique(path, folder)
        with (folder / _REJECTED_INPUT_LOG).open("a", encoding="utf-8") as log:
            log.write(f"{self._now().isoformat()}\t{stored.name}\t{reason}\t{detail}\n")
        logger.warning("%s: %s (%s); moved to %s", path.name, reason, detail, stored)

    # ---------------------------------------------------------------------------------- feedback

    def apply_feedback(self) -> int:
        """Count new operator lines of ``feedback.csv`` into the open window and queue their images
        (see :mod:`edge_sync.agent.feedback`); returns how many counted. Nothing is read while no model
        is active, because counts belong to a model version's window."""
        with self._lock:
            active = self._active
            if active is None:
                return 0
            try:
                return self._feedback.apply(self._state, active, lambda: self._ensure_window(active))
            finally:
                self._state_file.save(self._state)

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

    def _ensure_window(self, active: Installed) -> OpenWindow:
        if self._state.window is None:
            return new_window(self._state, self.config.device_id, active.version, active.manifest.line, self._now())
        return self._state.window

    def _close_window(self) -> MetricWindow | None:
        window = self._state.window
        if window is None:
            return None
        closed = closed_window(window, self.config.device_id, self._now())
        write_atomic(self._windows.folder / f"{closed.window_id}.json", closed.model_dump_json().encode())
        self._state.window = None
        self._state_file.save(self._state)
        logger.info(
            "closed window %s (%s): %d inspected, %d rejected",
            closed.window_id,
            closed.model_version,
            closed.inspected,
            closed.rejected,
        )
        return closed

    def flush_outbox(self) -> int:
        """Upload every closed window, oldest first; returns how many the server acknowledged
        (see :mod:`edge_sync.agent.outbox` for what each answer means)."""
        with self._lock:
            return self._windows.flush(self._client, self._auth)

    def flush_feedback(self) -> int:
        """Upload every queued feedback image to ``POST /v1/feedback``; returns how many were acknowledged."""
        with self._lock:
            return self._feedback_outbox.flush(self._client, self._auth)

    # ---------------------------------------------------------------------------------- clock

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise AgentError(
                f"the agent's clock returned a naive datetime ({now!r}); pass a timezone-aware clock such as utc_now"
            )
        return now
