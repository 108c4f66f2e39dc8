"""Operator feedback on the device: verdicts appended to ``feedback.csv``, counted once, images queued.

Lines are ``image,verdict[,label]`` with verdict one of :data:`VERDICTS`; an optional header and
blank lines are skipped. Each (image, verdict) pair counts once into the open window, however often
it is appended. A line that cannot be understood (or whose label is not a class of the active
model) is logged as an error naming it, copied to ``feedback_rejected.csv`` for the operator to fix
and append again, and its reason appended to ``feedback_problems.log``. Each counted line is also
labelled and its image (from ``camera_dir/processed/``) queued in ``feedback_outbox/`` with a JSON
sidecar, so operator-labelled images join the training data.
"""

import base64
import csv
import hashlib
import json
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from edge_sync.agent.installer import Installed
from edge_sync.agent.outbox import Entry
from edge_sync.agent.windows import AgentState, OpenWindow
from edge_sync.contract import DeploymentManifest, decoder_for
from edge_sync.durable import write_atomic

__all__ = [
    "DECISIONS_FILE",
    "FEEDBACK_FILE",
    "FEEDBACK_OUTBOX_DIR",
    "PROCESSED_DIR",
    "VERDICTS",
    "FeedbackLog",
    "check_label",
    "parse_feedback_line",
    "read_feedback_entry",
]

logger = logging.getLogger(__name__)

VERDICTS: dict[str, str] = {
    "false_reject": "false_rejects",
    "confirmed_defect": "confirmed_defects",
    "escape": "escapes_found",
}
"""Operator verdicts accepted in feedback.csv, and the window counter each one increments."""

FEEDBACK_FILE = "feedback.csv"
FEEDBACK_OUTBOX_DIR = "feedback_outbox"
"""Folder under ``state_dir`` holding labelled feedback images and their sidecars until the server has them."""
DECISIONS_FILE = "decisions.jsonl"
PROCESSED_DIR = "processed"
_REJECTED_FILE = "feedback_rejected.csv"
_PROBLEMS_FILE = "feedback_problems.log"


