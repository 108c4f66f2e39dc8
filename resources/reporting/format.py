"""Number formats of the report (the template's ``pct`` and ``num`` filters) and PNG data URIs."""

import math
from typing import Any

import numpy as np

__all__ = ["interval_text", "num", "pct", "pct_with_interval", "png_uri"]


def pct(value: Any, missing: str = "not computed") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return f"{float(value) * 100:.2f} %"


def interval_text(interval: Any, missing: str = "not computed") -> str:
    """A rate's ``[low, high]`` interval as "0.05–11.29 %"."""
    if not interval:
        return missing
    low, high = interval
    return f"{float(low) * 100:.2f}–{float(high) * 100:.2f} %"


def pct_with_interval(value: Any, interval: Any, missing: str = "not computed") -> str:
    """A rate and its 95 % interval, "2.13 % (95 % CI 0.05–11.29 %)"; the rate alone when the
    report has no interval for it (reports written before intervals were added)."""
    text = pct(value, missing)
    if value is None or not interval:
        return text
    return f"{text} (95 % CI {interval_text(interval)})"


def num(value: Any, missing: str = "—") -> str:
    if value is None:
        return missing
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return f"{float(value):.4g}"
    return str(value)


def png_uri(png: bytes) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
