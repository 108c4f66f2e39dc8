"""Pure metrics for a validation report: classification quality and the reject/pass decision.

A production line does not act on a class label but on a *decision*: reject the part or let it
pass. Two error rates matter and they are not symmetric:

* **escape rate**: defective parts that were passed / defective parts. An escape reaches the
  customer, so the plant sets a ceiling on it (often zero on the validation set).
* **false-reject rate (FRR)**: good parts that were rejected / good parts. Scrap and re-inspection
  cost money, so among thresholds that meet the escape ceiling we want the lowest FRR.

Everything here is a pure function of arrays (no Dagster, no files) and returns JSON-able values
(plain ``float``/``int``/``list``/``None``), so results can go straight into asset metadata and the
report. A rate whose denominator is zero is ``None``, never ``0.0``: "no defects were tested" must
not read as "no defects escaped".
"""

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from resources.reporting.intervals import effective_size, rate_interval

__all__ = [
    "RATE_KEYS",
    "ThresholdCalibration",
    "classification_metrics",
    "defect_scores",
    "calibrate_good_only",
    "calibrate_threshold",
    "decision_rates",
    "roc_points",
    "threshold_setters",
    "worst_errors",
]

logger = logging.getLogger(__name__)

# The rates of a decision (``decision_rates``) that a report section repeats at its top level.
RATE_KEYS = ("false_reject_rate", "escape_rate", "false_reject_rate_ci95", "escape_rate_ci95")

# Tolerance when turning a rate ceiling into a whole number of allowed escapes, so that e.g.
# 0.29 * 100 = 28.999999999999996 still allows 29 escapes.
_COUNT_EPS = 1e-9