class FeedbackLog:
    """Reads new lines of ``state_dir/feedback.csv`` from the cursor kept in the agent's state."""

    def __init__(self, state_dir: Path, camera_dir: Path, device_id: str, now: Callable[[], datetime]) -> None:
        self._state_dir = state_dir
        self._camera_dir = camera_dir
        self._device_id = device_id
        self._now = now
        self.outbox_dir = state_dir / FEEDBACK_OUTBOX_DIR

    def apply(self, state: AgentState, active: Installed, ensure_window: Callable[[], OpenWindow]) -> int:
        """Count new complete lines into the open window; returns how many counted.

        A last line without its newline is left for the next call (the operator tool may still be
        writing it). The caller saves ``state`` afterwards, also when this raises.
        """
        path = self._state_dir / FEEDBACK_FILE
        if not path.is_file():
            return 0
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
                problem, item = parse_feedback_line(raw)
                if problem is None and item is not None:
                    problem = check_label(item, active.manifest)
                if problem is not None:
                    self._reject_line(path, state.feedback_line, raw, problem)
                    continue
                if item is None:
                    continue
                image, verdict, label = item
                pair = (image, verdict)
                if pair in seen and (label is None or pair in labelled):
                    continue
                if pair not in seen:
                    window = ensure_window()
                    setattr(window, VERDICTS[verdict], getattr(window, VERDICTS[verdict]) + 1)
                    seen.add(pair)
                    state.feedback_seen.append(pair)
                    counted += 1
                if pair in labelled:
                    continue
                if decisions is None:
                    decisions = self._read_decisions()
                if self._queue(active, image, verdict, label, decisions.get(image), state.feedback_line):
                    labelled.add(pair)
                    state.feedback_labelled.append(pair)
        finally:
            state.feedback_offset += len(complete)
        return counted

    def _reject_line(self, path: Path, line_no: int, raw: bytes, problem: str) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        logger.error("%s line %d (%r): %s; copied to %s, fix it and append it again", path, line_no, text, problem, _REJECTED_FILE)
        with (self._state_dir / _REJECTED_FILE).open("ab") as rejected:
            rejected.write(raw if raw.endswith(b"\n") else raw + b"\n")
        self._note_problem(line_no, text, problem)

    def _note_problem(self, line_no: int, text: str, problem: str) -> None:
        with (self._state_dir / _PROBLEMS_FILE).open("a", encoding="utf-8") as log:
            log.write(f"{self._now().isoformat()}\tline {line_no}\t{text}\t{problem}\n")

    def _read_decisions(self) -> dict[str, dict[str, Any]]:
        """The last decision per image name in ``decisions.jsonl`` (a torn last line is skipped)."""
        found: dict[str, dict[str, Any]] = {}
        path = self._state_dir / DECISIONS_FILE
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

    def _queue(
        self, active: Installed, image: str, verdict: str, label: str | None, decision: dict[str, Any] | None, line_no: int
    ) -> bool:
        """Copy a labelled image and its sidecar into the outbox; False (logged) when it cannot be
        labelled or found. The sidecar is written last: it marks the entry complete."""
        resolved, why = feedback_label(active.manifest, image, verdict, label, decision)
        text = f"{image},{verdict}" + ("" if label is None else f",{label}")
        if resolved is None:
            logger.error("feedback %r (line %d) counted but not sent for training: %s", text, line_no, why)
            self._note_problem(line_no, text, why)
            return False
        source = self._camera_dir / PROCESSED_DIR / image
        try:
            data = source.read_bytes()
        except FileNotFoundError:
            why = f"image {source} not found, so it cannot be sent for training (was it cleaned up or renamed?)"
            logger.error("feedback %r (line %d) counted but not sent: %s", text, line_no, why)
            self._note_problem(line_no, text, why)
            return False
        sha256 = hashlib.sha256(data).hexdigest()
        sidecar = {
            "device_id": self._device_id,
            "line": active.manifest.line,
            "model_version": str(decision["model_version"]) if decision and "model_version" in decision else active.version,
            "image": image,
            "sha256": sha256,
            "label": resolved,
            "verdict": verdict,
            "labelled_at": self._now().isoformat(),
        }
        write_atomic(self.outbox_dir / f"{sha256}{Path(image).suffix.lower()}", data)
        write_atomic(self.outbox_dir / f"{sha256}.json", json.dumps(sidecar, sort_keys=True).encode())
        logger.info("queued feedback image %s as %r (%s) for upload", image, resolved, verdict)
        return True


def read_feedback_entry(sidecar: Path) -> Entry:
    """An outbox entry from a feedback sidecar and its image (the body of ``POST /v1/feedback``)."""
    meta = json.loads(sidecar.read_bytes())
    image = sidecar.with_name(f"{meta['sha256']}{Path(meta['image']).suffix.lower()}")
    body = {**meta, "image_base64": base64.b64encode(image.read_bytes()).decode("ascii")}
    return Entry(name=str(meta["image"]), body=body, files=(sidecar, image))


def feedback_label(
    manifest: DeploymentManifest, image: str, verdict: str, label: str | None, decision: dict[str, Any] | None
) -> tuple[str | None, str]:
    """(label, "") for the image, or (None, why it cannot be labelled). A confirmed defect without a
    label takes what the device recorded, as the task's decoder maps it (a detector names no defect
    type, so its operator must)."""
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
            f"no decision for {image} in {DECISIONS_FILE}, so its predicted class is unknown; append "
            f"'{image},confirmed_defect,<class>' to label it"
        )
    predicted = str(decision.get("predicted_class"))
    return decoder_for(manifest.task).confirmed_defect_label(manifest, image, predicted)


def parse_feedback_line(raw: bytes) -> tuple[str | None, tuple[str, str, str | None] | None]:
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


def check_label(item: tuple[str, str, str | None], manifest: DeploymentManifest) -> str | None:
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
