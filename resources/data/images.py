"""Image inspection, decoding and near-duplicate hashing for the ingest asset.

Line cameras and hand exports produce files that look like images but are not usable: empty files
left by a crashed upload, files cut short by a full disk, PNGs renamed to .jpg, 16-bit or CMYK
exports, or frames far larger than any model input. ``inspect_image`` decodes every file completely
and turns each of these into an ``ImageRejected`` with a short reason code (to quarantine and count
by) and a message that says what to do. Accepted files are then decoded the same way for training
(``load_rgb``) and hashed (``perceptual_hash``) so that near-duplicates can be kept on one side of
the train/validation split (``near_duplicate_groups``).

Truncation is only detectable while Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is False (with it
set, Pillow pads missing data with grey); this module refuses to run if something turned it on.
"""

import hashlib
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from edge_sync.contract.imaging import ResizeMode, fit_to_input
from edge_sync.inference import PIL_DECODE_ERRORS
from resources.errors import MfgVisionError

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "REJECTION_REASONS",
    "ImageRejected",
    "ImageFacts",
    "inspect_image",
    "load_rgb",
    "load_rgb_batch",
    "choose_input_size",
    "perceptual_hash",
    "near_duplicate_groups",
]

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})

REJECTION_REASONS: frozenset[str] = frozenset(
    {
        "zero_byte",
        "truncated",
        "undecodable",
        "unsupported_extension",
        "wrong_extension",
        "unsupported_format",
        "sixteen_bit",
        "cmyk",
        "unsupported_mode",
        "too_large",
        "too_small",
    }
)
MIN_SIDE = 8
"""Smallest accepted image side in pixels: a 1x1 or 4x300 'image' is an export error, not a part."""

# Pillow's format name for each extension. MPO is how Pillow names JPEGs that carry extra frames
# (many cameras write them); they decode as ordinary JPEGs.
_FORMAT_OF_EXTENSION: dict[str, frozenset[str]] = {
    ".png": frozenset({"PNG"}),
    ".jpg": frozenset({"JPEG", "MPO"}),
    ".jpeg": frozenset({"JPEG", "MPO"}),
    ".bmp": frozenset({"BMP"}),
    ".tif": frozenset({"TIFF"}),
    ".tiff": frozenset({"TIFF"}),
}
_EXTENSION_OF_FORMAT: dict[str, str] = {
    "PNG": ".png",
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "BMP": ".bmp",
    "TIFF": ".tif",
}
_ACCEPTED_MODES: frozenset[str] = frozenset({"L", "RGB", "RGBA", "P", "LA"})
_HIGH_DEPTH_MODES: frozenset[str] = frozenset({"I", "F"})
_BYTES_LABEL = Path("<bytes>")
_HASH_BITS = 64
_BLOCK_CELLS = 4_000_000  # pairwise distances computed at once (about 40 MB of temporaries)


class ImageRejected(MfgVisionError):
    """A file that cannot be used as an image, with a reason code and a message naming the fix.

    ``reason`` is one of ``REJECTION_REASONS`` (for quarantine folders and counts); ``detail`` is
    the human text. ``str(exc)`` is ``"<path>: <detail>"``.
    """

    def __init__(self, path: Path, reason: str, detail: str) -> None:
        super().__init__(path, reason, detail)  # keeps the exception picklable across processes
        self.path = Path(path)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.path}: {self.detail}"


@dataclass(frozen=True)
class ImageFacts:
    """What inspection learned about an accepted file; ``channels`` counts the stored bands."""

    path: Path
    sha256: str
    n_bytes: int
    format: str
    width: int
    height: int
    mode: str
    channels: int
    frames: int = 1
    """Pages of a multi-page TIFF (or frames of an MPO); only the first is used, and ingest says so."""


