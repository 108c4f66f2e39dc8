"""How a decoded image becomes a model input: one function for the trainer, the exporter and the device.

A model sees exactly what its training pixels looked like only if every place that resizes does it
the same way, so both sides import :func:`fit_to_input` from here (the platform through
``resources.data.images``, the device directly).

Two rules (:class:`ResizeMode`):

* ``letterbox`` (the default for new models): scale the image to fit inside the input, keeping its
  aspect ratio, and fill the border with the mean colour of the scaled image. Thin cracks in a
  long crop stay thin lines instead of being squeezed, and a border in the image's own mean grey
  is the least salient fill for a CNN (a black or white band is a strong edge).
* ``squash``: resize to the input's width and height regardless of aspect ratio (what models
  trained before letterboxing expect; their manifests say ``squash``).

Both use Pillow's bilinear filter, which averages over the whole footprint when shrinking. Grey
images are resized as grey and replicated to three channels, which gives the same values as
resizing their RGB copy.
"""

from enum import StrEnum

import numpy as np
from PIL import Image

__all__ = ["ResizeMode", "fit_to_input", "letterbox_box"]


class ResizeMode(StrEnum):
    LETTERBOX = "letterbox"
    SQUASH = "squash"


def letterbox_box(width: int, height: int, out_width: int, out_height: int) -> tuple[int, int, int, int]:
    """Where a ``width``×``height`` image lands inside the input: (left, top, new_width, new_height)."""
    if min(width, height, out_width, out_height) < 1:
        raise ValueError(f"sizes must be positive, got image {width}x{height} and input {out_width}x{out_height}")
    scale = min(out_width / width, out_height / height)
    new_width = min(out_width, max(1, round(width * scale)))
    new_height = min(out_height, max(1, round(height * scale)))
    return (out_width - new_width) // 2, (out_height - new_height) // 2, new_width, new_height


def fit_to_input(image: Image.Image, width: int, height: int, mode: ResizeMode | str) -> np.ndarray:
    """``image`` (any 8-bit Pillow mode) as uint8 RGB pixels ``height``×``width``×3 under ``mode``."""
    try:
        mode = ResizeMode(mode)
    except ValueError:
        raise ValueError(f"resize mode {mode!r} is unknown; choose one of {', '.join(m.value for m in ResizeMode)}") from None
    grey = image.mode in ("L", "LA")
    source = (image if image.mode == "L" else image.convert("L")) if grey else (
        image if image.mode == "RGB" else image.convert("RGB")
    )
    if mode is ResizeMode.SQUASH:
        resized = source if source.size == (width, height) else source.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(resized, dtype=np.uint8)
    else:
        left, top, new_width, new_height = letterbox_box(source.width, source.height, width, height)
        resized = (
            source
            if source.size == (new_width, new_height)
            else source.resize((new_width, new_height), Image.Resampling.BILINEAR)
        )
        content = np.asarray(resized, dtype=np.uint8)
        channels = content.reshape(-1, 1 if grey else 3)
        fill = np.rint(channels.mean(axis=0, dtype=np.float64)).astype(np.uint8)
        pixels = np.empty((height, width) if grey else (height, width, 3), dtype=np.uint8)
        pixels[...] = fill[0] if grey else fill
        pixels[top : top + new_height, left : left + new_width] = content
    if grey:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    return np.ascontiguousarray(pixels)
