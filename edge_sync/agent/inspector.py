"""Deciding one camera image: decode it as training did, score it, pass or reject it.

How a model's outputs become a verdict is its task's decoder's business
(:mod:`edge_sync.contract.decoders`); this module only records what the decoder said.

The image is fitted to the model input by :func:`~edge_sync.contract.imaging.fit_to_input`, the
function training used; its brightness is the mean of that model input
(:func:`~edge_sync.contract.input_brightness`), the quantity the platform's baseline bins too.
Files that are not usable images raise :class:`UnusableImage` with a reason the agent logs next to
the quarantined file; they never stop the loop.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from edge_sync.contract import DeploymentManifest, InputSpec, decoder_for, input_brightness
from edge_sync.contract.imaging import fit_to_input
from edge_sync.inference import PIL_DECODE_ERRORS

__all__ = ["IGNORED_SUFFIXES", "IMAGE_SUFFIXES", "Decision", "UnusableImage", "decide", "decode_image", "pending_images"]

IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload")
"""Names a camera (or copy tool) uses while still writing; such files are left alone."""
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
_ACCEPTED_MODES = frozenset({"L", "LA", "P", "RGB", "RGBA"})  # what the platform trains on


class UnusableImage(Exception):
    """A camera file that cannot be inspected; ``reason`` is a short code, ``detail`` what to do."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Decision:
    """The agent's decision on one image, as appended to ``decisions.jsonl``.

    ``verdict`` is ``reject``/``pass`` for models with a good class (as the task's decoder decides:
    by threshold on the defect score, or, for a classifier without a threshold, by whether the top
    class is the good one) and ``recorded`` for models without a good class, where only the class is
    recorded. ``probabilities`` holds the decoder's audit numbers (class probabilities, or a raw
    score). ``brightness`` is the mean of the model input.
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
    counts: Mapping[str, int] = field(default_factory=dict)
    """What this image adds to the window's task counters (the decoder's ``window_counts``)."""

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
                **({"counts": dict(self.counts)} if self.counts else {}),
            },
            separators=(",", ":"),
        )


def pending_images(camera_dir: Path) -> list[Path]:
    """Files the camera finished writing, in name order (dot-files and partial names are skipped)."""
    return sorted(
        entry
        for entry in camera_dir.iterdir()
        if entry.is_file() and not entry.name.startswith(".") and not entry.name.endswith(IGNORED_SUFFIXES)
    )


def decode_image(path: Path, spec: InputSpec) -> tuple[np.ndarray, float]:
    """RGB uint8 pixels at the model's input size and their mean brightness."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise UnusableImage(
            "unsupported_extension",
            f"not an image file ({path.suffix or 'no suffix'}); expected {sorted(IMAGE_SUFFIXES)}",
        )
    if path.stat().st_size == 0:
        raise UnusableImage("zero_byte", "empty file; check the camera's upload")
    try:
        with Image.open(path) as image:
            if image.mode not in _ACCEPTED_MODES:
                raise UnusableImage(
                    "unsupported_mode",
                    f"image mode {image.mode} (16-bit, CMYK, ...) is not what the model was trained on; "
                    f"set the camera to 8-bit RGB or grey",
                )
            image.load()
            rgb = image.convert("RGB")
    except (UnusableImage, FileNotFoundError):
        raise
    except Image.DecompressionBombError as exc:
        raise UnusableImage("too_large", f"Pillow refused it as a possible decompression bomb ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise UnusableImage("undecodable", "not an image or corrupt; check the camera export") from exc
    except PIL_DECODE_ERRORS as exc:
        raise UnusableImage("undecodable", f"cannot decode ({type(exc).__name__}: {exc}); truncated or corrupt") from exc
    pixels = fit_to_input(rgb, spec.width, spec.height, spec.resize)
    return pixels, input_brightness(pixels)


def decide(
    image: str,
    outputs: Mapping[str, np.ndarray],
    brightness: float,
    manifest: DeploymentManifest,
    window_id: str,
    decided_at: datetime,
) -> Decision:
    """Pass or reject one image from the model's named outputs (as the task decoder's ``run`` gave
    them), by the manifest's decision parameters."""
    decoder = decoder_for(manifest.task)
    verdict = decoder.decode(outputs, manifest)
    return Decision(
        image=image,
        model_version=manifest.model_version,
        window_id=window_id,
        predicted_class=verdict.label,
        defect_score=verdict.defect_score,
        verdict=verdict.outcome,
        probabilities=verdict.detail,
        brightness=brightness,
        decided_at=decided_at,
        counts=decoder.window_counts(verdict, manifest),
    )