def inspect_image(path: Path, *, max_pixels: int = 40_000_000) -> ImageFacts:
    """Decode ``path`` fully and return its facts, or raise ``ImageRejected`` saying why not.

    The size limit is checked from the header, before any pixel is decoded, so an oversized or
    hostile file costs nothing. Missing or unreadable files raise the usual ``OSError``: they are a
    problem of the file system, not of the image.
    """
    path = Path(path)
    _check_max_pixels(max_pixels)
    extension = path.suffix.lower()
    if extension not in SUPPORTED_EXTENSIONS:
        raise ImageRejected(
            path,
            "unsupported_extension",
            f"extension {path.suffix or '(none)'!r} is not a supported image type; "
            f"supported: {', '.join(sorted(SUPPORTED_EXTENSIONS))}",
        )
    data = path.read_bytes()
    if not data:
        raise _empty(path)
    image = _open(data, path)
    _check_format(image, path, extension)
    _check_size(image, path, max_pixels)
    _check_mode(image, path)
    if min(image.width, image.height) < MIN_SIDE:
        raise ImageRejected(
            path,
            "too_small",
            f"{image.width}x{image.height} pixels is below {MIN_SIDE} pixels a side, too small to show a part; "
            "re-export the camera frame at its real size",
        )
    _load(image, path)
    if image.format == "PNG":
        _verify_png(data, path)
    return ImageFacts(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        n_bytes=len(data),
        format=str(image.format),
        width=image.width,
        height=image.height,
        mode=image.mode,
        channels=len(image.getbands()),
        frames=int(getattr(image, "n_frames", 1) or 1),
    )


def load_rgb(source: Path | bytes, size: int | None = None, resize: ResizeMode | str = ResizeMode.SQUASH) -> np.ndarray:
    """Decode an image to uint8 RGB (H x W x 3); grey is replicated, alpha and palettes resolved.

    With ``size`` the image becomes size x size under ``resize`` (``squash`` or ``letterbox``), by
    :func:`edge_sync.contract.imaging.fit_to_input`, the very function the edge device runs, so training and
    the line see the same pixels. Alpha is dropped, not composited: camera frames are opaque, and
    an alpha channel is an export artefact.
    Raises ``ImageRejected`` for data that ``inspect_image`` would reject as undecodable,
    truncated, 16-bit or CMYK.
    """
    if size is not None:
        _check_size_argument(size)
    image = _decoded(source)
    if size is not None:
        return fit_to_input(image, size, size, resize)
    if image.mode in ("L", "LA"):
        grey = image if image.mode == "L" else image.convert("L")
        return np.repeat(np.asarray(grey, dtype=np.uint8)[..., None], 3, axis=2)
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return np.array(rgb, dtype=np.uint8)


def load_rgb_batch(
    sources: Sequence[Path | bytes], size: int, resize: ResizeMode | str
) -> np.ndarray:
    """Decode and resize many images into one uint8 array (N x size x size x 3)."""
    _check_size_argument(size)
    batch = np.empty((len(sources), size, size, 3), dtype=np.uint8)
    for index, source in enumerate(sources):
        batch[index] = load_rgb(source, size, resize)
    return batch


def choose_input_size(longer_sides: Sequence[int] | np.ndarray, *, low: int = 64, high: int = 224, step: int = 32) -> int:
    """The model's input side for images whose longer sides are ``longer_sides``.

    The median longer side, rounded to a multiple of ``step`` (CNN strides divide it), kept within
    ``low..high``: small images are not blown up past their detail, large ones are capped where a
    2-core CPU still fine-tunes in minutes (MobileNetV2 at 224 px: about 40 ms an image and step).
    """
    sides = np.asarray(longer_sides, dtype=np.float64)
    if sides.size == 0 or not np.all(sides > 0):
        raise ValueError("longer_sides must hold at least one positive size (pixels)")
    rounded = int(round(float(np.median(sides)) / step)) * step
    return int(min(high, max(low, rounded)))


def perceptual_hash(source: Path | bytes | np.ndarray) -> int:
    """The 64-bit DCT perceptual hash (imagehash's ``phash``) as an unsigned Python int.

    Bit order matches imagehash's hex string, so ``f"{h:016x}"`` round-trips through
    ``imagehash.hex_to_hash``. Grey and RGB copies of the same picture hash the same.
    """
    if isinstance(source, np.ndarray):
        image = _image_from_array(source)
    else:
        image = _decoded(source)
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
    bits = np.asarray(imagehash.phash(image).hash, dtype=bool).reshape(-1)
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def near_duplicate_groups(hashes: Sequence[int], max_distance: int) -> list[int]:
    """Group id per item: items within ``max_distance`` bits of each other share a group.

    Grouping is transitive (A~B and B~C put A, B and C together), which is what a leakage-free split
    needs. Group ids are 0, 1, 2, ... in order of each group's first item, so the result depends
    only on the input order. Distances are computed in row blocks with numpy and the components
    merged with scipy's connected components (the same result as union-find), so 5,000 hashes
    take a fraction of a second and memory stays bounded.
    """
    _check_distance(max_distance)
    values = _hash_array(hashes)
    if values.size == 0:
        return []
    # Identical hashes (repeated frames) are grouped for free; only distinct values are compared.
    distinct, item_to_distinct = np.unique(values, return_inverse=True)
    labels = _hamming_components(distinct, max_distance)[item_to_distinct.reshape(-1)]
    _, first_index, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(first_index.size, dtype=np.int64)
    rank[np.argsort(first_index, kind="stable")] = np.arange(first_index.size)
    return rank[inverse.reshape(-1)].tolist()


