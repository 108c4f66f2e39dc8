"""Operator-labelled images from edge devices, landed as a new batch so they join the dataset.

Devices upload feedback images to the sync server (:meth:`edge_sync.server_state.ServerState.record_feedback`);
:func:`land_feedback` copies those of one line that were not landed before into a new landing-zone
batch ``<line>/<variant>/edge-feedback-<UTC timestamp>/`` laid out folder-per-class, with a
``labels.csv`` (``path,label,reviewer``; reviewer ``operator@<device>``) and the ``_READY`` marker
written last, so the landing sensor turns it into a dataset version like any camera batch.

Images are keyed by content (sha256): an image already landed, or sent by two devices, lands once.
This module imports no Dagster; the asset or sensor that calls it keeps the set of landed keys.
"""

import csv
import io
import logging
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_sync.server_state import ServerState
from resources.landing import MARKER
from resources.data.variants import NAME_PATTERN
from resources.errors import MfgVisionError
from resources.storage.scratch import scratch_name

__all__ = ["BATCH_PREFIX", "FeedbackLandingError", "land_feedback", "landed_keys"]

logger = logging.getLogger(__name__)

BATCH_PREFIX = "edge-feedback-"
"""Batch folders made by :func:`land_feedback` start with this, then a UTC timestamp."""


class FeedbackLandingError(MfgVisionError):
    """Feedback cannot be landed (bad name, batch folder already there); the message says what to do."""


def land_feedback(
    state: ServerState,
    line: str,
    variant: str,
    landing_root: Path,
    *,
    already_landed: set[str],
    model_versions: set[str] | None = None,
    now: Callable[[], datetime] | None = None,
    mvtec_good_class: str | None = None,
) -> Path | None:
    """Write the line's feedback images not in ``already_landed`` into a new batch; None when none is new.

    ``model_versions``: land only feedback on decisions of these model versions (the variant's own:
    a line can run several variants over time, and each feedback item names the model whose decision
    the operator judged); None lands all of the line's feedback.

    ``already_landed`` holds image sha256s (see :func:`landed_keys` to read them back from a batch).
    Files are copied (the server keeps its copy), ``labels.csv`` is written after the images and
    ``_READY`` last, so a crash leaves an incomplete batch the sensor ignores. When two devices sent
    the same image, the first received wins; differing labels are logged as a warning.

    ``mvtec_good_class``: the variant takes the MVTec layout (an anomaly detector's), so images of
    this class go to ``train/good/`` and the others to ``test/<label>/``; ``labels.csv`` still says
    who labelled each. None: folder-per-class.
    """
    for kind, value in (("line", line), ("variant", variant)):
        if not NAME_PATTERN.fullmatch(value):
            raise FeedbackLandingError(
                f"{kind} {value!r} is not a valid landing-zone name (pattern {NAME_PATTERN.pattern}); fix the caller"
            )
    chosen: dict[str, dict[str, Any]] = {}
    for record in state.feedback(line):
        sha256 = record["sha256"]
        if sha256 in already_landed or (model_versions is not None and record["model_version"] not in model_versions):
            continue
        first = chosen.get(sha256)
        if first is None:
            chosen[sha256] = record
        elif first["label"] != record["label"]:
            logger.warning(
                "line %s: image %s was labelled %r by %s and %r by %s; landing the first",
                line,
                sha256,
                first["label"],
                first["device_id"],
                record["label"],
                record["device_id"],
            )
    if not chosen:
        return None
    stamp = (now or (lambda: datetime.now(UTC)))().astimezone(UTC)
    batch = landing_root / line / variant / f"{BATCH_PREFIX}{stamp:%Y%m%dT%H%M%SZ}"
    if batch.exists():
        raise FeedbackLandingError(
            f"{batch} already exists; feedback was landed twice within one second - retry in a second"
        )
    # Built under an in-progress name (swept if this process dies), renamed when whole, marked last.
    staging = batch.parent / scratch_name("feedback")
    staging.mkdir(parents=True)
    rows: list[tuple[str, str, str]] = []
    for sha256, record in sorted(chosen.items(), key=lambda item: (item[1]["label"], item[0])):
        source = Path(record["path"])
        label = record["label"]
        folder = label if mvtec_good_class is None else "train/good" if label == mvtec_good_class else f"test/{label}"
        rel = f"{folder}/{sha256}{source.suffix.lower()}"
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        rows.append((rel, record["label"], f"operator@{record['device_id']}"))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("path", "label", "reviewer"))
    writer.writerows(rows)
    _write_synced(staging / "labels.csv", buffer.getvalue().encode("utf-8"))
    os.replace(staging, batch)
    _write_synced(batch / MARKER, b"")
    logger.info("landed %d feedback image(s) of line %s in %s", len(rows), line, batch)
    return batch


def landed_keys(batch: Path) -> set[str]:
    """The image sha256s a feedback batch holds (read from its ``labels.csv``), to add to ``already_landed``."""
    labels = batch / "labels.csv"
    try:
        with labels.open(newline="", encoding="utf-8") as handle:
            return {Path(row["path"]).stem for row in csv.DictReader(handle)}
    except FileNotFoundError as exc:
        raise FeedbackLandingError(f"{labels} not found; {batch} is not a complete feedback batch") from exc


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
