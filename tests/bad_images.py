"""Writes one small file for each way a camera export can be unusable (a test helper, not tests).

Used by the image-inspection tests and by the ingest tests that check quarantining. Every file is a
few hundred bytes. The "too large" file is only 3,072 pixels: inspect it (and, harmlessly, all the
others, which are at most 576 pixels) with ``max_pixels=TOO_LARGE_MAX_PIXELS``.
"""

import io
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["TOO_LARGE_MAX_PIXELS", "TOO_LARGE_NAME", "write_bad_images"]

TOO_LARGE_NAME = "too_large.png"
TOO_LARGE_MAX_PIXELS = 1_000  # below too_large.png's 64 x 48 = 3,072 pixels, above every other file


def write_bad_images(folder: Path) -> dict[str, str]:
    """Write the bad files into ``folder`` (created if needed); return file name -> reason code."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(7).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    files: dict[str, tuple[bytes, str]] = {
        "zero_byte.png": (b"", "zero_byte"),
        "truncated.jpg": (_cut(_encode(Image.fromarray(noise), "JPEG", quality=95)), "truncated"),
        "truncated.png": (_cut(_encode(Image.fromarray(noise), "PNG")), "truncated"),
        "garbage.png": (b"this is not an image, just bytes\n" * 8, "undecodable"),
        "notes.txt": (b"camera 2 lens cleaned at 06:10\n", "unsupported_extension"),
        "png_named.jpg": (_encode(Image.fromarray(noise), "PNG"), "wrong_extension"),
        "sixteen_bit.png": (_encode(_sixteen_bit(), "PNG"), "sixteen_bit"),
        "cmyk.jpg": (_encode(Image.new("CMYK", (16, 16), (10, 80, 160, 20)), "JPEG"), "cmyk"),
        TOO_LARGE_NAME: (_encode(Image.new("L", (64, 48), 128), "PNG"), "too_large"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: reason for name, (_, reason) in files.items()}


def _encode(image: Image.Image, image_format: str, **options: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _cut(data: bytes) -> bytes:
    """Keep the first 60%: past the header, in the middle of the compressed pixel data."""
    return data[: int(len(data) * 0.6)]


def _sixteen_bit() -> Image.Image:
    ramp = (np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 250).astype(np.uint16)
    return Image.fromarray(ramp)
