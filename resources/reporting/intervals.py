"""How far a measured rate can be from the true one: exact binomial confidence intervals.

A false-reject or escape rate measured on a few dozen parts is a count, not a figure to four digits:
"0 escapes of 47 defective parts" still allows a true escape rate of several percent. The report
states each rate with its Clopper-Pearson ("exact") interval, so that an auditor or a plant reads
how much the test set can vouch for, and two runs whose intervals overlap are not read as
different. Clopper-Pearson never covers less than the stated confidence, which is the side to err
on for an escape rate. It treats images as independent trials: several shots of one part are not
(the split keeps near-duplicates together for that reason), so on such data the interval is, if
anything, too narrow. scipy computes it (imported when first needed: scipy.stats takes about half a
second to import, and the definitions that import this module should load fast).
"""

CONFIDENCE = 0.95


def rate_interval(count: int, total: int, confidence: float = CONFIDENCE) -> list[float] | None:
    """``[low, high]`` for a rate measured as ``count`` of ``total``; ``None`` when ``total`` is 0.

    ``None`` rather than ``[0, 1]``: no parts measured is a missing figure, and the report says
    why next to the rate itself (whose denominator is zero too).
    """
    if total < 0 or count < 0 or count > total:
        raise ValueError(f"a rate needs 0 <= count <= total, got {count} of {total}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if total == 0:
        return None
    from scipy.stats import binomtest

    interval = binomtest(int(count), int(total)).proportion_ci(confidence_level=confidence, method="exact")
    return [float(interval.low), float(interval.high)]
