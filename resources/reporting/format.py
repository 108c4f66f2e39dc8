"""Number formats of the report (the template's ``pct`` and ``num`` filters) and PNG data URIs."""

import math
from typing import Any

import numpy as np

__all__ = ["num", "pct", "png_uri"]


def pct(value: Any, missing: str = "not computed") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return f"{float(value) * 100:.2f} %"


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
