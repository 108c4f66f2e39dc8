"""Operator-labelled images devices upload as feedback, stored once per (device, sha256) for the platform.

Kept apart because it is the only store holding device-sent bytes of any size: the image is
checked (size, suffix, sha256) and moved into ``feedback/<line>/<device>/<sha256>.<ext>`` first, and
its JSON sidecar is hard-linked next to it last, so a sidecar exists only for a complete image and
of two concurrent uploads exactly one is stored. The platform reads the sidecars back
(:meth:`FeedbackStore.feedback`) to land the images in its dataset.
"""

import hashlib
import json
import logging
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edge_sync.contract.names import LABEL
from edge_sync.durable import link_new, write_atomic
from edge_sync.server_state._folder import StateFolder, check_name
from edge_sync.server_state.devices import DeviceRecord
from edge_sync.server_state.errors import CorruptState, Forbidden, InvalidInput, TooLarge

__all__ = ["FEEDBACK_IMAGE_SUFFIXES", "MAX_FEEDBACK_BYTES", "FeedbackItem", "FeedbackStore"]

logger = logging.getLogger(__name__)

MAX_FEEDBACK_BYTES = 20 * 1024 * 1024
"""Largest feedback image the server stores (bytes); a line camera's frame is far below it."""
FEEDBACK_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
"""Image file suffixes accepted as feedback (what the agent inspects and the platform ingests)."""


class FeedbackItem(BaseModel):
    """What a device says about one operator-labelled image (the sidecar the agent queues).

    ``label`` becomes a folder name in the landing zone, so it follows the contract's label rule.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    device_id: str = Field(description="the uploading device (must be the token's device)")
    line: str = Field(description="the device's line (must be the token's line)")
    model_version: str = Field(description="the model whose decision the operator judged")
    image: str = Field(min_length=1, max_length=255, description="the image's file name on the device")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the image bytes, lowercase hex")
    label: str = Field(pattern=LABEL.pattern, description="class the operator gave")
    verdict: Literal["false_reject", "confirmed_defect", "escape"]
    labelled_at: datetime = Field(description="when the agent labelled it (device clock, timezone-aware)")


class FeedbackStore:
    """``feedback/`` under ``folder.root``."""

    def __init__(self, folder: StateFolder) -> None:
        self._folder = folder
        self._base = folder.root / "feedback"

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
        folder = self._base / check_name("line", device.line) / device.device_id
        sidecar = folder / f"{item.sha256}.json"
        if sidecar.exists():
            return False
        record = item.model_dump(mode="json")
        record["image_file"] = f"{item.sha256}{suffix}"
        record["n_bytes"] = len(image)
        record["received_at"] = received_at.astimezone(UTC).isoformat()
        # Same sha256, same bytes: replacing an image a concurrent upload just stored is harmless.
        write_atomic(folder / record["image_file"], image, tmp_dir=self._folder.tmp)
        if not link_new(sidecar, json.dumps(record, sort_keys=True).encode(), tmp_dir=self._folder.tmp):
            return False
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
        check_name("line", line)
        if since is not None and since.tzinfo is None:
            raise InvalidInput(f"since {since.isoformat()} has no timezone; pass an aware datetime (UTC)")
        found: list[tuple[datetime, dict[str, Any]]] = []
        for path in sorted((self._base / line).glob("*/*.json")):
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
