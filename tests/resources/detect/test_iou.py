"""Vectorised IoU against hand-computed values and a pure-Python reference."""

import numpy as np
import pytest

from resources.detect.boxes import Box
from resources.detect.errors import BoxSetError
from resources.detect.iou import box_array, iou_matrix


def reference_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def test_known_values() -> None:
    a = [[0, 0, 10, 10], [0, 0, 10, 10]]
    b = [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]
    assert iou_matrix(a, b) == pytest.approx(np.array([[1.0, 1 / 3, 0.0], [1.0, 1 / 3, 0.0]]))


def test_matches_reference_on_random_boxes() -> None:
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 50, size=(40, 2, 2))
    boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
    got = iou_matrix(boxes[:25], boxes[25:])
    expected = [[reference_iou(tuple(x), tuple(y)) for y in boxes[25:]] for x in boxes[:25]]
    assert got == pytest.approx(np.array(expected), abs=1e-12)


def test_degenerate_and_empty_inputs() -> None:
    assert iou_matrix([[5, 5, 5, 5]], [[5, 5, 5, 5]]).tolist() == [[0.0]]  # no NaN
    assert iou_matrix([[8, 0, 2, 10]], [[0, 0, 10, 10]]).tolist() == [[0.0]]  # swapped corners
    assert iou_matrix(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)
    assert box_array([]).shape == (0, 4)


def test_box_array_and_bad_shape() -> None:
    boxes = [Box("a.png", "dent", 1, 2, 3, 4)]
    assert box_array(boxes).tolist() == [[1.0, 2.0, 3.0, 4.0]]
    with pytest.raises(BoxSetError, match="N×4"):
        iou_matrix(np.zeros((2, 3)), np.zeros((1, 4)))