@dataclass(frozen=True)
class ThresholdCalibration:
    """The operating threshold chosen on validation scores, and what it achieved there.

    A part is rejected when ``score >= threshold``. ``escape_rate`` and ``false_reject_rate`` are
    measured on the calibration (validation) set itself; the test set must be scored separately
    with :func:`decision_rates` to get an unbiased estimate.
    """

    threshold: float
    escape_rate: float | None
    """None for the good-only rule: no defective images, no escape rate."""
    false_reject_rate: float
    max_escape_rate: float | None
    n_good: int
    n_defect: int
    method: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form for asset metadata and the report."""
        return asdict(self)


# --------------------------------------------------------------------------------------------
# input checks


def _classes_list(classes: Sequence[str]) -> list[str]:
    names = [str(c) for c in classes]
    if not names:
        raise ValueError("classes is empty; pass the model's class names in output order")
    if len(set(names)) != len(names):
        dupes = sorted({c for c in names if names.count(c) > 1})
        raise ValueError(f"classes has duplicate names {dupes}; class names must be unique")
    return names


def _probabilities(probabilities: np.ndarray, n_classes: int) -> np.ndarray:
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != n_classes:
        raise ValueError(
            f"probabilities must have shape (n_images, {n_classes}) to match classes, "
            f"got {probs.shape}"
        )
    if not np.all(np.isfinite(probs)):
        bad = int(np.argwhere(~np.isfinite(probs))[0][0])
        raise ValueError(f"probabilities contain NaN or inf (first at image {bad}); check the model output")
    return probs


def _label_indices(y_true: np.ndarray, classes: list[str], n_images: int) -> np.ndarray:
    """Accept integer class indices or class names and return integer indices.

    Both forms appear in practice (datasets store names, training code stores indices), and
    accepting both avoids a conversion at every call site.
    """
    y = np.asarray(y_true)
    if y.ndim != 1 or y.shape[0] != n_images:
        raise ValueError(f"y_true must be 1-D with {n_images} labels (one per image), got shape {y.shape}")
    if y.dtype.kind in "iu":
        out = y.astype(np.int64)
    elif y.dtype.kind == "b":
        raise ValueError("y_true is boolean; pass class indices or class names")
    elif y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValueError("y_true holds non-integer numbers; pass class indices or class names")
        out = y.astype(np.int64)
    else:
        lookup = {c: i for i, c in enumerate(classes)}
        unknown = sorted({str(v) for v in y.tolist() if str(v) not in lookup})
        if unknown:
            raise ValueError(f"y_true has labels {unknown[:5]} that are not in classes {classes}")
        out = np.array([lookup[str(v)] for v in y.tolist()], dtype=np.int64)
    if out.size and (out.min() < 0 or out.max() >= len(classes)):
        raise ValueError(
            f"y_true has class indices outside 0..{len(classes) - 1} "
            f"(min {int(out.min())}, max {int(out.max())}) for classes {classes}"
        )
    return out


def _scores_and_labels(scores: np.ndarray, is_defect: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    d = np.asarray(is_defect)
    if s.ndim != 1 or d.ndim != 1 or s.shape != d.shape:
        raise ValueError(
            f"scores and is_defect must be 1-D arrays of the same length, got {s.shape} and {d.shape}"
        )
    if not np.all(np.isfinite(s)):
        bad = int(np.argwhere(~np.isfinite(s))[0][0])
        raise ValueError(f"scores contain NaN or inf (first at image {bad}); check the model output")
    if d.dtype.kind != "b":
        values = set(np.unique(d).tolist())
        if not values <= {0, 1}:
            raise ValueError(f"is_defect must be boolean or 0/1, got values {sorted(values, key=str)[:5]}")
        d = d.astype(bool)
    return s, d


# --------------------------------------------------------------------------------------------
# classification


def classification_metrics(
    y_true: np.ndarray, probabilities: np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support and the confusion matrix.

    The prediction is the arg-max class. ``y_true`` may be class indices or class names.
    Confusion-matrix rows are true classes and columns predicted classes, both in ``classes``
    order. Precision is ``None`` for a class that was never predicted, recall ``None`` for a
    class with no images, F1 ``None`` when both are undefined: an undefined number stays
    visible as such instead of looking like a measured zero.
    """
    names = _classes_list(classes)
    probs = _probabilities(probabilities, len(names))
    n = probs.shape[0]
    if n == 0:
        raise ValueError("no images to evaluate: probabilities has 0 rows")
    y = _label_indices(y_true, names, n)
    pred = probs.argmax(axis=1)

    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = list(range(len(names)))
    cm = confusion_matrix(y, pred, labels=labels)
    # zero_division=nan keeps an undefined figure undefined (None below) instead of a measured-looking 0.
    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=labels, average=None, zero_division=np.nan
    )

    def defined(value: float) -> float | None:
        return None if np.isnan(value) else float(value)

    per_class: dict[str, dict[str, Any]] = {
        name: {
            "precision": defined(precision[i]),
            "recall": defined(recall[i]),
            "f1": defined(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(names)
    }

    return {
        "accuracy": float(np.trace(cm) / n),
        "n_images": int(n),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "classes": names,
    }


def defect_scores(probabilities: np.ndarray, classes: Sequence[str], good_class: str) -> np.ndarray:
    """Defect score per image, ``1 - P(good_class)``: higher means more likely defective.

    Summing over all defect classes (rather than taking the top defect class) makes the reject
    decision independent of *which* defect the model thinks it is.
    """
    names = _classes_list(classes)
    if good_class not in names:
        raise ValueError(f"good_class {good_class!r} is not one of the classes {names}; pick the class of good parts")
    probs = _probabilities(probabilities, len(names))
    return 1.0 - probs[:, names.index(good_class)]


# --------------------------------------------------------------------------------------------
# reject / pass decision


def decision_rates(
    scores: np.ndarray, is_defect: np.ndarray, threshold: float, groups: np.ndarray | None = None
) -> dict[str, Any]:
    """False-reject and escape rates of the rule "reject when ``score >= threshold``".

    A rate is ``None`` (not ``0.0``) when its denominator is zero, and ``note`` says why;
    otherwise ``note`` is ``None``. Each rate comes with its exact 95 % interval (``*_ci95``,
    ``[low, high]``; see :mod:`resources.reporting.intervals`): 0 escapes of 47 is not 0.00 %.
    With ``groups`` (each image's near-duplicate group id) they count parts, not images (six
    exposures of one crop are about one part's evidence): ``n_*_groups``, ``n_*_effective``.
    """
    s, d = _scores_and_labels(scores, is_defect)
    # (groups, effective parts) of each side; (None, None) counts images
    good_parts, defect_parts = effective_size(groups, ~d) or (None, None), effective_size(groups, d) or (None, None)
    thr = float(threshold)
    if math.isnan(thr):
        raise ValueError("threshold is NaN; calibrate it first with calibrate_threshold")
    rejected = s >= thr
    good = ~d
    n_good = int(good.sum())
    n_defect = int(d.sum())
    false_rejects = int((rejected & good).sum())
    escapes = int((~rejected & d).sum())

    notes = []
    if n_good == 0:
        notes.append("false_reject_rate is None: the set has no good images")
    if n_defect == 0:
        notes.append("escape_rate is None: the set has no defective images")
    rates = {
        "threshold": thr,
        "false_reject_rate": false_rejects / n_good if n_good else None,
        "escape_rate": escapes / n_defect if n_defect else None,
        "false_reject_rate_ci95": rate_interval(false_rejects, n_good, effective_total=good_parts[1]),
        "escape_rate_ci95": rate_interval(escapes, n_defect, effective_total=defect_parts[1]),
        "n_good": n_good,
        "n_defect": n_defect,
        "false_rejects": false_rejects,
        "escapes": escapes,
        "rejected": int(rejected.sum()),
        "note": "; ".join(notes) if notes else None,
    }
    if groups is not None:
        rates.update(n_good_groups=good_parts[0], n_defect_groups=defect_parts[0], interval_basis="near-duplicate groups")
        rates.update(n_good_effective=round(good_parts[1], 2), n_defect_effective=round(defect_parts[1], 2))
    return rates


def calibrate_threshold(
    scores: np.ndarray, is_defect: np.ndarray, *, max_escape_rate: float = 0.0
) -> ThresholdCalibration:
    """Choose the highest threshold whose escape rate is at most ``max_escape_rate``.

    Raising the threshold can only pass more parts, so the highest threshold meeting the escape
    ceiling is also the one with the lowest false-reject rate under that ceiling.

    With ``m = floor(max_escape_rate * n_defect)`` escapes allowed and the defect scores sorted
    ascending ``d_1 <= ... <= d_n``, the highest admissible threshold is ``d_(m+1)`` itself. We
    do not sit exactly on that score: any threshold in the open gap between ``d_(m+1)`` and the
    next lower score of the set (good or defective) makes the same decisions on this set, and
    the midpoint of that gap leaves margin on both sides for the scores of new parts, which will
    differ slightly. When no score lies below ``d_(m+1)`` the threshold is ``d_(m+1)`` (every
    part of this set is rejected), and ``method`` says so.

    Raises ``ValueError`` when the set lacks good or defective images (both are needed: one
    side sets the escape rate, the other the false-reject rate) or ``max_escape_rate`` is not in
    ``[0, 1)`` (a ceiling of 1 allows passing every part, which needs no calibration).
    """
    s, d = _scores_and_labels(scores, is_defect)
    rate = float(max_escape_rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"max_escape_rate must be in [0, 1), got {max_escape_rate!r}")
    n_defect = int(d.sum())
    n_good = int((~d).sum())
    if n_defect == 0 or n_good == 0:
        raise ValueError(
            f"threshold calibration needs both good and defective images; this set has "
            f"{n_good} good and {n_defect} defective. Add labelled "
            f"{'defective' if n_defect == 0 else 'good'} images to the validation split"
        )

    allowed = min(int(math.floor(rate * n_defect + _COUNT_EPS)), n_defect - 1)
    defect_sorted = np.sort(s[d])
    anchor = float(defect_sorted[allowed])
    below = s[s < anchor]
    if below.size:
        lower = float(below.max())
        threshold = (lower + anchor) / 2.0
        if not lower < threshold <= anchor:  # adjacent floats: the midpoint rounds onto `lower`
            threshold = anchor
        method = (
            f"highest threshold with escape rate <= {rate:g} on {n_defect} defective / {n_good} good "
            f"validation images (at most {allowed} escapes); placed at the midpoint between the "
            f"defect score {anchor:.6g} and the next lower score {lower:.6g}"
        )
    else:
        threshold = anchor
        method = (
            f"highest threshold with escape rate <= {rate:g} on {n_defect} defective / {n_good} good "
            f"validation images (at most {allowed} escapes); no score lies below the defect score "
            f"{anchor:.6g}, so the threshold sits on it and every validation part is rejected"
        )

    rates = decision_rates(s, d, threshold)
    logger.info(
        "calibrated threshold %.6g: escape rate %.4f (max %.4f), false-reject rate %.4f",
        threshold, rates["escape_rate"], rate, rates["false_reject_rate"],
    )
    return ThresholdCalibration(
        threshold=float(threshold),
        escape_rate=float(rates["escape_rate"]),
        false_reject_rate=float(rates["false_reject_rate"]),
        max_escape_rate=rate,
        n_good=n_good,
        n_defect=n_defect,
        method=method,
    )


def _just_above(anchor: float, scores: np.ndarray) -> float:
    """A threshold that passes ``anchor`` and rejects every score above it, also once cast to float32.

    The midpoint to the next higher score when there is one (margin on both sides, as
    :func:`calibrate_threshold` places its threshold), else the next float32 above ``anchor``: models
    return float32 scores, and a float64 step above one would round back onto it.
    """
    next_up = float(np.nextafter(np.float32(anchor), np.float32(np.inf)))
    higher = scores[scores > anchor]
    if higher.size:
        midpoint = (anchor + float(higher.min())) / 2.0
        if np.float32(midpoint) > anchor and midpoint < float(higher.min()):
            return midpoint
        return next_up if next_up <= float(higher.min()) else float(higher.min())
    return next_up


def calibrate_good_only(scores: np.ndarray, *, target_false_reject_rate: float = 0.001) -> ThresholdCalibration:
    """The threshold for a target false-reject rate, from held-out good images only.

    For a detector trained on good parts, validation often holds no defects. With ``n`` good scores
    and ``k = floor(target * n)`` false rejects allowed (never ``n``: a threshold that rejects every
    part is refused by construction), the threshold sits just above the ``k+1``-th highest good score,
    so the ``k`` highest are rejected (fewer where scores tie with it; the recorded rate is the one
    achieved). With fewer than ``1 / target`` good images that is
    ``k = 0``: the threshold passes every validation part and the achieved rate is only known to
    be below ``1 / n``; ``method`` says so, so the report does not claim more than the data shows.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(
            f"good-only calibration needs a 1-D array of at least one good image's score, got shape {s.shape}; "
            "hold out good images for validation"
        )
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or inf; check the model output")
    target = float(target_false_reject_rate)
    if not 0.0 <= target < 1.0:
        raise ValueError(f"target_false_reject_rate must be in [0, 1), got {target_false_reject_rate!r}")
    n_good = int(s.size)
    allowed = min(int(math.floor(target * n_good + _COUNT_EPS)), n_good - 1)
    anchor = float(np.sort(s)[::-1][allowed])
    threshold = _just_above(anchor, s)
    rejected = int((s >= threshold).sum())
    resolution = (
        f"{rejected} of {n_good} rejected"
        if allowed
        else f"no validation part rejected: with {n_good} good images the rate is only known to be below {1 / n_good:.3g}"
    )
    method = (
        f"good-only rule: threshold just above the good validation score ranked {allowed + 1} of {n_good} from the "
        f"top, for a target false-reject rate of {target:g} ({resolution}); no defective images to set an escape rate"
    )
    logger.info("calibrated good-only threshold %.6g (%s)", threshold, resolution)
    return ThresholdCalibration(
        threshold=threshold,
        escape_rate=None,
        false_reject_rate=rejected / n_good,
        max_escape_rate=None,
        n_good=n_good,
        n_defect=0,
        method=method,
    )


def roc_points(scores: np.ndarray, is_defect: np.ndarray) -> dict[str, Any]:
    """ROC curve of the defect score, with defective as the positive class.

    ``fpr`` is the false-reject rate and ``tpr`` is ``1 - escape rate`` at each threshold.
    sklearn's first threshold is ``+inf`` ("reject nothing"), which JSON cannot hold, so
    non-finite thresholds become ``None``. With only one class present the curve is undefined:
    empty lists, ``auc`` ``None`` and a ``note``.
    """
    from sklearn.metrics import auc, roc_curve

    s, d = _scores_and_labels(scores, is_defect)
    n_defect = int(d.sum())
    n_good = int((~d).sum())
    if n_defect == 0 or n_good == 0:
        return {
            "fpr": [],
            "tpr": [],
            "thresholds": [],
            "auc": None,
            "note": f"ROC undefined: the set has {n_good} good and {n_defect} defective images (needs both)",
        }
    fpr, tpr, thresholds = roc_curve(d.astype(int), s, pos_label=1)
    return {
        "fpr": [float(v) for v in fpr],
        "tpr": [float(v) for v in tpr],
        "thresholds": [float(v) if np.isfinite(v) else None for v in thresholds],
        "auc": float(auc(fpr, tpr)),
        "note": None,
    }


def threshold_setters(scores: np.ndarray, is_defect: np.ndarray, k: int = 3) -> list[dict[str, Any]]:
    """The ``k`` lowest-scoring defective images and what catching each costs in good parts.

    At zero escapes the lowest one alone sets the threshold, and a single defect scored below many
    good parts can cost a large share of them (on magnetic tile, one image decided between 0.5 % and
    66 % false rejects, BENCHMARKS.md): these are the images to look at first, for a label error or a
    defect the model cannot see. ``good_at_or_above`` counts the good images a threshold that rejects
    this one would reject too; ``false_reject_rate_to_catch`` is that count's share of the good images.
    """
    s, d = _scores_and_labels(scores, is_defect)
    rows = []
    for i in np.flatnonzero(d)[np.argsort(s[d], kind="stable")][: max(0, k)]:
        caught = decision_rates(s, d, float(s[i]))  # the threshold that just rejects this image
        rows.append(
            {
                "index": int(i),
                "score": float(s[i]),
                "good_at_or_above": caught["false_rejects"],
                "false_reject_rate_to_catch": caught["false_reject_rate"],
            }
        )
    return rows


# --------------------------------------------------------------------------------------------
# gallery


def worst_errors(
    y_true: np.ndarray, probabilities: np.ndarray, classes: Sequence[str], k: int = 12
) -> list[dict[str, Any]]:
    """Up to ``k`` images to look at first: confident mistakes, then shaky correct predictions.

    Misclassified images come first, most confident wrong prediction first (those reveal label
    errors and systematic confusions). If there are fewer than ``k`` errors the list is filled
    with the least confident correct predictions, flagged ``"correct": True``, so the gallery is
    never empty without a reason. Ties keep image order.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    names = _classes_list(classes)
    probs = _probabilities(probabilities, len(names))
    y = _label_indices(y_true, names, probs.shape[0])
    pred = probs.argmax(axis=1)
    conf = probs[np.arange(probs.shape[0]), pred]

    wrong = np.flatnonzero(pred != y)
    right = np.flatnonzero(pred == y)
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")]
    right = right[np.argsort(conf[right], kind="stable")]

    out: list[dict[str, Any]] = []
    for idx, correct in [(int(i), False) for i in wrong] + [(int(i), True) for i in right]:
        if len(out) >= k:
            break
        out.append(
            {
                "index": idx,
                "true": names[y[idx]],
                "predicted": names[pred[idx]],
                "confidence": float(conf[idx]),
                "correct": correct,
            }
        )
    return out