def _hamming_components(values: np.ndarray, max_distance: int) -> np.ndarray:
    """Component label (the index of its first member) per value, linking values within distance.

    Rows are compared in blocks against later values only, and after each block the components
    found so far are collapsed to one edge per value, so memory stays bounded by the block size.
    """
    # Imported here, not at module level: only the dataset split needs scipy.sparse.
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = values.size
    labels = np.arange(n, dtype=np.int64)
    block = max(1, min(n, _BLOCK_CELLS // n))
    for start in range(0, n, block):
        stop = min(n, start + block)
        distances = np.bitwise_count(values[start:stop, None] ^ values[None, start:])
        rows, cols = np.nonzero(distances <= max_distance)
        keep = cols > rows  # each pair once, and no self-pairs
        if not keep.any():
            continue
        # Re-attach each value to its current representative so earlier merges carry over.
        first = np.concatenate([np.arange(n), rows[keep] + start])
        second = np.concatenate([labels, cols[keep] + start])
        graph = coo_matrix((np.ones(first.size, dtype=np.int8), (first, second)), shape=(n, n))
        _, component = connected_components(graph, directed=False)
        _, representative = np.unique(component, return_index=True)
        labels = representative[component].astype(np.int64)
    return labels


# --------------------------------------------------------------------------------------------
# Decoding steps


def _decoded(source: Path | bytes) -> Image.Image:
    """Open and fully load image data from a path or bytes, applying the mode checks."""
    if isinstance(source, bytes | bytearray | memoryview):
        data, label = bytes(source), _BYTES_LABEL
    elif isinstance(source, str | Path):
        label = Path(source)
        data = label.read_bytes()
    else:
        raise TypeError(f"image source must be a Path or bytes, got {type(source).__name__}")
    if not data:
        raise _empty(label)
    image = _open(data, label)
    _check_mode(image, label)
    _load(image, label)
    return image


def _open(data: bytes, path: Path) -> Image.Image:
    """Identify the data and read its header (no pixels yet)."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True, so truncated camera files would pass as "
            "good images padded with grey; remove the code that sets it"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(
            path,
            "too_large",
            f"Pillow refused it as a possible decompression bomb ({exc}); crop or downscale; "
            "or raise max_pixels (and PIL.Image.MAX_IMAGE_PIXELS, which also applies)",
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected(
            path, "undecodable", "not an image or corrupt; re-export it from the camera"
        ) from exc
    except PIL_DECODE_ERRORS as exc:
        raise _decode_failure(path, exc) from exc


def _load(image: Image.Image, path: Path) -> None:
    """Decode every pixel, which is the only way to find data that ends early or is corrupt."""
    try:
        image.load()
    except PIL_DECODE_ERRORS as exc:
        raise _decode_failure(path, exc) from exc


def _verify_png(data: bytes, path: Path) -> None:
    """Check every PNG chunk's CRC and that the file reaches IEND.

    ``load()`` is satisfied once the pixel data is complete, so a PNG cut off in its final chunk
    would otherwise pass; ``verify()`` catches it.
    """
    try:
        Image.open(io.BytesIO(data)).verify()
    except PIL_DECODE_ERRORS as exc:
        raise _decode_failure(path, exc) from exc


def _empty(path: Path) -> ImageRejected:
    return ImageRejected(
        path, "zero_byte", "the file is empty (0 bytes); copy it again from the camera"
    )


def _decode_failure(path: Path, exc: BaseException) -> ImageRejected:
    """Classify a Pillow decoding error as truncated (data ends early) or undecodable (corrupt)."""
    message = str(exc)
    if "truncat" in message.lower():
        return ImageRejected(
            path,
            "truncated",
            f"the image data ends early ({message}); the copy was cut short, copy it again",
        )
    return ImageRejected(
        path,
        "undecodable",
        f"not an image or corrupt ({type(exc).__name__}: {message}); re-export it from the camera",
    )


def _check_format(image: Image.Image, path: Path, extension: str) -> None:
    """The extension must name the real format: tools pick decoders by extension."""
    real = str(image.format)
    if real in _FORMAT_OF_EXTENSION[extension]:
        return
    if real not in _EXTENSION_OF_FORMAT:
        raise ImageRejected(
            path,
            "unsupported_format",
            f"the file is a {real} image, which is not supported; convert it to PNG",
        )
    raise ImageRejected(
        path,
        "wrong_extension",
        f"the file is a {real} image but is named {path.suffix}; "
        f"rename it to {path.stem}{_EXTENSION_OF_FORMAT[real]}",
    )


def _check_size(image: Image.Image, path: Path, max_pixels: int) -> None:
    pixels = image.width * image.height
    if pixels > max_pixels:
        raise ImageRejected(
            path,
            "too_large",
            f"{image.width}x{image.height} = {pixels:,} pixels is more than "
            f"max_pixels={max_pixels:,}; crop or downscale; or raise max_pixels",
        )


def _check_mode(image: Image.Image, path: Path) -> None:
    """Only 8-bit modes convert to RGB faithfully; 16-bit would clip and CMYK would shift colour."""
    mode = image.mode
    if mode in _ACCEPTED_MODES:
        return
    if mode in _HIGH_DEPTH_MODES or mode.startswith("I;"):
        raise ImageRejected(
            path,
            "sixteen_bit",
            f"16-bit or float greyscale ({mode}) is not supported; export 8-bit images",
        )
    if mode == "CMYK":
        raise ImageRejected(
            path, "cmyk", "CMYK colour is not supported; convert it to RGB (sRGB) and export again"
        )
    raise ImageRejected(
        path,
        "unsupported_mode",
        f"pixel mode {mode} is not supported; export 8-bit greyscale or RGB "
        f"(accepted modes: {', '.join(sorted(_ACCEPTED_MODES))})",
    )


def _image_from_array(array: np.ndarray) -> Image.Image:
    """Wrap a uint8 H x W, H x W x 1, H x W x 3 or H x W x 4 array as a Pillow image."""
    if array.dtype != np.uint8:
        raise ValueError(f"image array must be uint8, got {array.dtype}; convert or scale it first")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(array), mode="L")
    if array.ndim == 3 and array.shape[2] in (3, 4):
        mode = "RGB" if array.shape[2] == 3 else "RGBA"
        return Image.fromarray(np.ascontiguousarray(array), mode=mode).convert("RGB")
    raise ValueError(f"image array must be HxW or HxWx(1|3|4), got shape {array.shape}")


# --------------------------------------------------------------------------------------------
# Argument checks


def _check_max_pixels(max_pixels: int) -> None:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}")


def _check_size_argument(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or not 1 <= size <= 16_384:
        raise ValueError(f"size must be an integer between 1 and 16384, got {size!r}")


def _check_distance(max_distance: int) -> None:
    if isinstance(max_distance, bool) or not isinstance(max_distance, int | np.integer):
        raise ValueError(f"max_distance must be an integer number of bits, got {max_distance!r}")
    if not 0 <= max_distance <= _HASH_BITS:
        raise ValueError(
            f"max_distance must be between 0 and {_HASH_BITS} bits, got {max_distance}"
        )


def _hash_array(hashes: Sequence[int]) -> np.ndarray:
    """Hashes as uint64; each must be a 64-bit unsigned integer (what perceptual_hash returns)."""
    for index, value in enumerate(hashes):
        integral = isinstance(value, int | np.integer) and not isinstance(value, bool)
        if not integral or not 0 <= value < 2**_HASH_BITS:
            raise ValueError(
                f"hash #{index} ({value!r}) is not an unsigned 64-bit integer; "
                "pass perceptual_hash() values"
            )
    return np.array([int(value) for value in hashes], dtype=np.uint64)
