"""The anomaly task's validation figures: image and pixel metrics, the decision at the threshold,
the images to look at first, and anomaly-map overlays for the report's gallery.

Pure functions on arrays (no I/O, no Dagster): ``validation_report`` loads the images, scores them
and passes what it got here, so a report is reproducible from its inputs.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

from resources.anomaly.metrics import image_auroc, pixel_auroc, pro_score

__all__ = ["anomaly_split_section", "image_level_metrics", "map_overlay", "worst_anomaly_errors"]


def _is_defect(y_true: np.ndarray, classes: Sequence[str], good_class: str) -> np.ndarray:
    return np.asarray(y_true) != list(classes).index(good_class)


def image_level_metrics(
    y_true: np.ndarray, scores: np.ndarray, classes: Sequence[str], good_class: str | None = None
) -> dict[str, Any]:
    """Image AUROC over all defect types, and per type against the good images (None where a side is
    empty: an AUROC of nothing is not 0.5)."""
    classes = list(classes)
    if good_class is None:
        raise ValueError("anomaly metrics need the good class (the variant's --good-class)")
    good = good_class
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    is_defect = _is_defect(y, classes, good)
    per_type: dict[str, Any] = {}
    for index, name in enumerate(classes):
        members = y == index
        if name == good or not members.any():
            continue
        pair = members | ~is_defect
        per_type[name] = {
            "n": int(members.sum()),
            "image_auroc": image_auroc(s[pair], is_defect[pair]),
            "median_score": float(np.median(s[members])),
        }
    return {
        "image_auroc": image_auroc(s, is_defect),
        "n_images": int(len(s)),
        "n_good": int((~is_defect).sum()),
        "n_defect": int(is_defect.sum()),
        "median_good_score": float(np.median(s[~is_defect])) if (~is_defect).any() else None,
        "per_type": per_type,
    }


def anomaly_split_section(
    *,
    y_true: np.ndarray,
    scores: np.ndarray,
    classes: Sequence[str],
    good_class: str,
    threshold: float,
    maps: np.ndarray | None = None,
    masks: np.ndarray | None = None,
    has_mask: np.ndarray | None = None,
    valid: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """One split's report section: image metrics, pixel metrics over the images that have a mask
    (and every good image: its pixels are all negatives), the decision at ``threshold`` (its
    intervals counted in near-duplicate ``groups`` when given) and the score lists the report's
    histogram and ROC are drawn from."""
    from resources.reporting.metrics import RATE_KEYS, decision_rates, roc_points

    section = image_level_metrics(y_true, scores, classes, good_class)
    is_defect = _is_defect(y_true, classes, good_class)
    s = np.asarray(scores, dtype=np.float64)
    section["pixel_auroc"] = section["pro"] = None
    section["n_masked"] = 0
    if maps is not None and masks is not None and has_mask is not None:
        use = np.asarray(has_mask, dtype=bool) | ~is_defect
        section["n_masked"] = int(np.asarray(has_mask, dtype=bool).sum())
        if section["n_masked"]:
            region = None if valid is None else valid[use]
            section["pixel_auroc"] = pixel_auroc(maps[use], masks[use], region)
            section["pro"] = pro_score(maps[use], masks[use], region)
    if section["pixel_auroc"] is None:
        section["pixel_metrics_note"] = (
            "no defect image of this split has a mask: pixel AUROC and PRO are not computed"
            if maps is not None
            else "maps are not evaluated on this split (pixel metrics are measured on test)"
        )
    decision = decision_rates(s, is_defect, threshold, groups)
    section["decision"] = decision
    section.update({key: decision[key] for key in RATE_KEYS})
    rejected = s >= threshold
    section["accuracy"] = float(np.mean(rejected == is_defect)) if len(s) else None
    section["roc"] = roc_points(s, is_defect) if is_defect.any() and (~is_defect).any() else {"auc": None, "note": "needs good and defective images"}
    section["defect_scores"] = [round(float(v), 6) for v in s]
    section["is_defect"] = [bool(v) for v in is_defect]
    return section


def worst_anomaly_errors(
    y_true: np.ndarray, scores: np.ndarray, classes: Sequence[str], good_class: str, threshold: float, k: int = 12
) -> list[dict[str, Any]]:
    """Up to ``k`` images to look at first (``resources.reporting.decisions.worst_decisions``)."""
    from resources.reporting.decisions import worst_decisions

    return worst_decisions(y_true, scores, classes, good_class, threshold, k)


def map_overlay(
    image: np.ndarray, anomaly_map: np.ndarray, threshold: float, floor: float = 0.0, mask: np.ndarray | None = None
) -> np.ndarray:
    """The image with its anomaly map laid over it in red, from nothing at ``floor`` (e.g. the median
    map value of good parts) to full strength at the threshold, and the true defect's outline in green."""
    image = np.asarray(image, dtype=np.float32)
    span = max(float(threshold) - float(floor), 1e-12)
    strength = np.clip((np.asarray(anomaly_map, dtype=np.float32) - float(floor)) / span, 0.0, 1.0)
    alpha = 0.6 * strength[..., None]
    red = np.zeros_like(image)
    red[..., 0] = 255.0
    out = image * (1.0 - alpha) + red * alpha
    if mask is not None and mask.any():
        inner = mask.copy()
        inner[1:-1, 1:-1] = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
        out[mask & ~inner] = (0.0, 255.0, 0.0)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
