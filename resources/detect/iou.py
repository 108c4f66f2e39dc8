"""Vectorised intersection-over-union for corner boxes in pixels.

Duplicate detection and reviewer matching compare every box with every other box of an image; done
pairwise in Python that is quadratic interpreter work, here it is one numpy broadcast per image.
"""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from resources.detect.boxes import Box
from resources.detect.errors import BoxSetError

__all__ = ["box_array", "iou_matrix"]


def box_array(boxes: Sequence[Box]) -> npt.NDArray[np.float64]:
    """``(N, 4)`` float64 array of ``x_min, y_min, x_max, y_max`` (``(0, 4)`` for no boxes)."""
    if not boxes:
        return np.zeros((0, 4), dtype=np.float64)
    return np.array([b.corners for b in boxes], dtype=np.float64)


def iou_matrix(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """IoU of every box in ``a`` (``N×4``) with every box in ``b`` (``M×4``) as an ``N×M`` array.

    Boxes of non-positive width or height have zero area; a pair whose union is zero (two degenerate
    boxes) has IoU 0, not NaN, so a degenerate box never matches anything.
    """
    boxes_a, boxes_b = _as_boxes(a), _as_boxes(b)
    if boxes_a.ndim != 2 or boxes_b.ndim != 2 or boxes_a.shape[1] != 4 or boxes_b.shape[1] != 4:
        raise BoxSetError(f"iou_matrix needs N×4 and M×4 arrays, got {boxes_a.shape} and {boxes_b.shape}; "
                          "pass corners x_min, y_min, x_max, y_max (box_array does that for Box objects)")
    area_a = _areas(boxes_a)[:, None]
    area_b = _areas(boxes_b)[None, :]
    left = np.maximum(boxes_a[:, None, 0], boxes_b[None, :, 0])
    top = np.maximum(boxes_a[:, None, 1], boxes_b[None, :, 1])
    right = np.minimum(boxes_a[:, None, 2], boxes_b[None, :, 2])
    bottom = np.minimum(boxes_a[:, None, 3], boxes_b[None, :, 3])
    inter = np.clip(right - left, 0.0, None) * np.clip(bottom - top, 0.0, None)
    union = area_a + area_b - inter
    out: npt.NDArray[np.float64] = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def _as_boxes(value: npt.ArrayLike) -> npt.NDArray[np.float64]:
    array: npt.NDArray[np.float64] = np.asarray(value, dtype=np.float64)
    return np.zeros((0, 4)) if array.size == 0 else array


def _areas(boxes: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0.0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0.0, None)
