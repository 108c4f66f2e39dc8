"""The images a person should look at first, for any task that scores images against a threshold."""

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["worst_decisions"]


def worst_decisions(
    y_true: np.ndarray, scores: np.ndarray, classes: Sequence[str], good_class: str, threshold: float, k: int = 12
) -> list[dict[str, Any]]:
    """Up to ``k`` images: escapes (lowest-scored defects) and false rejects (highest-scored good
    parts) first, then the correct decisions nearest the threshold. ``y_true`` are class indices,
    ``scores`` image defect scores (reject when >= ``threshold``)."""
    classes = list(classes)
    s = np.asarray(scores, dtype=np.float64)
    is_defect = np.asarray(y_true) != classes.index(good_class)
    rejected = s >= threshold
    margin = np.abs(s - threshold)
    wrong = np.flatnonzero(rejected != is_defect)
    right = np.flatnonzero(rejected == is_defect)
    order = list(wrong[np.argsort(-margin[wrong], kind="stable")]) + list(right[np.argsort(margin[right], kind="stable")])
    return [
        {
            "index": int(i),
            "true": classes[int(np.asarray(y_true)[i])],
            "predicted": "defect" if rejected[i] else good_class,
            "score": float(s[i]),
            "confidence": None,
            "correct": bool(rejected[i] == is_defect[i]),
        }
        for i in order[:k]
    ]
