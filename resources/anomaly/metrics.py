"""Anomaly-detection figures: image AUROC, pixel AUROC and PRO (per-region overlap).

* **Image AUROC**: how well the image score ranks defective above good parts, over all thresholds
  (scikit-learn's ``roc_auc_score``). Independent of the operating threshold, which the shared
  decision rates (``resources.reporting.metrics``) cover.
* **Pixel AUROC**: the same over every pixel of the anomaly maps against the defect masks. Large
  defects dominate it, so it is reported with:
* **PRO** (Bergmann et al., MVTec AD, 2021): at each threshold, the mean over connected defect
  regions of the share of the region flagged, plotted against the false-positive rate on defect-free
  pixels; the area under it up to FPR 0.3, divided by 0.3. Every defect counts equally, however
  small: a thin crack matters as much as a large stain.

Pixels outside ``valid`` (the letterbox border added to fit an image to the input) are left out:
they are not part of the part.
"""

import numpy as np
from scipy import ndimage
from sklearn.metrics import roc_auc_score

__all__ = ["image_auroc", "pixel_auroc", "pro_score"]

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
"""Defect regions join through corners too, as in the MVTec evaluation code."""


def image_auroc(scores: np.ndarray, is_defect: np.ndarray) -> float | None:
    """Area under the ROC of image scores, defective positive; None unless both kinds are present."""
    labels = np.asarray(is_defect, dtype=bool)
    if labels.all() or not labels.any():
        return None
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


def _checked(maps: np.ndarray, masks: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if maps.shape != masks.shape or maps.ndim != 3:
        raise ValueError(f"anomaly maps {maps.shape} and masks {masks.shape} must both be N×H×W and equal")
    region = np.ones(maps.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if region.shape != maps.shape:
        raise ValueError(f"valid {region.shape} must match the maps {maps.shape}")
    return maps, np.asarray(masks, dtype=bool), region


def pixel_auroc(maps: np.ndarray, masks: np.ndarray, valid: np.ndarray | None = None) -> float | None:
    """Area under the ROC of every valid pixel's score against the masks; None without defect pixels."""
    maps, masks, region = _checked(maps, masks, valid)
    labels = masks[region]
    if not labels.any() or labels.all():
        return None
    return float(roc_auc_score(labels, maps[region].astype(np.float64)))


def pro_score(maps: np.ndarray, masks: np.ndarray, valid: np.ndarray | None = None, max_fpr: float = 0.3) -> float | None:
    """Normalised area under the per-region-overlap curve up to ``max_fpr``; None without defect regions.

    Computed exactly, as the MVTec evaluation code does: each defect pixel weighs 1 / (its region's
    area × number of regions) and each defect-free pixel 1 / (number of defect-free pixels); sorted by
    descending score, the cumulative weights are the PRO and the FPR at every threshold.
    """
    if not 0.0 < max_fpr <= 1.0:
        raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr}")
    maps, masks, region = _checked(maps, masks, valid)
    weights = np.zeros(maps.shape, dtype=np.float64)
    areas: list[np.ndarray] = []
    labelled = []
    for index in range(len(masks)):
        components, count = ndimage.label(masks[index] & region[index], structure=_EIGHT_CONNECTED)
        labelled.append(components)
        if count:
            areas.append(np.bincount(components.ravel(), minlength=count + 1)[1:])
    n_regions = sum(len(a) for a in areas)
    normal = region & ~masks
    n_normal = int(normal.sum())
    if n_regions == 0 or n_normal == 0:
        return None
    area_iter = iter(areas)
    for index, components in enumerate(labelled):
        if components.max() == 0:
            continue
        area = next(area_iter)
        per_region = np.concatenate([[0.0], 1.0 / (area * n_regions)])
        weights[index] = per_region[components]
    weights[normal] = -1.0 / n_normal  # negative marks a defect-free pixel; its weight counts toward FPR
    keep = region
    scores = maps[keep].astype(np.float64)
    w = weights[keep]
    order = np.argsort(-scores, kind="stable")
    scores, w = scores[order], w[order]
    pro = np.cumsum(np.where(w > 0, w, 0.0))
    fpr = np.cumsum(np.where(w < 0, -w, 0.0))
    # one point per distinct threshold: the last index of each run of equal scores
    last = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
    fpr = np.r_[0.0, fpr[last]]
    pro = np.r_[0.0, pro[last]]
    cut = np.searchsorted(fpr, max_fpr, side="right")
    if cut < len(fpr):
        left_fpr, right_fpr = fpr[cut - 1], fpr[cut]
        share = (max_fpr - left_fpr) / (right_fpr - left_fpr) if right_fpr > left_fpr else 0.0
        fpr = np.r_[fpr[:cut], max_fpr]
        pro = np.r_[pro[:cut], pro[cut - 1] + share * (pro[cut] - pro[cut - 1])]
    return float(np.trapezoid(pro, fpr) / max_fpr)
