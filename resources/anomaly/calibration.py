"""The operating threshold of a good-only detector, and which rule chose it.

A detector trained on good parts is often validated without defects. Three cases, in order:

* ``zero_escapes``: the validation split holds defective images: the highest threshold that passes
  none of them, which is also the lowest false-reject rate under that ceiling
  (:func:`resources.reporting.metrics.calibrate_threshold`) — unless that threshold rejects every good
  validation image, then:
* ``good_only_fallback``: the zero-escape threshold would reject every part, which is no operating
  point (a known failure of peers); the good-only threshold is used instead and the escape rate it
  gives on the validation defects is recorded, so the report shows the escapes rather than hiding them;
* ``good_only``: no defective images: the threshold for ``target_false_reject_rate`` from the good
  validation scores alone (:func:`resources.reporting.metrics.calibrate_good_only`).
"""

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from resources.reporting.metrics import (
    ThresholdCalibration,
    calibrate_good_only,
    calibrate_threshold,
    decision_rates,
)

__all__ = ["AnomalyThreshold", "choose_threshold"]

logger = logging.getLogger(__name__)

ThresholdRule = Literal["zero_escapes", "good_only", "good_only_fallback"]


@dataclass(frozen=True)
class AnomalyThreshold:
    rule: ThresholdRule
    calibration: ThresholdCalibration
    validation_rates: dict[str, Any]
    """False-reject and escape rates of the chosen threshold on the whole validation split."""

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, **self.calibration.as_dict(), "validation": self.validation_rates}


def choose_threshold(
    scores: np.ndarray, is_defect: np.ndarray, *, target_false_reject_rate: float = 0.001, groups: np.ndarray | None = None
) -> AnomalyThreshold:
    """The threshold for validation ``scores`` (reject when score >= threshold), with the rule used;
    the rates' intervals count the images' near-duplicate ``groups`` when given."""
    s = np.asarray(scores, dtype=np.float64)
    d = np.asarray(is_defect, dtype=bool)
    if s.shape != d.shape or s.ndim != 1:
        raise ValueError(f"scores {s.shape} and is_defect {d.shape} must be 1-D and of one length")
    if not (~d).any():
        raise ValueError(
            f"the validation split holds no good images ({int(d.sum())} defective): a detector's threshold "
            "needs held-out good parts; move some good images into validation"
        )
    good_only = calibrate_good_only(s[~d], target_false_reject_rate=target_false_reject_rate)
    if not d.any():
        return AnomalyThreshold("good_only", good_only, decision_rates(s, d, good_only.threshold, groups))
    strict = calibrate_threshold(s, d, max_escape_rate=0.0)
    if strict.false_reject_rate < 1.0:
        return AnomalyThreshold("zero_escapes", strict, decision_rates(s, d, strict.threshold, groups))
    rates = decision_rates(s, d, good_only.threshold, groups)
    logger.warning(
        "passing no defective validation image would reject every good one; using the good-only threshold "
        "(target false-reject rate %g), which lets %d of %d defective validation images pass",
        target_false_reject_rate, rates["escapes"], rates["n_defect"],
    )
    fallback = dataclasses.replace(
        good_only,
        escape_rate=rates["escape_rate"],
        false_reject_rate=rates["false_reject_rate"],
        n_defect=rates["n_defect"],
        method=(
            f"good-only fallback: passing every one of the {rates['n_defect']} defective validation images would "
            f"reject every good one, so the good-only threshold is used ({good_only.method}); it lets "
            f"{rates['escapes']} of {rates['n_defect']} defective validation images pass"
        ),
    )
    return AnomalyThreshold("good_only_fallback", fallback, rates)
