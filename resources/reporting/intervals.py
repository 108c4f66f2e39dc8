"""How far a measured rate can be from the true one: exact binomial confidence intervals.

A false-reject or escape rate measured on a few dozen parts is a count, not a figure to four digits:
"0 escapes of 47 defective parts" still allows a true escape rate of several percent. The report
states each rate with its Clopper-Pearson ("exact") interval, so that an auditor or a plant reads
how much the test set can vouch for, and two runs whose intervals overlap are not read as
different. Clopper-Pearson never covers less than the stated confidence, which is the side to err
on for an escape rate.

Images are not always independent trials: several shots of one part, or one crop under six exposures,
decide alike, and counting them as six parts would claim a test set six times as large as it is. The
split keeps such near-duplicates in one group (``group_id``); given each image's group, the interval
is computed on the effective sample size of Korn and Graubard (1998): the rate's variance is taken at
its bound, every image of a group deciding alike, which for groups of ``m_g`` images is Kish's
``n_eff = (sum m_g)^2 / sum m_g^2`` (the number of groups when they are of one size, fewer when one
group holds most images), and the Clopper-Pearson interval of ``rate * n_eff`` in ``n_eff``. It
equals the per-image interval when every image is its own group; on an effective size the coverage
is approximate, no longer guaranteed as Clopper-Pearson's is. scipy computes it (imported when
first needed: scipy.stats takes about half a second to import, and the definitions that import this
module should load fast).
"""

import numpy as np

__all__ = ["CONFIDENCE", "effective_size", "rate_interval"]

CONFIDENCE = 0.95


def rate_interval(
    count: int, total: int, confidence: float = CONFIDENCE, *, effective_total: float | None = None
) -> list[float] | None:
    """``[low, high]`` for a rate measured as ``count`` of ``total``; ``None`` when ``total`` is 0.

    ``effective_total``: what the ``total`` images are worth as independent parts
    (:func:`effective_size` of their near-duplicate groups; ``None``: each image its own part).
    Fewer widen the interval to what that many parts could vouch for. ``None`` rather than
    ``[0, 1]``: no parts measured is a missing figure, and the report says why next to the rate
    itself (whose denominator is zero too).
    """
    if total < 0 or count < 0 or count > total:
        raise ValueError(f"a rate needs 0 <= count <= total, got {count} of {total}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if effective_total is not None and not (min(1, total) <= effective_total <= total):
        raise ValueError(f"{total} images are worth 1 to {total} independent parts, got {effective_total}")
    if total == 0:
        return None
    if effective_total is None or effective_total == total:
        from scipy.stats import binomtest

        interval = binomtest(int(count), int(total)).proportion_ci(confidence_level=confidence, method="exact")
        return [float(interval.low), float(interval.high)]
    return _clopper_pearson(count / total * effective_total, float(effective_total), confidence)


def effective_size(groups: np.ndarray | None, mask: np.ndarray) -> tuple[int, float] | None:
    """(groups, effective number of parts) of the images ``mask`` selects, ``None`` without ``groups``.

    Kish's ``(sum m_g)^2 / sum m_g^2`` over the selected images' group sizes ``m_g``: between 1 and
    the number of images, and the number of groups when every group holds as many of them.
    """
    if groups is None:
        return None
    groups, mask = np.asarray(groups), np.asarray(mask, dtype=bool)
    if groups.shape != mask.shape:
        raise ValueError(f"groups has shape {groups.shape}, scores {mask.shape}: give one group id per image")
    _, sizes = np.unique(groups[mask], return_counts=True)
    if not sizes.size:
        return 0, 0.0
    total = float(sizes.sum())
    return int(sizes.size), min(total, total * total / float((sizes.astype(np.float64) ** 2).sum()))


def _clopper_pearson(count: float, total: float, confidence: float) -> list[float]:
    """The exact interval from beta quantiles, which also take the fractional counts of an effective
    sample size (0 and ``total`` keep their closed bounds)."""
    from scipy.stats import beta

    tail = (1.0 - confidence) / 2.0
    low = 0.0 if count <= 0 else float(beta.ppf(tail, count, total - count + 1.0))
    high = 1.0 if count >= total else float(beta.ppf(1.0 - tail, count + 1.0, total - count))
    return [low, high]
