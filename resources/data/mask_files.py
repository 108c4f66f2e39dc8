"""Defect mask files: read one (refused when it does not fit its image) and fit it to a model's input.

A mask is a label format more than one task reads (a detector fitted on good parts scores its pixels
against them; segmentation learns from them), so it lives with the data, not in a task's package.
"""

from pathlib import Path

import numpy as np
from PIL import Image

from edge_sync.contract.imaging import ResizeMode, letterbox_box
from resources.errors import MfgVisionError

__all__ = ["MaskLayoutError", "content_region", "fit_mask", "read_mask"]


class MaskLayoutError(MfgVisionError, ValueError):
    """A mask (or the dataset layout it came with) cannot be used; the message names the file and the fix."""


def content_region(width: int, height: int, size: int, resize: ResizeMode | str) -> np.ndarray:
    """Which input pixels show the part (True) rather than the letterbox border, size×size."""
    region = np.zeros((size, size), dtype=bool)
    if ResizeMode(resize) is ResizeMode.SQUASH:
        region[:] = True
        return region
    left, top, new_width, new_height = letterbox_box(width, height, size, size)
    region[top : top + new_height, left : left + new_width] = True
    return region


def read_mask(mask_path: Path, image_size: tuple[int, int]) -> Image.Image:
    """The mask as a greyscale image, refused (naming the file) when its size is not its image's
    (``image_size`` = width, height) or when it is not binary (defect = white, good = black)."""
    with Image.open(mask_path) as opened:
        mask = opened.convert("L")
        mask.load()
    if mask.size != tuple(image_size):
        raise MaskLayoutError(
            f"{mask_path}: the mask is {mask.size[0]}×{mask.size[1]} but its image is {image_size[0]}×{image_size[1]}; "
            "masks must have their image's size"
        )
    values = np.asarray(mask)
    odd = np.count_nonzero((values > 0) & (values < 255))
    if odd > 0.5 * values.size:
        raise MaskLayoutError(
            f"{mask_path}: {odd} of {values.size} pixels are neither 0 nor 255: it is not a binary mask "
            "(defect = white, good = black)"
        )
    return mask


def fit_mask(mask_path: Path, image_size: tuple[int, int], size: int, resize: ResizeMode | str) -> np.ndarray:
    """The mask as bool size×size under the image's own fitting; raises when it does not match the image.

    ``image_size`` is the (width, height) of the image the mask belongs to.
    """
    mask = read_mask(mask_path, image_size)
    out = np.zeros((size, size), dtype=bool)
    if ResizeMode(resize) is ResizeMode.SQUASH:
        box = (0, 0, size, size)
    else:
        box = letterbox_box(mask.size[0], mask.size[1], size, size)
    left, top, new_width, new_height = box
    scaled = np.asarray(mask.resize((new_width, new_height), Image.Resampling.BILINEAR)) > 127
    out[top : top + new_height, left : left + new_width] = scaled
    return out
